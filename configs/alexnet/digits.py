"""AlexNet on scikit-learn's bundled digits, upsampled to 64 × 64: a demo that the network and its recipe train.

  python -m papers_jax.main --config configs/alexnet/digits.py --workdir runs/alexnet_digits
  python -m papers_jax.main --config configs/alexnet/digits.py:variant=paper --workdir runs/alexnet_paper_digits

torchvision's network (`alexnet`, the default here) or the paper's (`alexnet_paper`: LRN, two-GPU groups,
N(0, 0.01) init with biases 1), dropout 0.5 in FC1/FC2, on the 1,437 training digits; test accuracy on the
360 held-out digits. `optimizer=sgd` is the paper's SGD (momentum 0.9, lr 0.01, weight decay 5e-4); the
default is Adam (see below). Measured numbers: docs/cnn_classics.md. `smoke`: a narrow network for a few steps.

Departures from the paper:
  - Data: 8×8 grey digits upsampled bilinearly to 64 × 64 (one input channel; the paper's 224 px RGB
    ImageNet crops), so no PCA lighting; no crops or flips (digits are not mirror-symmetric). At 64 px
    conv5's pooled map is 1 × 1, which the adaptive pool repeats to the 6 × 6 that FC1 expects.
  - FC1 and FC2 1,024 wide, not 4,096 (`fc_features`): the full width ran at 7 examples/s on the shared
    2-core CPU. 150 steps of batch 32 (about 3 epochs), lr ÷10 at 75% (the paper: batch 128, ÷10 on
    plateaus over 90 epochs).
  - Adam (lr 1e-4, no weight decay) by default, not SGD: with the paper's SGD
    (lr 0.01, momentum 0.9) torchvision's network stayed at chance for as long as the CPU allowed (batch 64:
    training loss 2.3006 at step 80, test accuracy 10.0% at step 75, gradient norm 0.17): without BatchNorm,
    torch's default init shrinks the signal through the eight layers, and SGD needs many more steps to leave
    that plateau than this demo can afford.
  - The paper's network and init with the paper's SGD did not train here either: `variant=paper,optimizer=sgd`
    at full width (FC 4,096, batch 128) averaged a loss of 7.9 over its first 20 steps (gradient norm 26) and
    was back at chance by step 40 (loss 2.32, 9.3% training accuracy), when the run was stopped. The
    biases of 1 in FC1/FC2 probably make their units fire together, so that each step moves the logits far.
    The default is therefore torchvision's network, with torch's default init.
  - Set explicitly, overriding the base config: no gradient clipping, no label smoothing, no warmup; with
    `optimizer=sgd`, weight decay on every parameter.
"""

from papers_jax.core.config import base_config, parse_arg

NAMES = {"paper": "alexnet_paper", "torchvision": "alexnet"}


def get_config(arg=None):
  args = parse_arg(arg, variant="torchvision", optimizer="adam", smoke=False)
  if args.variant not in NAMES:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(NAMES)}")
  if args.optimizer not in ("adam", "sgd"):
    raise ValueError(f"optimizer={args.optimizer!r}; choose adam (the demo's) or sgd (the paper's)")
  c = base_config()
  c.model = dict(name=NAMES[args.variant], num_classes=10, in_chans=1, img_size=64, fc_features=1024)
  c.data.name = "digits"
  c.data.image_size = 64
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 32
  c.num_steps = 150
  if args.optimizer == "sgd":
    c.optimizer.update(name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, wd_exclude=(),
                       clip_grad_norm=0.0)
  else:
    c.optimizer.update(name="adam", lr=1e-4, weight_decay=0.0, wd_exclude=(), clip_grad_norm=0.0)
  c.schedule.update(name="step", boundaries=(0.75,), decay_factor=0.1, warmup_steps=0)
  c.label_smoothing = 0.0
  c.log_every = 10
  c.eval_every = 75
  c.checkpoint_every = 150
  c.async_checkpoint = False
  if args.smoke:
    c.model.update(channels=(8, 16, 16, 16, 16), fc_features=32)
    c.batch_size = 16
    c.num_steps = 4
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
