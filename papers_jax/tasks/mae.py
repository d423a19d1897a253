"""MAE pre-training (`config.task = "mae"`): masked-patch reconstruction, evaluation, pictures.

Train step: the images are normalised with the dataset mean/std; each example gets its own random
mask from the step's key (models/mae.py); the loss is the MSE over the removed patches, against
per-patch normalised pixels when `config.mae.norm_pix_loss` (objectives/reconstruction.py).
Evaluation reports the same loss on the eval split, with masks drawn from a fixed key (the same
masks at every evaluation, so the numbers are comparable across steps).

After each evaluation (`after_eval`):
  - a PNG grid original / masked / reconstruction of the first `config.mae.vis_examples` eval
    images goes to <workdir>/reconstructions/step_<step>.png and to TensorBoard; with
    norm_pix_loss it shows the honest view by default (evaluators/reconstruction.py);
  - with `config.mae.knn` a weighted k-NN classifier on the encoder's features of the whole
    (unmasked) images is evaluated, train split → eval split: eval/knn_top1_k<k>; with
    `config.mae.linear_probe` a softmax regression on the same features (knn_max_train caps the
    train split for both): eval/linear_top1.

Config (`config.mae`): norm_pix_loss, crop_scale (RandomResizedCrop area range when
`data.augment = "mae"`), vis_examples, vis_mode, knn, knn_k, knn_temperature, knn_max_train, linear_probe,
feature_pool ("token" or "avg"). The mask ratio is the model's (`config.model.mask_ratio`).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import pipeline, preprocess
from papers_jax.evaluators import features as features_lib
from papers_jax.evaluators import knn as knn_lib
from papers_jax.evaluators import linear_probe as linear_probe_lib
from papers_jax.evaluators import reconstruction as vis
from papers_jax.objectives import reconstruction as objective
from papers_jax.tasks.classification import normalize_images

EVAL_MASK_SEED = 0

# Params a ViT fine-tuned or probed from an MAE checkpoint does not take from it (`config.init_skip`):
# the decoder and mask token (MAE only), the head and fc_norm (new), the learned pos_embed (it starts
# at the fixed sin-cos table with pos_embed_init="sincos"). With global pooling add "^norm/".
ENCODER_INIT_SKIP = (r"^head/", r"^fc_norm/", r"^pos_embed$", r"^decoder_", r"^mask_token$")


# Allowed values of config.mae's numbers (core/config.py check_ranges).
RANGES = (
    ("crop_scale", "(0, 1]"),
    ("vis_examples", "[0, 1024]"),
    ("knn_k", "[1, 100000]"),
    ("knn_temperature", "(0, 100]"),
    ("knn_max_train", "[0, inf)"),               # 0: all
    ("feature_batch", "[1, 1048576]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.mae`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      norm_pix_loss=True, crop_scale=(0.2, 1.0), vis_examples=8, vis_mode="visible", knn=False,
      knn_k=(20, 200), knn_temperature=0.07, knn_max_train=0, feature_pool="token", feature_batch=256,
      linear_probe=False)
      | overrides)


def mae_preprocess(data_config, *, train: bool, crop_scale=(0.2, 1.0)):
  """`data.augment = "mae"`: RandomResizedCrop(scale=crop_scale) + horizontal flip for training
  (MAE's only augmentation); evaluation resizes the shorter side and centre-crops. Any other
  `data.augment` is the standard pipeline's."""
  d = data_config
  if d.augment != "mae":
    return pipeline.image_preprocess(d.augment, d.image_size, train=train, max_shift=d.max_shift,
                                     crop_pct=d.crop_pct, affine_degrees=d.affine_degrees,
                                     affine_scale=tuple(d.affine_scale), affine_translate=d.affine_translate,
                                     randaugment=d.randaugment, random_erasing=d.random_erasing, mean=tuple(d.mean),
                                     std=tuple(d.std))

  def fn(example, rng):
    image = example["image"]
    if train:
      image = preprocess.random_flip(preprocess.inception_crop(image, rng, d.image_size, scale=tuple(crop_scale)), rng)
    else:
      image = preprocess.resize_shorter_then_center_crop(image, d.image_size, d.crop_pct)
    return {"image": image, "label": np.asarray(example["label"], np.int32)}

  return fn


class MAETask:
  """Model + loss + evaluation for `config.task = "mae"`."""

  def __init__(self, config):
    self.config = config
    self.mae = config.mae
    self.mean = tuple(config.data.mean)
    self.std = tuple(config.data.std)
    self._jitted = {}

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def preprocess(self, train: bool):
    return mae_preprocess(self.config.data, train=train, crop_scale=tuple(self.mae.crop_scale))

  def _losses(self, model, batch, mask_key, dropout_key=None):
    images = normalize_images(batch["image"], self.mean, self.std)
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    pred, mask = model(images, rng=mask_key, train=dropout_key is not None, rngs=rngs)
    return objective.mae_loss(pred, images, mask, model.patch_size, norm_pix_loss=bool(self.mae.norm_pix_loss))

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      mask_key, dropout_key = jax.random.split(rng)
      losses = self._losses(model, batch, mask_key, dropout_key)
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return losses.mean(), ({}, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses = self._losses(model, batch, jax.random.key(EVAL_MASK_SEED))
      valid = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * valid).sum(), "count": valid.sum()}
    return eval_fn

  # ------------------------------------------------------------------ after each evaluation
  def _fn(self, trainer, name):
    """Jitted helpers over (params, model_state, uint8 images), built once per trainer."""
    if name not in self._jitted:
      graphdef, mean, std, pool = trainer.graphdef, self.mean, self.std, self.mae.feature_pool

      def reconstruct(params, model_state, images, key):
        model = merge_model(graphdef, params, model_state)
        return model(normalize_images(images, mean, std), rng=key, train=False)

      def encode(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        return features_lib.named(model, normalize_images(images, mean, std), "pre_logits", pool=pool)

      # Replicated outputs: every process runs these (the params are global arrays) and may read them.
      self._jitted[name] = jax.jit({"reconstruct": reconstruct, "encode": encode}[name],
                                   out_shardings=sharding.replicated(trainer.mesh))
    return self._jitted[name]

  def after_eval(self, trainer, step: int, writer) -> dict:
    out = {}
    source = trainer.eval_source if trainer.eval_source is not None else trainer.train_source
    n = min(int(self.mae.vis_examples), len(source))
    if n:
      fn = self.preprocess(train=False)
      images = np.stack([fn(dict(source[i]), None)["image"] for i in range(n)])
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        pred, mask = self._fn(trainer, "reconstruct")(trainer.state.params, trainer.state.model_state, images,
                                                      jax.random.key(EVAL_MASK_SEED))
      model_cfg = models.model_config(self.config.model.name) | dict(self.config.model)
      ratio = model_cfg.get("mask_ratio", 0.75)
      picture, _ = vis.render(images, np.asarray(pred), np.asarray(mask), patch_size=model_cfg["patch_size"],
                              mean=self.mean, std=self.std, norm_pix_loss=bool(self.mae.norm_pix_loss),
                              mode=self.mae.vis_mode, title=f"MAE step {step}, mask ratio {ratio}: ")
      if trainer.is_main:
        vis.save_png(picture, os.path.join(trainer.workdir, "reconstructions", f"step_{step:06d}.png"))
        writer.write_image(step, "mae/reconstructions", picture)
    if (self.mae.knn or self.mae.get("linear_probe")) and trainer.eval_source is not None:
      encode = self._fn(trainer, "encode")
      apply = lambda images: encode(trainer.state.params, trainer.state.model_state, images)  # noqa: E731
      fn = self.preprocess(train=False)
      batch = int(self.mae.get("feature_batch", 256))
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        train_x, train_y = features_lib.extract(apply, trainer.train_source, fn, batch_size=batch,
                                                max_examples=self.mae.knn_max_train or None)
        test_x, test_y = features_lib.extract(apply, trainer.eval_source, fn, batch_size=batch)
      if self.mae.knn:
        scores = knn_lib.knn_accuracy(train_x, train_y, test_x, test_y, ks=tuple(self.mae.knn_k),
                                      temperature=float(self.mae.knn_temperature))
        out |= {f"eval/{k}": v for k, v in scores.items()}
      if self.mae.get("linear_probe"):  # softmax regression on the same frozen features
        probe = linear_probe_lib.fit_and_evaluate(train_x, train_y, test_x, test_y)
        out["eval/linear_top1"] = probe["linear_probe_top1"]
    return out
