"""The configs of configs/ssl/<method>.py: each paper's ImageNet recipe, its `digits` demo and `smoke`."""

from papers_jax.tasks.ssl.common import QUEUE, default_config


def recipe(method: str, arg=None, demo=None, **paper):
  """The config of `configs/ssl/<method>.py`: the paper's ImageNet recipe (`paper` sets it; bfloat16
  compute with float32 params), or
  with `digits` a bundled-data demo of a few CPU minutes (`demo` overrides for it), and with
  `smoke` a seconds-long run.

  Each method's config sets every optimizer and schedule field its paper relies on (nothing comes
  from base_config silently; tests/test_config_explicit.py checks it).

  Demo: the small ViT of configs/vit/digits.py (width 64, depth 4, 4×4 patches, average pooling) on
  the 16×16-upsampled digits, views with milder crops (scale 0.4–1: an 8% crop of an 8×8 digit shows
  nothing), k-NN monitor on the 360 held-out digits every 100 steps and a linear probe on the same
  frozen features after the last step (`config.evals.linear_probe`, core/evals.py). (XLA's CPU
  convolutions made a ResNet-18 of width 16 take 4.5 s per step here, against a fraction of a second
  for the ViT.) Every demo trains with AdamW (lr 1e-3, β (0.9, 0.999), weight decay 0.05 except on
  biases and norm gains, gradient norm clipped at 1, cosine after 20 warm-up steps), as ViT recipes do
  (MoCo v3, DINO): with the papers' LARS/SGD this tiny ViT did not learn (SimCLR, LARS lr 4.8, 150
  steps: k-NN 53% against 58% at init; AdamW: 71%). The recipe's `optimizer.freeze` and the ViT's
  `pos_embed` carry over (MoCo v3's frozen patch projection and fixed sin-cos table). `demo` adds each
  method's own changes (DINO: the paper's clipping at 3; SwAV, BYOL: softer views); results:
  docs/ssl_digits.md.
  """
  from papers_jax.core.config import base_config, parse_arg, set_path
  args = parse_arg(arg, digits=False, smoke=False)
  c = base_config()
  c.task = "ssl"
  c.dtype = "bfloat16"  # the ImageNet recipe computes in bfloat16 (params float32); digits runs in float32
  c.ssl = default_config(method=method)
  c.model = dict(name="resnet50")
  c.data.name = "tfds:imagenet2012"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.data.image_size = 224
  c.data.augment = "inception"   # the host crops to 224 at random; the views are made on device
  c.data.mean, c.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

  def apply(overrides):
    for key, value in overrides.items():
      set_path(c, key, value)

  apply(paper)
  if args.digits or args.smoke:
    c.dtype = "float32"
    pos_embed = c.model.get("pos_embed")  # MoCo v3's fixed sin-cos table carries over to the demo
    c.model = dict(name="vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, embed_dim=64, depth=4,
                   num_heads=4, mlp_ratio=2.0, global_pool="avg", **({"pos_embed": pos_embed} if pos_embed else {}))
    c.data.name = "digits"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = 16
    c.data.augment = "none"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.ssl.view_size = 16
    c.ssl.crop_scale = (0.4, 1.0)
    if method in QUEUE:
      c.ssl.queue_size = 4096
    c.ssl.bn_group_size = 0  # the ViT has no BatchNorm (MoCo's keys are still shuffled)
    c.ssl.projector_hidden = min(c.ssl.projector_hidden, 256)
    c.ssl.projector_dim = min(c.ssl.projector_dim, 64)
    c.ssl.predictor_hidden = min(c.ssl.predictor_hidden, 256)
    c.ssl.knn_k = (20,)
    c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05, clip_grad_norm=1.0,
                       wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
    c.schedule.name, c.schedule.end_lr_ratio = "cosine", 0.0
    c.batch_size = 256
    c.num_steps, c.num_epochs = 300, 0.0
    c.schedule.warmup_steps = 20
    c.log_every, c.eval_every, c.checkpoint_every = 50, 100, 100
    # The k-NN monitor above every 100 steps; a linear probe on the same frozen features at the end.
    c.evals.linear_probe = dict(type="linear_probe", split="test", every=0, max_train=0, batch=256)
    c.mesh.data = -1
    apply(demo or {})
  if args.smoke:
    c.model.update(embed_dim=32, depth=2, num_heads=2)
    c.batch_size = 32
    if method in QUEUE:
      c.ssl.queue_size = 128
    c.ssl.num_local_views = min(c.ssl.num_local_views, 2)
    c.ssl.nce_negatives = min(c.ssl.nce_negatives, 64)
    c.ssl.prior_max_examples = min(c.ssl.prior_max_examples, 256)  # colourisation's colour counts
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
    c.evals.linear_probe.update(max_train=128, batch=64)
  return c.lock()
