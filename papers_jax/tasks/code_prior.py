"""An autoregressive prior over the codes of a trained VQ-VAE (`config.task = "code_prior"`), for samples.

VQ-VAE (van den Oord et al. 2017, §3.2, §4.2) samples by fitting an autoregressive prior over the grid of
code indices of the trained, frozen VQ-VAE (a PixelCNN in the paper), sampling a grid from it and decoding
it. Here GPT (models/gpt.py) over the flattened indices in raster order stands in for the PixelCNN: both
model p(c) = Π_i p(c_i | c_<i) in that order, the PixelCNN with masked convolutions and GPT with causal
self-attention (a departure; configs/vqvae/prior_digits.py lists it).

Data: the config's image split (the VQ-VAE's own data settings) encoded once, when the source is built, by
the VQ-VAE of `prior.vqvae_checkpoint` (a VQ-VAE run's checkpoints/<step>/state; its model section is
`prior.vqvae_model`, its image scaling `data.mean` / `data.std`): each example is `codes`, the (h·w,)
int32 indices of one image. Tokens: the model reads [BOS, c_0, …, c_{n−2}] with BOS = K (vocabulary
K + 1) and its logits at position i predict c_i over the K codes only (the BOS column is dropped).

Loss: the mean cross-entropy per code (nats). Evaluation: eval/loss, eval/bits_per_image (the NLL of a
whole code grid in bits) and, after it, eval/loss_independent_codes: the same NLL per code for independent
codes with the train split's code frequencies (the trivial prior to beat). With `prior.fid_samples` > 0
(digits), that many grids are sampled from fixed noise (`prior.sample_seed`, temperature 1) by
papers_jax.decoding.generate (the BOS prompt, then one code per step of a `lax.scan` with a KV cache, all
under one jit), decoded by the VQ-VAE and scored with the digits FID (evaluators/fid.py:
digits_sample_metrics): eval/fid, eval/fid_gaussian, eval/fid_test_split, eval/sample_class_entropy, and
eval/fid_independent_codes for as many grids of independent codes decoded alike. A grid of the first
`prior.vis_examples` samples goes to <workdir>/samples/ and TensorBoard.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import decoding, models
from papers_jax.core import precision, sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import pipeline
from papers_jax.data.sources import get_source
from papers_jax.errors import CheckpointError, ConfigError
from papers_jax.evaluators import fid as fid_lib
from papers_jax.evaluators import reconstruction as vis
from papers_jax.objectives import lm as lm_objective
from papers_jax.tasks.classification import normalize_images

RANGES = (("vis_examples", "[0, 1024]"), ("fid_samples", "[0, 100000]"), ("sample_seed", "[0, 4294967295]"))


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.prior`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(vqvae_checkpoint="", random_vqvae=False, vqvae_model={},
                                        vis_examples=64, fid_samples=300, sample_seed=0) | overrides)


def prior_inputs(codes, bos: int):
  """Codes (B, n) → the model's input tokens (B, n): BOS, then every code but the last."""
  return jnp.concatenate([jnp.full((codes.shape[0], 1), bos, codes.dtype), codes[:, :-1]], axis=1)


def code_nll(logits, codes, num_codes: int):
  """−log p(c_i | c_<i) per code (B, n), from the logits (B, n, K + 1) of `prior_inputs(codes)`; the BOS
  column is left out, so each position's distribution is over the K codes."""
  return lm_objective.token_cross_entropy(logits[..., :num_codes], codes)


def sample_codes(model, key, n: int, *, num_codes: int, length: int, temperature: float = 1.0):
  """`n` sequences of `length` codes from the GPT prior `model`: the BOS prompt, then one code per step of
  papers_jax.decoding.generate's `lax.scan` with a KV cache; each step samples over the K codes only."""
  def step(tokens, cache):
    logits, cache = model.decode_step(tokens, cache)
    return logits[..., :num_codes], cache
  prompt = jnp.full((n, 1), num_codes, jnp.int32)
  return decoding.generate(step, model.init_cache(n, length), prompt, max_new_tokens=length, rng=key,
                           temperature=temperature)


class CodeSource:
  """The code grids of one image split, encoded once: `source[i]` = {"codes": (n,) int32, "label": int}."""

  def __init__(self, codes: np.ndarray, labels: np.ndarray, name: str):
    self.codes, self.labels, self.name = codes, labels, name

  def __len__(self) -> int:
    return len(self.codes)

  def __getitem__(self, i) -> dict:
    return {"codes": self.codes[i], "label": self.labels[i]}


class CodePriorTask:
  """Model (a GPT over code indices) + loss + sampling for `config.task = "code_prior"`."""

  def __init__(self, config):
    self.config = config
    self.prior = config.prior
    self.mean, self.std, _ = image_preprocessing(config)
    if not self.prior.vqvae_checkpoint and not self.prior.random_vqvae:
      raise ConfigError("prior.vqvae_checkpoint is empty: give the trained VQ-VAE, a run's "
                        "checkpoints/<step>/state (e.g. configs/vqvae/prior_digits.py:vqvae=runs/vqvae_digits/"
                        "checkpoints/800/state)")
    if self.prior.vqvae_checkpoint and not os.path.isdir(self.prior.vqvae_checkpoint):
      raise CheckpointError(f"prior.vqvae_checkpoint={self.prior.vqvae_checkpoint!r} is not a directory; give a "
                            "VQ-VAE run's checkpoints/<step>/state")
    self.fid_samples = fid_lib.check_fid_samples(config, "prior")
    self._sources, self._vqvae, self._jitted = {}, None, {}

  # ------------------------------------------------------------------ the frozen VQ-VAE and its codes
  @property
  def vqvae(self) -> nnx.Module:
    """The VQ-VAE, read from `prior.vqvae_checkpoint` (params and model state: the EMA codebook)."""
    if self._vqvae is None:
      from papers_jax.convert import init_model_state_from_checkpoint, init_params_from_checkpoint
      cfg = dict(self.prior.vqvae_model)
      model = models.create(cfg.pop("name"), rngs=nnx.Rngs(0), **cfg)
      if self.prior.vqvae_checkpoint:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loaded, _ = init_params_from_checkpoint(self.prior.vqvae_checkpoint, nnx.to_pure_dict(params), skip=())
        state, _ = init_model_state_from_checkpoint(self.prior.vqvae_checkpoint, nnx.to_pure_dict(rest))
        nnx.replace_by_pure_dict(params, loaded)
        nnx.replace_by_pure_dict(rest, state)
        model = nnx.merge(graphdef, params, rest)
      self._vqvae = model
    return self._vqvae

  @property
  def num_codes(self) -> int:
    """K, from the VQ-VAE's model section (no model is built: build_model runs under abstract tracing)."""
    cfg = dict(self.prior.vqvae_model)
    return int(cfg.get("num_codes") or models.model_config(cfg["name"])["num_codes"])

  def source(self, split: str):
    if split not in self._sources:
      images_source = get_source(self.config.data, split)
      preprocess = pipeline.config_image_preprocess(self.config, False)
      images = np.stack([preprocess(dict(images_source[i]), None)["image"] for i in range(len(images_source))])
      labels = np.array([images_source[i]["label"] for i in range(len(images_source))], np.int32)
      encode = jax.jit(lambda m, x: m.encode(normalize_images(x, self.mean, self.std)))
      codes = np.concatenate([np.asarray(encode(self.vqvae, images[s:s + 256]))
                              for s in range(0, len(images), 256)])
      self._sources[split] = CodeSource(codes.reshape(len(codes), -1).astype(np.int32), labels,
                                        f"{self.config.data.name} codes")
    return self._sources[split]

  @property
  def grid_shape(self) -> tuple[int, int]:
    side = int(self.config.data.image_size) // 4  # the VQ-VAE downsamples by 4 (models/vqvae.py)
    return side, side

  # ------------------------------------------------------------------ model and loss
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    h, w = self.grid_shape
    return models.create(name, rngs=rngs, **kwargs | {"vocab_size": self.num_codes + 1, "context_length": h * w})

  def forward_flops(self, model) -> float:
    h, w = self.grid_shape
    return models.forward_flops(model, seq_len=h * w)

  def preprocess(self, train: bool):
    del train
    return lambda example, rng: {"codes": np.asarray(example["codes"], np.int32)}

  def make_loss_fn(self, graphdef):
    k = self.num_codes

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      codes = batch["codes"]
      logits = model(prior_inputs(codes, k), train=True, rngs=nnx.Rngs(dropout=rng))
      nll = code_nll(logits, codes, k)
      accuracy = (jnp.argmax(logits[..., :k], axis=-1) == codes).mean()
      return nll.mean(), ({"accuracy": accuracy}, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; `count` is the number of codes, so eval/loss is the NLL per code (nats)."""
    k = self.num_codes

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      codes, valid = batch["codes"], batch["mask"].astype(jnp.float32)
      nll = code_nll(model(prior_inputs(codes, k)), codes, k)
      n = codes.shape[1]
      return {"loss": (nll.sum(axis=1) * valid).sum(), "count": valid.sum() * n,
              "bits_per_image": (nll.sum(axis=1) * valid).sum() / np.log(2),
              "counts": {"bits_per_image": valid.sum()}}
    return eval_fn

  # ------------------------------------------------------------------ sampling
  def sample_codes(self, trainer, n: int, seed: int) -> np.ndarray:
    """`n` code grids (n, h·w) from the prior, temperature 1, under one jit (`sample_codes`)."""
    if self._jitted.get("trainer") is not trainer:
      graphdef, k = trainer.graphdef, self.num_codes
      h, w = self.grid_shape

      def sample(params, model_state, key, n):
        return sample_codes(merge_model(graphdef, params, model_state), key, n, num_codes=k, length=h * w)
      self._jitted = {"trainer": trainer, "sample": jax.jit(sample, static_argnums=3,
                                                            out_shardings=sharding.replicated(trainer.mesh))}
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      return np.asarray(self._jitted["sample"](trainer.state.params, trainer.state.model_state,
                                               jax.random.key(seed), n))

  def decode(self, codes) -> np.ndarray:
    """Code grids (n, h·w) → uint8 images (n, H, W, C) through the VQ-VAE's decoder."""
    if "decode" not in self._jitted:
      self._jitted["decode"] = jax.jit(lambda m, c: m.decode_indices(c))
    h, w = self.grid_shape
    codes = np.asarray(codes, np.int32).reshape(-1, h, w)
    x = np.asarray(self._jitted["decode"](self.vqvae, codes), np.float32)
    x = np.clip(x * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32), 0, 1)
    return np.round(x * 255).astype(np.uint8)

  def independent_codes(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the train split's code frequencies (K,), `n` grids of independent codes drawn from them)."""
    codes = self.source(self.config.data.train_split).codes
    freq = np.bincount(codes.ravel(), minlength=self.num_codes) / codes.size
    rng = np.random.default_rng(seed)
    return freq, rng.choice(self.num_codes, size=(n, codes.shape[1]), p=freq).astype(np.int32)

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    seed = int(self.prior.sample_seed)
    freq, independent = self.independent_codes(max(self.fid_samples, 2), seed)
    test_codes = source.codes
    out = {"loss_independent_codes": float(-np.log(np.maximum(freq[test_codes], 1e-12)).mean())}
    n = int(self.prior.vis_examples)
    if not (self.fid_samples or n):
      return out
    images = self.decode(self.sample_codes(trainer, max(n, self.fid_samples), seed))
    if self.fid_samples:
      size = int(self.config.data.image_size)
      out |= fid_lib.digits_sample_metrics(images[:self.fid_samples], size, seed=seed)
      out["fid_independent_codes"] = fid_lib.digits_sample_metrics(self.decode(independent), size, seed=seed)["fid"]
    if n and writer is not None and trainer.is_main:
      cols = int(np.ceil(np.sqrt(n)))
      grid = images[:n] / 255.0
      rows = [grid[i:i + cols] for i in range(0, n - n % cols or n, cols)]
      picture = vis.grid_image(rows, cell=2 * grid.shape[1])
      vis.save_png(picture, os.path.join(trainer.workdir, "samples", f"step_{step:06d}.png"))
      writer.write_image(step, "prior/samples", picture)
    return out
