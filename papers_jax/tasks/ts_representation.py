"""Self-supervised time-series representations (`config.task = "ts_representation"`), with the papers'
evaluation protocols.

Data: a UCR/UEA classification set (data/timeseries.py ClassificationSource, `data.name =
"ucr_uea:<name>"`): series (T, C) with NaN where missing, each channel standardised with the train split's
statistics. Labels are used only by the evaluation.

`ts_repr.method`:
  "ts2vec"  TS2Vec (Yue et al., 2022): each step draws two overlapping crops of the batch's series, as the
            official code does: an overlap length l ~ U{2^(temporal_unit+1), …, T}, its position, the two
            contexts' outer ends around it (one shared draw for the batch) and one offset per series; the
            encoder (models/ts2vec.py, timestamp masking on) encodes each context, and the hierarchical
            contrastive loss (objectives/ts_contrastive.py) compares the two on the overlap. The crops are
            taken at the series' full length with `valid` masks, which gives the outputs of the cropped
            series exactly (models/ts2vec.py), so every step has one shape.
  Series longer than `ts_repr.max_train_length` are trained on a random window of that length per batch.
  When the train split's series are NaN-padded at either end (unequal lengths), the training series are
  centred in the padded length first (data/timeseries.centre_series), as the official code; evaluation
  encodes them as they are.

Evaluation (after each `eval_every` and at the end): the evaluated split's loss with crops from a fixed key,
then every series of the train and evaluated splits is encoded whole (no masking, the weight average of
`config.weight_average` when the config keeps one: TS2Vec evaluates the uniform average of its iterates)
and max-pooled over time into one vector, and
  repr/svm_acc      TS2Vec's protocol: an RBF-SVM, C by cross-validation (evaluators/svm.py);
  repr/linear_acc   a linear probe (evaluators/linear_probe.py);
  baseline/svm_raw_acc     the same SVM on the raw series (NaN as 0), flattened;
  baseline/svm_random_acc  the same SVM on the representations of the untrained encoder (same init seed).

Config (`config.ts_repr`): method, temporal_unit, alpha, max_train_length, eval_batch, probe.
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
from papers_jax.data import timeseries
from papers_jax.errors import ConfigError
from papers_jax.evaluators import linear_probe, svm
from papers_jax.models import ts2vec as ts2vec_model
from papers_jax.objectives import ts_contrastive

METHODS = ("ts2vec",)
EVAL_CROP_SEED = 0

RANGES = (
    ("temporal_unit", "[0, 30]"),
    ("alpha", "[0, 1]"),
    ("max_train_length", "[2, 10000000]"),
    ("eval_batch", "[1, 1048576]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.ts_repr`, the fields this task reads (TS2Vec's defaults)."""
  return ml_collections.ConfigDict(dict(method="ts2vec", temporal_unit=0, alpha=0.5, max_train_length=3000,
                                        eval_batch=64, probe=True) | overrides)


def two_crops(key, batch: int, length: int, temporal_unit: int):
  """TS2Vec's crop draw over series of `length` steps: (valid1, valid2) (batch, length) bool masks of the two
  contexts, `start` (batch,) the overlap's first step and `overlap` its (scalar) length."""
  k = jax.random.split(key, 5)
  overlap = jax.random.randint(k[0], (), 2 ** (temporal_unit + 1), length + 1)
  left = jax.random.randint(k[1], (), 0, length - overlap + 1)
  right = left + overlap
  outer_left = jax.random.randint(k[2], (), 0, left + 1)
  outer_right = jax.random.randint(k[3], (), right, length + 1)
  offset = jax.random.randint(k[4], (batch,), -outer_left, length - outer_right + 1)
  t = jnp.arange(length)[None]
  within = lambda a, b: (t >= (offset + a)[:, None]) & (t < (offset + b)[:, None])  # noqa: E731
  return within(outer_left, right), within(left, outer_right), offset + left, overlap


def aligned(z, start):
  """(batch, T, D) → the steps from each row's `start` on, moved to the front (what is past the end repeats
  the last step; the loss masks it)."""
  idx = jnp.clip(start[:, None] + jnp.arange(z.shape[1])[None], 0, z.shape[1] - 1)
  return jnp.take_along_axis(z, idx[..., None], axis=1)


class TSRepresentationTask:
  def __init__(self, config):
    self.config = config
    self.cfg = config.ts_repr
    if self.cfg.method not in METHODS:
      raise ConfigError(f"ts_repr.method={self.cfg.method!r}; choose one of {METHODS}")
    self._encode_jit = None
    self._random_scores = None

  # ------------------------------------------------------------------ data and model
  @functools.lru_cache(maxsize=4)
  def source(self, split: str):
    return timeseries.ClassificationSource(self.config.data, split)

  @property
  def num_channels(self) -> int:
    return self.source(self.config.data.train_split).num_channels

  @property
  def length(self) -> int:
    return self.source(self.config.data.train_split).length

  def preprocess(self, train: bool):
    centre = train and self.source(self.config.data.train_split).padded_at_ends
    if centre:
      return lambda example, rng: dict(example, series=timeseries.centre_series(example["series"]))
    return lambda example, rng: example

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs | dict(input_dims=self.num_channels))

  def forward_flops(self, model) -> float:
    """Two contexts encoded per series per step, each at the training length (the crops are masks)."""
    return 2 * ts2vec_model.forward_flops(model, seq_len=min(self.length, int(self.cfg.max_train_length)))

  # ------------------------------------------------------------------ train and evaluate
  def _loss(self, model, series, key, train: bool, rngs=None):
    window = min(series.shape[1], int(self.cfg.max_train_length))
    crop_key, window_key = jax.random.split(key)
    if window < series.shape[1]:
      start = jax.random.randint(window_key, (), 0, series.shape[1] - window + 1)
      series = jax.lax.dynamic_slice_in_dim(series, start, window, axis=1)
    valid1, valid2, start, overlap = two_crops(crop_key, series.shape[0], window, int(self.cfg.temporal_unit))
    z1 = aligned(model(series, valid=valid1, train=train, rngs=rngs), start)
    z2 = aligned(model(series, valid=valid2, train=train, rngs=rngs), start)
    return ts_contrastive.hierarchical_contrastive_loss(z1, z2, overlap, alpha=float(self.cfg.alpha),
                                                        temporal_unit=int(self.cfg.temporal_unit))

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      crop_key, mask_key, dropout_key = jax.random.split(rng, 3)
      loss = self._loss(model, batch["series"], crop_key, True, nnx.Rngs(mask=mask_key, dropout=dropout_key))
      return loss, ({}, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      valid = batch["mask"].astype(jnp.float32)
      # the batch's series that are padding repeat real ones: their loss is the batch's, weighted as one row each
      loss = self._loss(model, batch["series"], jax.random.key(EVAL_CROP_SEED), False)
      return {"loss": loss * valid.sum(), "count": valid.sum()}
    return eval_fn

  # ------------------------------------------------------------------ representations and protocols
  def encode(self, trainer, params, model_state, source) -> np.ndarray:
    """(N, output_dims): each series encoded whole and max-pooled over time."""
    if self._encode_jit is None:
      graphdef = trainer.graphdef

      def apply(params, model_state, series):
        return merge_model(graphdef, params, model_state)(series).max(axis=1)
      self._encode_jit = jax.jit(apply, out_shardings=sharding.replicated(trainer.mesh))
    size, out = int(self.cfg.eval_batch), []
    for begin in range(0, len(source), size):
      rows = np.stack([source[i]["series"] for i in range(begin, min(begin + size, len(source)))])
      n = len(rows)
      rows = np.concatenate([rows, np.repeat(rows[:1], size - n, axis=0)])
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        out.append(np.asarray(self._encode_jit(params, model_state, rows))[:n])
    return np.concatenate(out)

  def scores(self, trainer, params, model_state, source, *, linear: bool = True) -> dict:
    train = trainer.train_source
    labels = lambda src: np.asarray([src[i]["label"] for i in range(len(src))])  # noqa: E731
    train_x, test_x = self.encode(trainer, params, model_state, train), self.encode(trainer, params, model_state,
                                                                                    source)
    out = {"svm_acc": svm.svm_accuracy(train_x, labels(train), test_x, labels(source))}
    if linear:
      out["linear_acc"] = linear_probe.fit_and_evaluate(
          train_x, labels(train), test_x, labels(source), num_classes=train.num_classes)["linear_probe_top1"]
    return out

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    if not self.cfg.probe:
      return {}
    extra = trainer.state.extra
    params = extra.get("ema_params", trainer.state.params)
    out = {f"repr/{k}": v for k, v in self.scores(trainer, params, trainer.state.model_state, source).items()}
    if self._random_scores is None:  # the baselines: the untrained encoder, and the raw series
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        model = self.build_model(nnx.Rngs(params=self.config.seed))
      random = self.scores(trainer, nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                           nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))), source, linear=False)
      train = trainer.train_source
      flat = lambda src: np.nan_to_num(np.stack([src[i]["series"] for i in range(len(src))])).reshape(len(src), -1)  # noqa: E731
      labels = lambda src: np.asarray([src[i]["label"] for i in range(len(src))])  # noqa: E731
      self._random_scores = {"baseline/svm_random_acc": random["svm_acc"],
                             "baseline/svm_raw_acc": svm.svm_accuracy(flat(train), labels(train), flat(source),
                                                                      labels(source))}
    return out | self._random_scores
