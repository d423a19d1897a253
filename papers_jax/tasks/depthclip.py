"""DepthCLIP (`config.task = "depthclip"`): a CLIP trained on image-level depth captions, read out densely.

Training is CLIP's (tasks/clip.py: the symmetric contrastive loss) on the depth scenes' captions
(data/depth_scenes.py: "the red circle is close.", "this object is far."): the words say how far each
object is, never where its pixels are, so the dense depth read out below is zero-shot as in the paper
(which uses OpenAI's CLIP, trained on web captions, unchanged).

Evaluation, after CLIP's own (retrieval over the eval scenes' captions): every eval scene's depth map by
DepthCLIP's readout (models/depthclip.py: patch features against "this object is {word}." for the seven
depth words, softmax at temperature `depthclip.temperature`, weighted sum of the bin depths, bilinear
resize), scored on the object pixels (where the depth is known):
  eval/depth_abs_rel (mean |d̂ − d| / d), eval/depth_rmse, eval/depth_delta1 (fraction with
  max(d̂/d, d/d̂) < 1.25), beside the same for a constant prediction, the mean object-pixel depth of the
  first `depthclip.baseline_scenes` training scenes (eval/const_abs_rel, eval/const_rmse, eval/const_delta1);
  eval/depth_word_top1: each object's own caption word against the seven "this object is {word}." prompts
  from its pixels' mean patch feature (chance 1/7).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from papers_jax.core import sharding
from papers_jax.core.state import merge_model
from papers_jax.data import depth_scenes
from papers_jax.data.captions import CaptionTokenizer
from papers_jax.errors import ConfigError
from papers_jax.models import depthclip as readout
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.clip import CLIPTask

RANGES = (("temperature", "(0, inf)"), ("baseline_scenes", "[1, inf)"), ("eval_scenes", "[0, inf)"),
          ("train_scenes", "[0, inf)"))
PROMPT = "this object is {}."


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.depthclip`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(temperature=0.1, baseline_scenes=1000, eval_scenes=0, train_scenes=0)
                                   | overrides)


def depth_metrics(pred, depth, mask) -> dict:
  """AbsRel, RMSE and δ < 1.25 of `pred` against `depth` over the pixels of `mask`."""
  p, d = np.asarray(pred, np.float64)[mask], np.asarray(depth, np.float64)[mask]
  return {"abs_rel": float(np.mean(np.abs(p - d) / d)), "rmse": float(np.sqrt(np.mean((p - d) ** 2))),
          "delta1": float(np.mean(np.maximum(p / d, d / p) < 1.25))}


class DepthCLIPTask(CLIPTask):
  """CLIP training on the depth scenes' captions and DepthCLIP's zero-shot dense depth (module docstring)."""

  def __init__(self, config):
    if config.data.name != "depth_scenes":
      raise ConfigError(f"task depthclip reads data.name='depth_scenes', got {config.data.name!r}")
    super().__init__(config)
    self.dc = config.depthclip

  def source(self, split: str):
    if split not in self._sources:
      limit = self.dc.train_scenes if split == self.config.data.train_split else self.dc.eval_scenes
      self._sources[split] = depth_scenes.DepthScenesSource(split, limit=int(limit))
    return self._sources[split]

  @property
  def image_text(self) -> bool:
    return True

  @functools.cached_property
  def tokenizer(self) -> CaptionTokenizer:
    tok = CaptionTokenizer.train(depth_scenes.training_texts(), self.context_length)
    vocab = self.config.model.get("vocab_size")
    if vocab is not None and tok.vocab_size > vocab:
      raise ConfigError(f"the tokenizer has {tok.vocab_size} tokens but model.vocab_size is {vocab}")
    return tok

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    out = super().after_eval(trainer, step, writer, source, metrics)
    graphdef, state, mean, std = trainer.graphdef, trainer.state, self.mean, self.std
    temperature = float(self.dc.temperature)

    @jax.jit
    def predict(params, model_state, images, tokens):
      clip = merge_model(graphdef, params, model_state)
      text = clip.encode_text(tokens, train=False)
      x = normalize_images(images, mean, std)
      feats = readout.patch_features(clip, x)
      depth = readout.dense_depth(clip, x, text, depth_scenes.BINS, temperature)
      return depth, jax.image.resize(feats, (x.shape[0],) + x.shape[1:3] + (feats.shape[-1],), "nearest"), text

    tokens = jnp.asarray(self.tokenizer([PROMPT.format(w) for w in depth_scenes.DEPTH_WORDS]))
    batch = int(self.clip.feature_batch)
    preds, depths, word_hits = [], [], []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for start in range(0, len(source), batch):
        examples = [source[i] for i in range(start, min(start + batch, len(source)))]
        images = np.stack([e["image"] for e in examples])
        pad = batch - len(examples)
        if pad:
          images = np.concatenate([images, np.repeat(images[:1], pad, axis=0)])
        depth, feats, text = (np.asarray(a) for a in predict(state.params, state.model_state, images, tokens))
        for k, e in enumerate(examples):
          preds.append(depth[k])
          depths.append(e["depth"])
          for obj in source.layouts[start + k]:  # the object's mean pixel feature against the 7 prompts
            pixels = feats[k][e["depth"] == np.float32(obj["z"])]
            if len(pixels):
              sims = readout.l2_normalize(pixels.mean(0)) @ readout.l2_normalize(text).T
              word_hits.append(depth_scenes.DEPTH_WORDS[int(np.argmax(sims))] == depth_scenes.depth_word(obj["z"]))
    preds, depths = np.stack(preds), np.stack(depths)
    mask = depths > 0
    out |= {f"depth_{k}": v for k, v in depth_metrics(preds, depths, mask).items()}
    const = self.baseline_depth()
    out |= {f"const_{k}": v for k, v in depth_metrics(np.full_like(depths, const), depths, mask).items()}
    out["const_depth"] = const
    out["depth_word_top1"] = float(np.mean(word_hits)) if word_hits else 0.0
    return out

  @functools.cache  # noqa: B019  (one task per run)
  def baseline_depth(self) -> float:
    """The mean object-pixel depth of the first training scenes (the constant baseline)."""
    train = depth_scenes.DepthScenesSource(self.config.data.train_split, limit=int(self.dc.baseline_scenes))
    depths = np.concatenate([d[d > 0] for d in (train[i]["depth"] for i in range(len(train)))])
    return float(depths.mean())
