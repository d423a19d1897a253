"""Image GPT pre-training (`config.task = "igpt"`), Chen et al., ICML 2020, §2-3.

The images are reduced to a palette first: k-means over the colours of the training split's pixels
(`igpt.num_clusters` centres; the paper's 9-bit palette has 512; objectives/mim.py `fit_palette`), fitted
once when the task starts (deterministic: `igpt.palette_seed`), and every pixel becomes the id of its
nearest centre, in raster order. `igpt.objective` picks the paper's two objectives:
  "autoregressive"  the input is [SOS, x_1..x_{n-1}], causal attention, and the loss the negative
                    log-likelihood of every pixel given the previous ones;
  "bert"            each pixel is masked with probability `igpt.mask_prob` (0.15; the [MASK] embedding
                    replaces its token embedding), bidirectional attention, and the loss the negative
                    log-likelihood of the masked pixels.
Metrics are in nats per pixel (and bits per pixel). Evaluation: the same loss on the test split, with
BERT masks from a fixed key.

`features` gives the paper's linear-probe feature to `config.evals`: the output of block
`igpt.probe_layer` (0-based; -1: the middle block, depth // 2, where the paper finds the best features),
normalised by the final RMSNorm and averaged over the positions, for the input its objective trains on
(the SOS-shifted sequence and causal attention; the unmasked sequence, bidirectional, for BERT).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import pipeline, sources
from papers_jax.errors import ConfigError
from papers_jax.models import igpt
from papers_jax.objectives import mim

OBJECTIVES = ("autoregressive", "bert")
EVAL_MASK_SEED = 0
RANGES = (
    ("num_clusters", "[2, 65536]"),
    ("mask_prob", "(0, 1)"),
    ("palette_pixels", "[1, 100000000]"),
    ("probe_layer", "[-1, 1000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.igpt`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(objective="autoregressive", num_clusters=512, mask_prob=0.15,
                                        palette_pixels=1_000_000, palette_seed=0, probe_layer=-1) | overrides)


class IGPTTask:
  def __init__(self, config):
    self.config = config
    self.cfg = config.igpt
    if self.cfg.objective not in OBJECTIVES:
      raise ConfigError(f"igpt.objective must be one of {OBJECTIVES}, got {self.cfg.objective!r}")
    self.causal = self.cfg.objective == "autoregressive"
    self.depth = None
    self._encode = {}

  @functools.cached_property
  def palette(self) -> np.ndarray:
    """(num_clusters, C) colours in [0, 1]: k-means over the training split's pixels at the evaluation
    preprocessing (a random subset of `igpt.palette_pixels` pixels when there are more)."""
    fn = pipeline.config_image_preprocess(self.config, train=False)
    source = sources.get_source(self.config.data, self.config.data.train_split)
    pixels = np.concatenate([fn(dict(source[i]), None)["image"].reshape(-1, 1) for i in range(len(source))])
    pixels = pixels.reshape(-1, fn(dict(source[0]), None)["image"].shape[-1])
    rng = np.random.default_rng(int(self.cfg.palette_seed))
    if len(pixels) > int(self.cfg.palette_pixels):
      pixels = pixels[rng.choice(len(pixels), int(self.cfg.palette_pixels), replace=False)]
    try:
      return mim.fit_palette(pixels.astype(np.float64) / 255.0, int(self.cfg.num_clusters),
                             seed=int(self.cfg.palette_seed))
    except ValueError as e:
      raise ConfigError(f"igpt.num_clusters={self.cfg.num_clusters}: {e}") from e

  def preprocess(self, train: bool):
    """The standard image pipeline without normalisation: the palette reads uint8 colours."""
    return pipeline.config_image_preprocess(self.config, train)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    size = int(self.config.data.image_size)
    kwargs |= dict(num_clusters=int(self.cfg.num_clusters), n_positions=size * size,
                   mask_token=self.cfg.objective == "bert")
    model = models.create(name, rngs=rngs, **kwargs)
    if not isinstance(model, igpt.ImageGPT):
      raise ConfigError(f"task igpt trains an ImageGPT (igpt_*), not {name!r}")
    self.depth = len(model.blocks)
    return model

  def forward_flops(self, model) -> float:
    return models.forward_flops(model, seq_len=int(self.config.data.image_size) ** 2)

  def _ids(self, images):
    return mim.palette_ids(images.astype(jnp.float32) / 255.0, self.palette)

  def _inputs(self, ids):
    """The model's input for the objective: [SOS, x_1..x_{n-1}] (autoregressive) or the ids (BERT)."""
    if not self.causal:
      return ids
    sos = jnp.full((ids.shape[0], 1), int(self.cfg.num_clusters), jnp.int32)
    return jnp.concatenate([sos, ids[:, :-1]], axis=1)

  def _losses(self, model, batch, key, dropout_key=None):
    ids = self._ids(batch["image"])
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    train = dropout_key is not None
    if self.causal:
      logits = model(self._inputs(ids), train=train, rngs=rngs)
      weight = jnp.ones(ids.shape, bool)
      losses = mim.autoregressive_loss(logits, ids)
    else:
      weight = mim.bert_mask(key, ids.shape, float(self.cfg.mask_prob))
      logits = model(ids, mask=weight, causal=False, train=train, rngs=rngs)
      losses = mim.masked_pixel_loss(logits, ids, weight)
    correct = ((logits.argmax(-1) == ids) & weight).sum(-1) / jnp.maximum(weight.sum(-1), 1)
    return losses, correct

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      key, dropout_key = jax.random.split(rng)
      losses, correct = self._losses(model, batch, key, dropout_key)
      metrics = {"pixel_accuracy": correct.mean(), "bits_per_pixel": losses.mean() / np.log(2.0)}
      return losses.mean(), (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses, correct = self._losses(model, batch, jax.random.key(EVAL_MASK_SEED))
      valid = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * valid).sum(), "pixel_accuracy": (correct * valid).sum(), "count": valid.sum()}
    return eval_fn

  def probe_layer(self, depth: int) -> int:
    layer = int(self.cfg.probe_layer)
    if layer >= depth:
      raise ConfigError(f"igpt.probe_layer={layer} but the model has {depth} blocks (0-based; -1: the middle)")
    return depth // 2 if layer < 0 else layer

  def features(self, trainer, layer: int | None = None):
    """(uint8 images → the probe feature (see the module docstring) of block `layer` (default
    `igpt.probe_layer`), the evaluation preprocessing)."""
    layer = self.probe_layer(self.depth) if layer is None else layer
    if layer not in self._encode:
      graphdef = trainer.graphdef

      def encode(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        out = model.forward_intermediates(self._inputs(self._ids(images)), indices=[layer], stop_early=True,
                                          causal=self.causal)
        return model.norm(out[f"block{layer:02d}/+mlp"]).astype(jnp.float32).mean(axis=1)
      self._encode[layer] = jax.jit(encode, out_shardings=sharding.replicated(trainer.mesh))
    state, encode = trainer.state, self._encode[layer]
    return (lambda images: encode(state.params, state.model_state, images)), self.preprocess(train=False)
