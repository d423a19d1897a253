"""Self-supervised time-series representations (`config.task = "ts_representation"`), with the papers'
evaluation protocols.

Data: a UCR/UEA classification set (data/timeseries.py ClassificationSource, `data.name =
"ucr_uea:<name>"`), or the generated ECG-like set with patient and trial ids (data/ecg_like.py, "ecg_like"):
series (T, C) with NaN where missing, each channel standardised with the train split's statistics. Labels are
used only by the evaluation.

`ts_repr.method`:
  "ts2vec"  TS2Vec (Yue et al., 2022): each step draws two overlapping crops of the batch's series, as the
            official code does: an overlap length l ~ U{2^(temporal_unit+1), …, T}, its position, the two
            contexts' outer ends around it (one shared draw for the batch) and one offset per series; the
            encoder (models/ts2vec.py, timestamp masking on) encodes each context, and the hierarchical
            contrastive loss (objectives/ts_contrastive.py) compares the two on the overlap. The crops are
            taken at the series' full length with `valid` masks, which gives the outputs of the cropped
            series exactly (models/ts2vec.py), so every step has one shape.
  "finetune"  the semi-supervised protocol's fine-tuning: the encoder (`init_from` a TS2Vec run) with a linear
            head on its max-pooled output (models/ts2vec.py TS2VecClassifier), trained with cross-entropy on
            the labelled fraction of the train split only.
  "hybrid"  the semi-supervised hybrid loss (SLOTS, Cai et al., 2023; the notes' J5), end to end from scratch:
            two augmented views of every series of the batch (jitter, then per-channel scaling), NT-Xent over
            all of them (the unlabelled contrast), SupCon over the labelled ones (objectives/contrastive.py),
            and cross-entropy of the labelled ones' head logits (both views), weighted by `hybrid_weights`.
  "tfc"     TF-C (Zhang et al., 2022): models/tfc.py's time and frequency encoders on each series and on one
            view of it (objectives/tfc.py: a time augmentation from the bank, the spectrum perturbed), NT-Xent
            within each domain and the time-frequency consistency triplet loss; the representation is
            [z_time, z_freq] (no pooling over time).
  "comet"   COMET (Wang et al., 2023): models/comet.py's encoder (TS2Vec's) runs twice on the batch for each level
            with a nonzero `comet_factors` weight (patient, trial, sample, observation; masks `comet_masks`),
            and objectives/comet.py's hierarchical loss compares the passes; the patient and trial levels
            need the ids of data/ecg_like.py's set (`data.name = "ecg_like"`), UCR/UEA sets have none.
  "timesurl"  TimesURL (Liu & Chen, 2024; the notes' J4): TS2Vec's crops with the second context's series
            frequency-mixed, DualCon (the hierarchical loss with instance and temporal Universums) and the masked
            reconstruction of both contexts through models/timesurl.py's head (`_timesurl_loss`,
            objectives/timesurl.py; settings in `ts_repr.timesurl`, configs/timesurl/ucr.py).
  `ts_repr.label_fraction` < 1 keeps the labels of that stratified fraction of the train split (at least one
  series a class; a fixed seed, so runs compare on the same labels); the protocols below fit on those only.
  Series longer than `ts_repr.max_train_length` are trained on a random window of that length per batch.
  When the train split's series are NaN-padded at either end (unequal lengths), the training series are
  centred in the padded length first (data/timeseries.centre_series), as the official code; evaluation
  encodes them as they are.

Evaluation (after each `eval_every` and at the end): the evaluated split's loss with crops from a fixed key,
then every series of the train and evaluated splits is encoded whole (no masking, the weight average of
`config.weight_average` when the config keeps one: TS2Vec evaluates the uniform average of its iterates)
and max-pooled over time into one vector, and (where the model has a head, after the loss: accuracy, its
test accuracy)
  repr/svm_acc      TS2Vec's protocol: an RBF-SVM, C by cross-validation (evaluators/svm.py);
  repr/linear_acc   a linear probe (evaluators/linear_probe.py);
  baseline/svm_raw_acc     the same SVM on the raw series (NaN as 0), flattened;
  baseline/svm_random_acc  the same SVM on the representations of the untrained encoder (same init seed).

Config (`config.ts_repr`): method, temporal_unit, alpha, max_train_length, eval_batch, probe, label_fraction,
label_seed, jitter, scaling, temperature, hybrid_weights (NT-Xent, SupCon, CE); TF-C's max_segments, freq_ratio,
freq_alpha, margin, tfc_lambda; COMET's comet_factors, comet_masks, comet_temperature.
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
from papers_jax.data import ecg_like, timeseries
from papers_jax.errors import ConfigError
from papers_jax.evaluators import linear_probe, svm
from papers_jax.models import tfc as tfc_model
from papers_jax.models import timesurl as timesurl_model
from papers_jax.models import ts2vec as ts2vec_model
from papers_jax.objectives import comet as comet_objective
from papers_jax.objectives import contrastive, timesurl, ts_contrastive
from papers_jax.objectives import tfc as tfc_objective

METHODS = ("ts2vec", "finetune", "hybrid", "tfc", "comet", "timesurl")
CLASSIFIER_METHODS = ("finetune", "hybrid")
EVAL_CROP_SEED = 0

RANGES = (
    ("temporal_unit", "[0, 30]"),
    ("alpha", "[0, 1]"),
    ("max_train_length", "[2, 10000000]"),
    ("eval_batch", "[1, 1048576]"),
    ("label_fraction", "(0, 1]"),
    ("jitter", "[0, 100]"),
    ("scaling", "[0, 100]"),
    ("temperature", "(0, 100]"),
    ("hybrid_weights", "[0, 1000]"),
    ("max_segments", "[1, 1000]"),
    ("freq_ratio", "[0, 1]"),
    ("freq_alpha", "[0, 100]"),
    ("margin", "[0, 100]"),
    ("tfc_lambda", "[0, 1]"),
    ("comet_factors", "[0, 1000]"),
    ("comet_temperature", "(0, 100]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.ts_repr`, the fields this task reads (TS2Vec's defaults)."""
  return ml_collections.ConfigDict(dict(
      method="ts2vec", temporal_unit=0, alpha=0.5, max_train_length=3000, eval_batch=64, probe=True,
      label_fraction=1.0, label_seed=0, jitter=0.03, scaling=0.1, temperature=0.2,
      hybrid_weights=(1.0, 1.0, 1.0),
      max_segments=5, freq_ratio=0.1, freq_alpha=0.1, margin=1.0, tfc_lambda=0.2,
      comet_factors=(0.25, 0.25, 0.25, 0.25), comet_masks=("all_true", "all_true", "continuous", "continuous"),
      comet_temperature=0.1) | overrides)


def labelled_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
  """Sorted indices of a stratified `fraction` of `labels`: ceil(fraction · n_c), at least 1, of each class."""
  rng = np.random.default_rng(seed)
  keep = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    keep.extend(rng.permutation(members)[:max(1, int(np.ceil(fraction * len(members))))])
  return np.sort(np.asarray(keep, np.int64))


class Labelled:
  """`source` with "labelled" (bool) on each example: whether its label may be used; `only` keeps just those."""

  def __init__(self, source, indices, only: bool = False):
    self.source, self.num_classes = source, source.num_classes
    self.indices = np.asarray(indices) if only else np.arange(len(source))
    self.flags = np.isin(np.arange(len(source)), indices)
    self.num_channels, self.length, self.padded_at_ends = source.num_channels, source.length, source.padded_at_ends

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i) -> dict:
    j = int(self.indices[i])
    return dict(self.source[j], labelled=self.flags[j])


def augment(key, series, jitter: float, scaling: float):
  """A time-domain view: Gaussian jitter (σ = `jitter`), then each channel scaled by N(1, `scaling`²)."""
  k1, k2 = jax.random.split(key)
  noisy = series + jitter * jax.random.normal(k1, series.shape, series.dtype)
  return noisy * (1.0 + scaling * jax.random.normal(k2, (series.shape[0], 1, series.shape[2]), series.dtype))


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
    if self.cfg.method == "comet" and config.data.name != "ecg_like" and any(self.cfg.comet_factors[:2]):
      raise ConfigError(f"data.name={config.data.name!r} has no patient or trial ids: set the first two "
                        f"ts_repr.comet_factors (patient, trial) to 0, or use data.name='ecg_like'")
    self._encode_jit = None
    self._random_scores = None

  # ------------------------------------------------------------------ data and model
  @functools.lru_cache(maxsize=4)
  def source(self, split: str):
    if self.config.data.name == "ecg_like":
      source = ecg_like.ECGLikeSource(self.config.data, split)
    else:
      source = timeseries.ClassificationSource(self.config.data, split)
    if split != self.config.data.train_split:
      return source
    labelled = labelled_indices(source.labels, float(self.cfg.label_fraction), int(self.cfg.label_seed))
    return Labelled(source, labelled, only=self.cfg.method == "finetune")

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
    extra = dict(input_dims=self.num_channels)
    if self.cfg.method in CLASSIFIER_METHODS:
      if name != "ts2vec_classifier":
        raise ConfigError(f"ts_repr.method={self.cfg.method!r} trains a classifier head: model.name must be "
                          f"'ts2vec_classifier', not {name!r}")
      extra["num_classes"] = self.source(self.config.data.train_split).num_classes
    if self.cfg.method == "tfc":
      extra["seq_len"] = self.length
    if (self.cfg.method == "timesurl") != (name == "timesurl"):
      raise ConfigError(f"ts_repr.method={self.cfg.method!r} with model.name={name!r}: TimesURL's method and "
                        "network go together (configs/timesurl/ucr.py)")
    return models.create(name, rngs=rngs, **kwargs | extra)

  def forward_flops(self, model) -> float:
    """TS2Vec and the hybrid loss encode two views of each series per step (TS2Vec's crops are masks at the
    training length); fine-tuning one."""
    if self.cfg.method == "tfc":  # each series and its view, in both domains
      return 2 * tfc_model.forward_flops(model)
    if self.cfg.method == "comet":  # two passes a level
      views = 2 * sum(1 for f in self.cfg.comet_factors if f)
      return views * ts2vec_model.forward_flops(model, seq_len=self.length)
    seq_len = min(self.length, int(self.cfg.max_train_length))
    if self.cfg.method == "timesurl":  # each context encoded whole, and masked through the reconstruction head
      return 2 * (ts2vec_model.forward_flops(model, seq_len=seq_len) + timesurl_model.reconstruct_flops(
          model, seq_len=seq_len))
    views = 1 if self.cfg.method == "finetune" else 2
    return views * ts2vec_model.forward_flops(model, seq_len=min(self.length, int(self.cfg.max_train_length)))

  # ------------------------------------------------------------------ train and evaluate
  def _loss(self, model, series, key, train: bool, rngs=None):
    if self.cfg.method == "timesurl":
      return self._timesurl_loss(model, series, key, train, rngs)[0]
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

  def _timesurl_loss(self, model, series, key, train: bool, rngs=None):
    """(loss, metrics) of TimesURL (objectives/timesurl.py): the crops of `_loss`, the second context's series
    frequency-mixed first; DualCon between the two contexts' representations on their overlap, and the masked
    reconstruction of each context's overlap from the context with the masked values zeroed."""
    cfg = self.cfg.timesurl
    window = min(series.shape[1], int(self.cfg.max_train_length))
    crop_key, window_key, mix_key, perm_key, mask_key = jax.random.split(key, 5)
    if window < series.shape[1]:
      start = jax.random.randint(window_key, (), 0, series.shape[1] - window + 1)
      series = jax.lax.dynamic_slice_in_dim(series, start, window, axis=1)
    observed = ~jnp.isnan(series)
    mixed = timesurl.frequency_mix(mix_key, jnp.where(observed, series, 0.0), float(cfg.mix_rate))
    views = (series, jnp.where(observed, mixed, jnp.nan))
    valid1, valid2, start, overlap = two_crops(crop_key, series.shape[0], window, int(self.cfg.temporal_unit))
    t = jnp.arange(window)[None]
    on_overlap = (t >= start[:, None]) & (t < (start + overlap)[:, None])
    zs, recon = [], 0.0
    for x, valid, k in zip(views, (valid1, valid2), jax.random.split(mask_key)):
      zs.append(aligned(model(x, valid=valid, train=train, rngs=rngs), start))
      masked = timesurl.segment_mask(k, *x.shape, int(cfg.recon_segments), float(cfg.recon_ratio))
      masked = masked & observed & valid[..., None]
      rebuilt = model.reconstruct(jnp.where(masked, 0.0, x), valid=valid, train=train, rngs=rngs)
      recon = recon + timesurl.reconstruction_loss(x, rebuilt, masked & on_overlap[..., None]) / 2
    dualcon = timesurl.dual_hierarchical_loss(*zs, overlap, perm_key, alpha=float(self.cfg.alpha),
                                              temporal_unit=int(self.cfg.temporal_unit),
                                              lam=float(cfg.universum_lambda), temperature=float(cfg.temperature))
    loss = float(cfg.contrast_weight) * dualcon + float(cfg.recon_weight) * recon
    return loss, {"dualcon": dualcon, "reconstruction": recon}

  def _hybrid_loss(self, model, batch, key, train: bool, rngs=None):
    """(loss, metrics): NT-Xent + SupCon + CE, weighted by `hybrid_weights` (module docstring)."""
    series, labels = batch["series"], batch["label"]
    labelled = batch.get("labelled", jnp.ones_like(labels, bool))
    k1, k2 = jax.random.split(key)
    jitter, scaling, tau = float(self.cfg.jitter), float(self.cfg.scaling), float(self.cfg.temperature)
    h1 = model.features(augment(k1, series, jitter, scaling), train=train, rngs=rngs)
    h2 = model.features(augment(k2, series, jitter, scaling), train=train, rngs=rngs)
    z1, z2 = model.projector(h1), model.projector(h2)
    unsupervised = contrastive.nt_xent(z1, z2, tau).mean()
    supervised = contrastive.supervised_contrastive(jnp.concatenate([z1, z2]), jnp.concatenate([labels, labels]),
                                                    jnp.concatenate([labelled, labelled]), tau)
    ce = self._labelled_ce(model.head(h1), labels, labelled) + self._labelled_ce(model.head(h2), labels, labelled)
    w = tuple(float(x) for x in self.cfg.hybrid_weights)
    loss = w[0] * unsupervised + w[1] * supervised + w[2] * ce / 2
    return loss, {"nt_xent": unsupervised, "supcon": supervised, "ce": ce / 2}

  def _tfc_loss(self, model, series, key, train: bool, rngs=None):
    """(loss, metrics): TF-C's loss on the series and one view of each (objectives/tfc.py)."""
    k_time, k_freq = jax.random.split(key)
    cfg = self.cfg
    series = jnp.nan_to_num(series)
    freq = tfc_model.spectrum(series)
    view = tfc_objective.time_augment(k_time, series, jitter_sigma=float(cfg.jitter), scaling_sigma=float(cfg.scaling),
                                      max_segments=int(cfg.max_segments))
    view_freq = tfc_objective.frequency_augment(k_freq, freq, ratio=float(cfg.freq_ratio), alpha=float(cfg.freq_alpha))
    return tfc_objective.tfc_loss(model(series, freq, train=train, rngs=rngs),
                                  model(view, view_freq, train=train, rngs=rngs), temperature=float(cfg.temperature),
                                  margin=float(cfg.margin), lam=float(cfg.tfc_lambda))

  def _comet_loss(self, model, batch, train: bool, rngs=None):
    """(loss, metrics): COMET's four levels (objectives/comet.py), two passes each. The passes of the levels that
    share a mask mode run as one call on the batch repeated (masks and dropout are drawn per row, so the
    passes are independent as separate calls would be): one compiled encoder per mask mode, not per pass."""
    series, pairs = batch["series"], {}
    active = [(level, mask) for level, factor, mask in zip(comet_objective.LEVELS, self.cfg.comet_factors,
                                                           self.cfg.comet_masks) if factor]
    for mode in sorted({mask for _, mask in active}):
      levels = [level for level, mask in active if mask == mode]
      out = model(jnp.tile(series, (2 * len(levels), 1, 1)), mask=mode, train=train, rngs=rngs)
      passes = jnp.split(out, 2 * len(levels))
      pairs |= {level: (passes[2 * i], passes[2 * i + 1]) for i, level in enumerate(levels)}
    return comet_objective.comet_loss(pairs, batch.get("patient"), batch.get("trial"),
                                      tuple(float(f) for f in self.cfg.comet_factors),
                                      float(self.cfg.comet_temperature))

  @staticmethod
  def _labelled_ce(logits, labels, labelled):
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32)), labels[:, None], axis=-1)[:, 0]
    weight = labelled.astype(jnp.float32)
    return (nll * weight).sum() / jnp.maximum(weight.sum(), 1.0)

  def make_loss_fn(self, graphdef):
    method = self.cfg.method

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      crop_key, mask_key, dropout_key = jax.random.split(rng, 3)
      rngs = nnx.Rngs(mask=mask_key, dropout=dropout_key)
      if method == "ts2vec":
        loss, metrics = self._loss(model, batch["series"], crop_key, True, rngs), {}
      elif method == "hybrid":
        loss, metrics = self._hybrid_loss(model, batch, crop_key, True, rngs)
      elif method == "tfc":
        loss, metrics = self._tfc_loss(model, batch["series"], crop_key, True, rngs)
      elif method == "comet":
        loss, metrics = self._comet_loss(model, batch, True, rngs)
      elif method == "timesurl":
        loss, metrics = self._timesurl_loss(model, batch["series"], crop_key, True, rngs)
      else:  # finetune: every series of the (labelled-only) train source
        loss = self._labelled_ce(model(batch["series"], train=True, rngs=rngs), batch["label"],
                                 jnp.ones_like(batch["label"], bool))
        metrics = {}
      return loss, (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    method = self.cfg.method

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      valid = batch["mask"].astype(jnp.float32)
      if method in CLASSIFIER_METHODS:  # per-series cross-entropy and accuracy of the head
        logits = model(batch["series"]).astype(jnp.float32)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["label"][:, None], axis=-1)[:, 0]
        correct = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
        return {"loss": (nll * valid).sum(), "accuracy": (correct * valid).sum(), "count": valid.sum()}
      # the batch's series that are padding repeat real ones: their loss is the batch's, weighted as one row each
      if method == "tfc":
        loss = self._tfc_loss(model, batch["series"], jax.random.key(EVAL_CROP_SEED), False)[0]
      elif method == "comet":  # in eval mode: no masks, no dropout
        loss = self._comet_loss(model, batch, False)[0]
      else:
        loss = self._loss(model, batch["series"], jax.random.key(EVAL_CROP_SEED), False)
      return {"loss": loss * valid.sum(), "count": valid.sum()}
    return eval_fn

  # ------------------------------------------------------------------ representations and protocols
  def encode(self, trainer, params, model_state, source) -> np.ndarray:
    """(N, output_dims): each series encoded whole and max-pooled over time."""
    if self._encode_jit is None:
      graphdef = trainer.graphdef

      def apply(params, model_state, series):
        model = merge_model(graphdef, params, model_state)
        if isinstance(model, ts2vec_model.TS2VecClassifier):
          return model.features(series)
        if isinstance(model, tfc_model.TFC):
          return model.represent(series)
        return model(series).max(axis=1)
      self._encode_jit = jax.jit(apply, out_shardings=sharding.replicated(trainer.mesh))
    size, out = int(self.cfg.eval_batch), []
    for begin in range(0, len(source), size):
      rows = np.stack([source[i]["series"] for i in range(begin, min(begin + size, len(source)))])
      n = len(rows)
      rows = np.concatenate([rows, np.repeat(rows[:1], size - n, axis=0)])
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        out.append(np.asarray(self._encode_jit(params, model_state, rows))[:n])
    return np.concatenate(out)

  def labelled_train(self, trainer):
    """The train split's series whose labels the protocols may use."""
    train = trainer.train_source
    return train if self.cfg.method == "finetune" else Subset(train, np.flatnonzero(train.flags))

  def scores(self, trainer, params, model_state, source, *, linear: bool = True) -> dict:
    train = self.labelled_train(trainer)
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
      train = self.labelled_train(trainer)
      flat = lambda src: np.nan_to_num(  # noqa: E731
          np.stack([src[i]["series"] for i in range(len(src))])).reshape(len(src), -1)
      labels = lambda src: np.asarray([src[i]["label"] for i in range(len(src))])  # noqa: E731
      self._random_scores = {"baseline/svm_random_acc": random["svm_acc"],
                             "baseline/svm_raw_acc": svm.svm_accuracy(flat(train), labels(train), flat(source),
                                                                      labels(source))}
    return out | self._random_scores


class Subset:
  """The rows `indices` of `source`."""

  def __init__(self, source, indices):
    self.source, self.indices, self.num_classes = source, np.asarray(indices), source.num_classes

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i) -> dict:
    return self.source[int(self.indices[i])]
