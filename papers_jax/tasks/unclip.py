"""unCLIP (DALL·E 2) training on a frozen CLIP (`config.task = "unclip"`): the diffusion prior or the decoder.

The two stages train separately, as in the paper, each over the embeddings of one frozen CLIP run
(`unclip.clip_run`: its config.json, tokenizer.json and last checkpoint, e.g. configs/clip/scenes.py's;
`config.model` must be that run's model section). `unclip.stage` picks the network:

- "prior" (models/unclip.py DiffusionPrior, `unclip.prior`): from a caption's CLIP text embedding and token
  encodings, the CLIP image embedding of its image. Embeddings are L2-normalised and scaled by
  `prior_embedding_scale` (the paper's 17.2, Appendix C: ImageNet pixels' variance in [−1, 1] for its CLIP), or by
  √D (D the joint width) when 0, so that each dimension has a second moment of about 1 like the diffusion's N(0, I);
  sampled embeddings are L2-normalised. Loss: ‖f(z_t, t, y) − z_0‖² per dimension (objectives/unclip.py
  `prior_loss`), the text (embedding and tokens) dropped `prior_text_drop` (10%) of the time. After each evaluation,
  embeddings are sampled for the first `eval_captions` eval captions (`prior_sampler`, `prior_steps`, guidance
  `prior_guidance`, the better of `prior_candidates` draws by dot product with the text embedding, as the paper) and
  scored: eval/prior_cos_text (cosine of the sampled embedding and the caption's text embedding),
  eval/prior_cos_image (with the embedding of the caption's own image), next to eval/real_cos_text (the real image
  embeddings against their captions), eval/random_cos_text (real embeddings of other scenes against the same
  captions) and eval/random_cos_image (another scene's real embedding against the caption's own image's).
- "decoder" (models/glide.py UnCLIPDecoder, `unclip.decoder`: GLIDE's UNet and text encoder): images at
  `decoder_size` (the scenes' 64×64 average-pooled to 32×32 by default), scaled to [−1, 1], predicting ε (L_simple)
  or, with 2C output channels, ε and a learned variance (Improved DDPM's L_hybrid, the paper's), conditioned on the
  L2-normalised CLIP image embedding of the full-size image and on the caption's tokens (read by the decoder's own
  text encoder); the embedding is set to zero `decoder_clip_drop` (10%) and the caption to all padding
  `decoder_text_drop` (50%) of the time. After each evaluation, image variations of the first eval images (the
  decoder on their CLIP embeddings, no caption, guidance `decoder_guidance`) go to <workdir>/samples/, and
  eval/variation_clip_score is the CLIP score of those images (upsampled to the CLIP's size) against the source
  images' first captions, next to eval/real_clip_score (the real images, through the same down- and up-sampling) and
  eval/random_clip_score (real images of other scenes against the same captions).

CLIP score: the cosine of the frozen CLIP's L2-normalised image and text embeddings, ×100 as the paper's (GLIDE's)
metric. tools/unclip_sample.py runs text-to-image (prior → decoder) and image variations from two finished runs.
With `clip_run=""` the CLIP is random (smoke runs and tests only).
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import captions as captions_lib
from papers_jax.errors import ConfigError
from papers_jax.evaluators import reconstruction as vis
from papers_jax.models import unclip as unclip_models
from papers_jax.models.clip import eos_positions
from papers_jax.models.vit import apply_blocks
from papers_jax.nn.frozen import freeze
from papers_jax.objectives import diffusion
from papers_jax.objectives import unclip as objective
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.clip import check_clip_run, finished_clip_run

STAGES = ("prior", "decoder")
EVAL_NOISE_SEED = 0
RANGES = (("num_timesteps", "[1, 100000]"), ("prior_text_drop", "[0, 1]"), ("prior_embedding_scale", "[0, 1000]"),
          ("decoder_clip_drop", "[0, 1]"), ("decoder_text_drop", "[0, 1]"), ("prior_steps", "[1, 100000]"),
          ("decoder_steps", "[1, 100000]"), ("prior_candidates", "[1, 64]"), ("eval_captions", "[0, 100000]"),
          ("eval_images", "[0, 100000]"))


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.unclip`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      stage="prior", clip_run="", prior={}, decoder={}, num_timesteps=1000, schedule="cosine",
      prior_text_drop=0.1, prior_embedding_scale=0.0, decoder_clip_drop=0.1, decoder_text_drop=0.5, decoder_size=32,
      prior_sampler="ddim", prior_steps=64, prior_guidance=1.0, prior_candidates=2,
      decoder_sampler="ddim", decoder_steps=25, decoder_guidance=3.0, eval_captions=64, eval_images=32,
      sample_seed=0) | overrides)


def schedule_of(name: str, num_steps: int) -> diffusion.Schedule:
  if name == "cosine":
    return diffusion.cosine_schedule(num_steps)
  if name == "linear":
    return diffusion.linear_schedule(num_steps)
  raise ConfigError(f"unclip.schedule must be 'cosine' or 'linear', got {name!r}")


def l2_normalize(x):
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def text_features(clip, tokens):
  """(text embedding (B, D), token encodings (B, L, width) after the text tower's final LayerNorm, mask (B, L):
  the tokens up to and including [EOS]) of the frozen CLIP."""
  text = clip.text
  x, causal = text._embed(tokens)
  x = text.norm(apply_blocks(text.blocks, x, mask=causal, deterministic=True))
  embedding = clip.text_projection(text._at_eos(x, tokens)).astype(jnp.float32)
  eos = eos_positions(tokens, text.eos_token_id)
  mask = jnp.arange(tokens.shape[1])[None, :] <= eos[:, None]
  return embedding, x.astype(jnp.float32), mask


def downsample(images, size: int):
  """uint8 (B, S, S, C) → float32 (B, size, size, C) in [−1, 1], S / size × S / size average pooling."""
  x = images.astype(jnp.float32) / 127.5 - 1.0
  f = x.shape[1] // size
  if f * size != x.shape[1]:
    raise ConfigError(f"unclip.decoder_size={size} does not divide the image size {x.shape[1]}")
  b, _, _, c = x.shape
  return x.reshape(b, size, f, size, f, c).mean(axis=(2, 4))


def upsample_to_uint8(x, size: int) -> jnp.ndarray:
  """[−1, 1] decoder images → uint8-valued float32 at `size` (nearest, the inverse of the pooling's grid)."""
  f = size // x.shape[1]
  x = jnp.repeat(jnp.repeat(x, f, axis=1), f, axis=2)
  return jnp.round(jnp.clip((x + 1.0) * 127.5, 0.0, 255.0))


class UnCLIPStage(nnx.Module):
  """The frozen CLIP and the stage's network (`net`: a DiffusionPrior or a glide.UnCLIPDecoder)."""

  def __init__(self, clip: nnx.Module, net: nnx.Module):
    self.clip, self.net = clip, net


class FeatureSource:
  """The frozen CLIP's features of a scenes split, computed once: one example per (scene, caption) with
  `every_caption`, else per scene with its first caption. Example: image_embedding (D,) and text_embedding (D,),
  L2-normalised, encodings (L, width), mask_ (L,) bool (`text_features`), scene (int)."""

  def __init__(self, task, scenes, *, every_caption: bool, batch: int = 256):
    self.task, self.scenes, self.batch = task, scenes, batch
    self.pairs = [(i, c) for i, scene in enumerate(scenes.scenes)
                  for c in (scene["captions"] if every_caption else scene["captions"][:1])]
    self.name = "vqa_scenes CLIP features"

  @functools.cached_property
  def arrays(self) -> dict:
    """Computed at first use (a config check builds the source without reading it)."""
    task, scenes, batch = self.task, self.scenes, self.batch
    clip = task.frozen_clip
    image_fn = jax.jit(lambda m, x: l2_normalize(m.encode_image(normalize_images(x, task.mean, task.std))))
    text_fn = jax.jit(lambda m, t: (lambda e, x, k: (l2_normalize(e), x, k))(*text_features(m, t)))
    images = np.stack([scenes.image(i) for i in range(len(scenes))])
    image_emb = np.concatenate([np.asarray(image_fn(clip, images[s:s + batch])) for s in range(0, len(images), batch)])
    tokens = np.asarray(task.tokenizer([c for _, c in self.pairs]), np.int32)
    outs = [text_fn(clip, tokens[s:s + batch]) for s in range(0, len(tokens), batch)]
    scene = np.array([i for i, _ in self.pairs], np.int32)
    return {"image_embedding": image_emb[scene], "text_embedding": np.concatenate([np.asarray(o[0]) for o in outs]),
            "encodings": np.concatenate([np.asarray(o[1]) for o in outs]).astype(np.float32),
            "mask_": np.concatenate([np.asarray(o[2]) for o in outs]), "scene": scene}

  def __len__(self) -> int:
    return len(self.pairs)

  def __getitem__(self, i) -> dict:
    return {k: v[int(i)] for k, v in self.arrays.items()}


class UnCLIPTask:
  """Model + losses + evaluation for `config.task = "unclip"` (module docstring)."""

  def __init__(self, config):
    self.config, self.u = config, config.unclip
    if self.u.stage not in STAGES:
      raise ConfigError(f"unclip.stage must be one of {STAGES}, got {self.u.stage!r}")
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task unclip reads the image-text scenes (data.name='vqa_scenes'), got {config.data.name!r}")
    self.mean, self.std, _ = image_preprocessing(config)
    self.schedule = schedule_of(self.u.schedule, int(self.u.num_timesteps))
    for which, sampler in (("prior", self.u.prior_sampler), ("decoder", self.u.decoder_sampler)):
      if sampler not in diffusion.METHODS:
        raise ConfigError(f"unclip.{which}_sampler={sampler!r}; choose from {diffusion.METHODS}")
    if self.u.clip_run:
      check_clip_run(self.u.clip_run, "unclip.clip_run", config.model, self.mean, self.std)
    self._jitted, self._features = {}, {}

  # ------------------------------------------------------------------ data
  @functools.cached_property
  def tokenizer(self) -> captions_lib.CaptionTokenizer:
    context = int(self.config.model.get("context_length", 77))
    if self.u.clip_run:
      return captions_lib.CaptionTokenizer.from_file(os.path.join(self.u.clip_run, "tokenizer.json"), context)
    from papers_jax.tasks.clip import scenes_tokenizer
    return scenes_tokenizer(context)

  def source(self, split: str):
    """The decoder reads the scenes; the prior reads their frozen-CLIP features, computed once (`FeatureSource`)."""
    scenes = captions_lib.image_text_source(self.config.data, split, "")
    if self.u.stage == "decoder":
      return scenes
    if split not in self._features:
      self._features[split] = FeatureSource(self, scenes, every_caption=split == self.config.data.train_split)
    return self._features[split]

  def preprocess(self, train: bool):
    """Decoder: example → {"image": uint8 (S, S, 3), "tokens": int32 (L,)}, a random caption for training, the first
    else. Prior: the example's CLIP features as they are."""
    if self.u.stage == "prior":
      return lambda example, rng: dict(example)

    def fn(example, rng):
      texts = example["texts"]
      caption = texts[int(rng.integers(len(texts)))] if train and rng is not None else texts[0]
      return {"image": np.asarray(example["image"], np.uint8), "tokens": self.tokenizer([caption])[0]}
    return fn

  @functools.cached_property
  def frozen_clip(self) -> nnx.Module:
    """The CLIP of `clip_run` (random with clip_run="": smoke runs), outside the trainer, for the prior's features."""
    if self.u.clip_run:
      from papers_jax.sketch import load_clip_run
      return load_clip_run(self.u.clip_run)[0]
    name, kwargs = precision.model_kwargs(self.config)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size)
    return models.create(name, rngs=nnx.Rngs(self.config.seed), **kwargs)

  def save_assets(self, workdir: str):
    self.tokenizer.save(os.path.join(workdir, "tokenizer.json"))

  def frozen_checkpoints(self) -> dict:
    return {"clip/": finished_clip_run(self.u.clip_run, "unclip.clip_run")} if self.u.clip_run else {}

  # ------------------------------------------------------------------ model
  @property
  def embed_dim(self) -> int:
    return int(self.config.model.get("embed_dim") or models.model_config(self.config.model.name)["embed_dim"])

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size)
    clip = freeze(models.create(name, rngs=rngs, **kwargs))  # random here; the trainer reads the CLIP run
    net_cfg = dict(self.u.prior if self.u.stage == "prior" else self.u.decoder)
    net_name = net_cfg.pop("name")
    context = int(kwargs.get("context_length", 77))
    if self.u.stage == "prior":
      text_dim = int(kwargs.get("text_width") or models.model_config(name)["text_width"])
      extra = dict(embed_dim=self.embed_dim, text_dim=text_dim, num_text_tokens=context)
    else:  # the decoder's own text encoder reads the CLIP tokenizer's ids
      text = dict(models.model_config(net_name).get("text", {})) | dict(net_cfg.pop("text", {}))
      extra = dict(embed_dim=self.embed_dim, text=text | dict(vocab_size=self.tokenizer.vocab_size, context=context))
    net = models.create(net_name, rngs=rngs, **net_cfg | extra)
    return UnCLIPStage(clip, net)

  def prior_scale(self, dim: int) -> float:
    """The factor on the prior's L2-normalised embeddings: `prior_embedding_scale` (the paper's 17.2), or √D when 0,
    each dimension then with a second moment of about 1, like the noise."""
    return float(self.u.prior_embedding_scale) or math.sqrt(dim)

  def forward_flops(self, model) -> float:
    """One call of the stage's network per example (the frozen CLIP's forward is left out)."""
    return unclip_models.forward_flops(model.net, img_size=int(self.u.decoder_size))

  # ------------------------------------------------------------------ the CLIP side
  def image_embedding(self, clip, images):
    """The frozen CLIP's L2-normalised image embeddings (B, D) of uint8 images."""
    return jax.lax.stop_gradient(l2_normalize(clip.encode_image(normalize_images(images, self.mean, self.std))))

  def caption_mask(self, clip, tokens):
    """(B, L) bool: the caption's tokens up to and including [EOS]; the rest is padding."""
    return jnp.arange(tokens.shape[1])[None, :] <= eos_positions(tokens, clip.text.eos_token_id)[:, None]

  # ------------------------------------------------------------------ losses
  def _losses(self, model, batch, key, *, train: bool, dropout_key=None):
    if self.u.stage == "prior":  # the features, computed once (FeatureSource)
      image, text, encodings, mask = (batch[k] for k in ("image_embedding", "text_embedding", "encodings", "mask_"))
    else:
      image, tokens = self.image_embedding(model.clip, batch["image"]), batch["tokens"]
      mask = self.caption_mask(model.clip, tokens)
    b = image.shape[0]
    keys = jax.random.split(key, 5)
    t = jax.random.randint(keys[0], (b,), 0, self.schedule.num_steps)
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    if self.u.stage == "prior":
      scale = self.prior_scale(image.shape[-1])
      z0, text = image * scale, text * scale
      keep = objective.keep_mask(keys[1], b, float(self.u.prior_text_drop) if train else 0.0)
      text = jnp.where(keep[:, None], text, 0.0)
      noise = jax.random.normal(keys[2], z0.shape, jnp.float32)
      z_t = diffusion.q_sample(self.schedule, z0, t, noise)
      pred = model.net(z_t, t, text, encodings, mask & keep[:, None], train=train, rngs=rngs)
      return objective.prior_loss(pred, z0)
    x0 = downsample(batch["image"], int(self.u.decoder_size))
    keep_clip = objective.keep_mask(keys[1], b, float(self.u.decoder_clip_drop) if train else 0.0)
    keep_text = objective.keep_mask(keys[3], b, float(self.u.decoder_text_drop) if train else 0.0)
    noise = jax.random.normal(keys[2], x0.shape, jnp.float32)
    x_t = diffusion.q_sample(self.schedule, x0, t, noise)
    out = model.net(x_t, t, jnp.where(keep_clip[:, None], image, 0.0), tokens, mask & keep_text[:, None],
                    train=train, rngs=rngs)
    if out.shape[-1] == 2 * x0.shape[-1]:  # ε and the learned variance: Improved DDPM's L_hybrid
      return diffusion.hybrid_loss(self.schedule, x0, x_t, t, noise, out)
    return diffusion.l_simple(out, noise)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      key, dropout_key = jax.random.split(rng)
      losses = self._losses(model, batch, key, train=True, dropout_key=dropout_key)
      return losses.mean(), ({}, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    """The loss with every conditioning kept, t and the noise from a fixed key per batch position."""
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses = self._losses(model, batch, jax.random.key(EVAL_NOISE_SEED), train=False)
      valid = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * valid).sum(), "count": valid.sum()}
    return eval_fn

  # ------------------------------------------------------------------ sampling (also used by tools/unclip_sample.py)
  def sample_prior(self, prior, text, encodings, mask, key, *, guidance: float, candidates: int):
    """CLIP image embeddings (B, D), L2-normalised, for L2-normalised text embeddings (B, D): `candidates` draws
    of the prior's chain (guided: ẑ_0 = u + s (c − u), u with the text dropped), the one with the highest dot
    product with the text embedding kept."""
    b, d = text.shape
    scale = self.prior_scale(d)
    text = text * scale
    null_text, null_mask = jnp.zeros_like(text), jnp.zeros_like(mask)

    def predict(z_t, t):
      if guidance == 1.0:  # the conditional model alone
        return prior(z_t, t, text, encodings, mask)
      both = prior(jnp.concatenate([z_t, z_t]), jnp.concatenate([t, t]), jnp.concatenate([text, null_text]),
                   jnp.concatenate([encodings, encodings]), jnp.concatenate([mask, null_mask]))
      return objective.guided(both[b:], both[:b], guidance)

    draws = jnp.stack([objective.sample_from_x0(predict, self.schedule, (b, d), jax.random.fold_in(key, k),
                                                method=self.u.prior_sampler, num_steps=int(self.u.prior_steps))
                       for k in range(candidates)])
    return l2_normalize(objective.best_of(draws, text))

  def sample_decoder(self, decoder, image_embedding, tokens, mask, key, *, guidance: float):
    """Images (B, s, s, 3) in [−1, 1] from L2-normalised CLIP image embeddings (and caption tokens with `mask`;
    an all-False mask: no caption). Guidance: ε = ε_u + s (ε_c − ε_u), ε_u with the embedding zeroed and the
    caption all padding. A decoder with a learned variance (2C output channels) samples with it along
    `decoder_steps` strided steps when `decoder_sampler` is "ancestral" (the paper's), with the conditional
    model's variance (GLIDE's guided sampling); "ddim" reads its ε alone. A fixed-variance decoder: σ² = β̃."""
    b, c = image_embedding.shape[0], decoder.in_chans
    size = int(self.u.decoder_size)
    null_mask = jnp.zeros_like(mask)
    learned = decoder.unet.out_chans == 2 * c

    def denoise(x, t):
      both = decoder(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                     jnp.concatenate([image_embedding, jnp.zeros_like(image_embedding)]),
                     jnp.concatenate([tokens, tokens]), jnp.concatenate([mask, null_mask]))
      eps = objective.guided(both[b:, ..., :c], both[:b, ..., :c], guidance)
      return jnp.concatenate([eps, both[:b, ..., c:]], axis=-1) if learned else eps  # the conditional variance

    shape = (b, size, size, c)
    if learned and self.u.decoder_sampler == "ancestral":  # strided, as the paper's 250 steps
      return diffusion.sample_learned(denoise, self.schedule, shape, key, num_steps=int(self.u.decoder_steps))
    eps_fn = (lambda x, t: denoise(x, t)[..., :c]) if learned else denoise  # noqa: E731
    return diffusion.sample(eps_fn, self.schedule, shape, key, method=self.u.decoder_sampler,
                            num_steps=int(self.u.decoder_steps), variance="posterior", clip_x0=True)

  def clip_score(self, clip, images_uint8, tokens):
    """(B,) 100 × cosine of the CLIP image embeddings of uint8-valued images and the text embeddings of tokens."""
    image = l2_normalize(clip.encode_image(normalize_images(images_uint8, self.mean, self.std)))
    text = l2_normalize(text_features(clip, tokens)[0])
    return 100.0 * jnp.sum(image * text, axis=-1)

  # ------------------------------------------------------------------ evaluation
  def _eval_examples(self, n: int):
    src = self.source(self.config.data.eval_split)
    n = min(n, len(src))
    prep = self.preprocess(False)
    examples = [prep(dict(src[i]), None) for i in range(n)]
    return (np.stack([e["image"] for e in examples]), np.stack([e["tokens"] for e in examples]).astype(np.int32))

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    state = trainer.state
    params = state.extra.get("ema_params", state.params)
    if self.u.stage == "prior":
      return self._prior_eval(trainer, params, state.model_state)
    return self._decoder_eval(trainer, params, state.model_state, step, writer)

  def _prior_eval(self, trainer, params, model_state) -> dict:
    src = self.source(self.config.data.eval_split)
    n = min(int(self.u.eval_captions), len(src))
    if not n:
      return {}
    feats = {k: v[:n] for k, v in src.arrays.items()}
    graphdef = trainer.graphdef
    if "prior" not in self._jitted:
      def run(params, model_state, feats, key):
        model = merge_model(graphdef, params, model_state)
        image, text, encodings, mask = (feats[k] for k in ("image_embedding", "text_embedding", "encodings", "mask_"))
        sampled = self.sample_prior(model.net, text, encodings, mask, key, guidance=float(self.u.prior_guidance),
                                    candidates=int(self.u.prior_candidates))
        other = jnp.roll(image, 1, axis=0)  # another scene's real embedding
        cos = lambda a, b: jnp.sum(a * b, axis=-1)  # noqa: E731
        return {"prior_cos_text": cos(sampled, text), "prior_cos_image": cos(sampled, image),
                "real_cos_text": cos(image, text), "random_cos_text": cos(other, text),
                "random_cos_image": cos(other, image)}
      self._jitted["prior"] = jax.jit(run, out_shardings=sharding.replicated(trainer.mesh))
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      out = self._jitted["prior"](params, model_state, feats, jax.random.key(int(self.u.sample_seed)))
    return {k: float(np.mean(v)) for k, v in out.items()}

  def _decoder_eval(self, trainer, params, model_state, step, writer) -> dict:
    n = int(self.u.eval_images)
    if not n:
      return {}
    images, tokens = self._eval_examples(n)
    graphdef, size = trainer.graphdef, int(images.shape[1])
    if "decoder" not in self._jitted:
      def run(params, model_state, images, tokens, key):
        model = merge_model(graphdef, params, model_state)
        image = self.image_embedding(model.clip, images)
        samples = self.sample_decoder(model.net, image, tokens, jnp.zeros(tokens.shape, bool), key,
                                      guidance=float(self.u.decoder_guidance))
        generated = upsample_to_uint8(samples, size)
        real = upsample_to_uint8(downsample(images, int(self.u.decoder_size)), size)
        score = lambda x: self.clip_score(model.clip, x, tokens)  # noqa: E731
        return generated, {"variation_clip_score": score(generated), "real_clip_score": score(real),
                           "real_full_size_clip_score": score(images.astype(jnp.float32)),
                           "random_clip_score": score(jnp.roll(real, 1, axis=0))}
      self._jitted["decoder"] = jax.jit(run, out_shardings=sharding.replicated(trainer.mesh))
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      generated, out = self._jitted["decoder"](params, model_state, images, tokens,
                                               jax.random.key(int(self.u.sample_seed)))
    if writer is not None and trainer.is_main:
      rows = [np.stack([images[i], np.asarray(generated[i], np.uint8)]) / 255.0 for i in range(min(8, n))]
      picture = vis.grid_image(rows, cell=2 * size, caption=f"unCLIP decoder step {step}: image | variation")
      vis.save_png(picture, os.path.join(trainer.workdir, "samples", f"step_{step:06d}.png"))
      writer.write_image(step, "unclip/variations", picture)
    return {k: float(np.mean(v)) for k, v in out.items()}
