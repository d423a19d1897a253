"""unCLIP (DALL·E 2) on the generated image-text scenes, over the frozen scenes CLIP: the prior and the decoder.

  python -m papers_jax.main --config configs/clip/scenes.py --workdir runs/clip_scenes          # the frozen CLIP
  python -m papers_jax.main --config configs/unclip/scenes.py:stage=prior --workdir runs/unclip_prior
  python -m papers_jax.main --config configs/unclip/scenes.py:stage=decoder --workdir runs/unclip_decoder
  PYTHONPATH=. python tools/unclip_sample.py text2image --prior runs/unclip_prior --decoder runs/unclip_decoder \
      --out runs/unclip_samples                                              # captions → prior → decoder → images
  PYTHONPATH=. python tools/unclip_sample.py variations --decoder runs/unclip_decoder --out runs/unclip_variations

(`:clip=<run>` names another CLIP run; tasks/unclip.py describes the stages and their evaluations, docs/unclip.md
the measured numbers.)

- Prior: a causal Transformer of width 64, depth 4, 4 heads over [24 caption token encodings, text embedding,
  timestep, z_t, query] (models/unclip.py), x₀-prediction, text dropped 10%; cosine schedule, T = 1000; sampled
  with 64 DDIM steps, the better of two draws by dot product with the text embedding.
- Decoder: GLIDE's UNet and text encoder (models/glide.py) at 32×32: base width 32, levels 32/16/8 px, widths
  32/64/64, one residual block a level, 32-channel heads at 16 and 8 px (the paper's 1/2, 1/4, 1/8 of the image
  but for the first) attending also to the context tokens; a text encoder of width 64, two blocks, 4 heads over
  the 24 caption tokens; conditioned on the CLIP image embedding (added to the timestep embedding and as 4 context
  tokens); ε and a learned variance (Improved DDPM's L_hybrid), as the paper; the embedding dropped 10%, the
  caption 50%; cosine schedule, T = 1000; sampled ancestrally with the learned variance along 50 strided steps,
  guidance scale 3.

Departures from the paper (a CPU demo, not one of its experiments):
- Inherited from the CLIP: tiny towers (joint width 64), generated scenes and word-level captions (configs/clip/
  scenes.py), not OpenAI's ViT-H/16 CLIP on DALL·E's data.
- Tiny networks (the paper: a 1B-parameter prior, the 3.5B GLIDE decoder `glide_unclip_paper`) at 32×32, with no
  64→256→1024 upsamplers: samples are upsampled ×2 (nearest) to the CLIP's 64×64 for scoring. GroupNorm with 8
  groups (GLIDE: 32), as the widths are 32 and 64. The prior's sequence holds the 24 caption tokens (the paper's
  prior: a text context of 256).
- The decoder reads the scenes CLIP's word-level tokens, 24 a caption (GLIDE: BPE, 256 tokens).
- Embedding scaling: L2-normalised CLIP embeddings ×√64 = 8 for the prior (`prior_embedding_scale=0`; the paper
  scales its embeddings by 17.2), the L2-normalised embedding for the decoder. Dropped CLIP embeddings are zeros
  (the paper: zero or learned).
- Samplers: the prior with 64 DDIM steps (η = 0; the paper: 64 strided steps of Analytic-DPM, not built here), the
  decoder with 50 strided steps (the paper: 250); the decoder's guidance scale 3 is this demo's.
- Optimisation (the paper's Table 3: AdamW with β₂ 0.96 / 0.999, ε 1e-6 / 1e-8, lr 1.1e-4 / 1.2e-4, weight decay
  6e-2 for the prior, batch 4096 / 2048, 600K / 800K steps, weight EMA 0.9999, decoder dropout 0.1): here AdamW
  lr 1e-3, β₂ 0.999, ε 1e-8, no weight decay, gradient clipping at 1, 100 warm-up steps, batch 64 (prior) / 16
  (decoder), 1,500 / 5,000 steps, weight EMA 0.995, decoder dropout 0.1.
- Float32 compute (the base config's `dtype`; the paper does not state its precision).
- The measured demo's frozen CLIP was the scenes CLIP at its step 500 (`clip=runs/clip_scenes_500`; docs/unclip.md).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks.unclip import default_config as unclip_defaults

# The scenes CLIP's architecture (configs/clip/scenes.py): the frozen checkpoint is read strictly.
SCENES_CLIP = dict(name="clip_vit_base_patch32", embed_dim=64, img_size=64, patch_size=8, in_chans=3,
                   vision_width=64, vision_layers=4, vision_heads=4, vision_mlp_ratio=2.0, text_width=64,
                   text_layers=2, text_heads=4, text_mlp_ratio=2.0, context_length=24)
PRIOR = dict(name="unclip_prior", width=64, depth=4, num_heads=4)
DECODER = dict(name="unclip_decoder", num_clip_tokens=4, text=dict(width=64, depth=2, num_heads=4),
               unet=dict(in_chans=3, out_chans=6, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(1, 2),
                         head_channels=32, num_groups=8, dropout=0.1))


def get_config(arg=None):
  args = parse_arg(arg, stage="prior", clip="runs/clip_scenes", steps=0, smoke=False)
  c = base_config()
  c.task = "unclip"
  c.model = dict(SCENES_CLIP)
  prior = args.stage == "prior"
  c.unclip = unclip_defaults(stage=args.stage, clip_run=args.clip, prior=dict(PRIOR), decoder=dict(DECODER),
                             decoder_sampler="ancestral", decoder_steps=50)
  c.data.name = "vqa_scenes"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 64
  c.data.augment = "none"
  c.data.mean = vqa_scenes.MEAN  # the CLIP's normalisation (the scenes are dark); the decoder works in [-1, 1]
  c.data.std = vqa_scenes.STD
  c.batch_size = 64 if prior else 16
  c.num_steps = args.steps or (1500 if prior else 5000)
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                     clip_grad_norm=1.0, wd_exclude=())
  c.schedule.update(name="constant", warmup_steps=100)
  c.ema_decay = 0.995
  c.log_every = 50
  c.eval_every = 500 if prior else 1000
  c.checkpoint_every = 500
  if args.smoke:
    c.model.update(embed_dim=32, vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1,
                   text_heads=2)
    c.unclip.update(clip_run="", num_timesteps=20, prior_steps=4, decoder_steps=3, eval_captions=4, eval_images=2,
                    prior=dict(PRIOR, width=32, depth=1, num_heads=2),
                    decoder=dict(DECODER, text=dict(width=16, depth=1, num_heads=2),
                                 unet=dict(DECODER["unet"], ch=8, ch_mult=(1, 2), attn_levels=(1,), head_channels=8,
                                           num_groups=4)))
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 2
    c.checkpoint_every = 2
  return c.lock()
