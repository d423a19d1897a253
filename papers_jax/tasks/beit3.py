"""BEiT-3 masked data modelling and NLVR2-style fine-tuning (`config.task = "beit3"`), Wang et al. 2023.

`config.beit3.objective` selects the recipe:
  "pretrain"  masked data modelling (§2.2) on the generated scenes (data/vqa_scenes.py), three passes of one
              Multiway Transformer per step: (1) the image alone with 40% of its patches masked block-wise
              (objectives/beit3.py `block_mask`), predicting their visual tokens (MIM); (2) a caption alone
              with 15% of its tokens masked (MLM); (3) the image-text pair with 50% of the text masked and
              40% of the patches (another block mask), predicting both, through the vision-language experts
              of the top layers. Loss = the sum of the four cross-entropies (each averaged over its masked
              positions). Eval: each term's loss and accuracy on the test scenes, with fixed masks.
  "nlvr"      NLVR2-style pair reasoning (data/nlvr_scenes.py): each image of a pair encoded with the
              statement, the image and text [CLS] outputs of both passes into the NLVR head, 2-way cross-entropy
              (models/beit3.py). Eval: eval/accuracy and eval/accuracy_<template>. Start it from a
              pre-training run with `init_from=<run>/checkpoints/<step>/state`, `init_skip=NLVR_INIT_SKIP`.
  "captioning" captioning as BEiT-3 fine-tunes it (§3.2; the released BEiT3ForCaptioning): the image and a
              caption through the prefix-LM mask (models/beit3.py `prefix_lm_mask`: the image sees itself, a text
              token the image, the tokens before it and itself), `caption_mask_prob` of the caption's tokens
              ([SEP] included, [CLS] never) replaced by [MASK] and predicted by the MLM head (masked-token
              cross-entropy, as pre-training's). Decoding appends a [MASK] after the tokens so far and takes
              the MLM head's prediction there, one token per step, by beam search (beam_search.py; `beam_size`,
              `max_caption_len` / `min_caption_len` counted from [CLS], the prompt included, `length_alpha`).
              Eval: eval/loss and eval/accuracy of the masked tokens of each test scene's first caption (fixed
              masks); then, with `caption_images` = N > 0, captions of the first N test scenes after
              `caption_prompt`, scored against all of each scene's captions (eval/caption_bleu4, sacrebleu;
              eval/caption_cider, CIDEr-D), beside the nearest-training-image and most-frequent-caption baselines
              of tasks/blip.py (eval/baseline_*). Start it from a pre-training run with init_from and
              `init_skip=CAPTION_INIT_SKIP` (the MLM head is kept).
Visual tokens: the codes of a VQ-VAE (`beit3.visual_tokenizer`: a params checkpoint of
configs/beit3/tokenizer.py, built with `beit3.visual_tokenizer_model`) on each image downsampled by
`beit3.tokenizer_factor` and normalised as the tokenizer was trained (`visual_tokenizer_mean` / `_std`, 0.5),
one code per patch; computed once per split when its source is first read.
"random" uses an untrained VQ-VAE (seed 0), for smoke runs and tests only. Text: "[CLS] words [SEP]"
padded to `beit3.max_text_len`, by a WordPiece tokenizer trained on the scenes' training captions and
questions and the NLVR training statements (deterministic, so both runs train the same one; saved as
<workdir>/tokenizer.json), or `beit3.tokenizer` (a tokenizer.json).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import beam_search, models
from papers_jax.core import sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import mlm, nlvr_scenes, tokenizers, vqa_scenes
from papers_jax.errors import ConfigError
from papers_jax.evaluators import captioning
from papers_jax.models import beit3
from papers_jax.objectives import beit3 as objective
from papers_jax.tasks import blip
from papers_jax.tasks.classification import normalize_images

OBJECTIVES = ("pretrain", "nlvr", "captioning")
# init_skip of an NLVR run that starts from a pre-training checkpoint: its heads are new, the MLM/MIM heads go.
NLVR_INIT_SKIP = ("^mlm_head/", "^mim_head/", "^nlvr_head/")
# init_skip of a captioning run: the MLM head stays (it predicts the caption's masked tokens), the MIM head goes.
CAPTION_INIT_SKIP = ("^mim_head/",)

RANGES = (
    ("max_text_len", "[4, 4096]"),
    ("text_mask_prob", "(0, 1]"),
    ("pair_text_mask_prob", "(0, 1]"),
    ("image_mask_ratio", "(0, 1)"),
    ("block_min_patches", "[1, 4096]"),
    ("tokenizer_factor", "[1, 64]"),
    ("caption_mask_prob", "(0, 1]"),
    ("beam_size", "[1, 64]"),
    ("max_caption_len", "[2, 4096]"),
    ("min_caption_len", "[0, 4096]"),
    ("caption_images", "[0, 100000]"),
    ("generate_batch", "[1, 100000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.beit3`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      objective="pretrain", tokenizer="", vocab_size=320, max_text_len=24, text_mask_prob=0.15,
      pair_text_mask_prob=0.5, image_mask_ratio=0.4, block_min_patches=2, visual_tokenizer="",
      visual_tokenizer_model=dict(name="vqvae", in_chans=3, hidden=64, res_hidden=32, num_codes=64, code_dim=16,
                                  ema_decay=0.99, restart_threshold=0.01),
      tokenizer_factor=4, visual_tokenizer_mean=(0.5, 0.5, 0.5), visual_tokenizer_std=(0.5, 0.5, 0.5),
      caption_mask_prob=0.6, caption_prompt="", caption_images=0, beam_size=3,
      max_caption_len=24, min_caption_len=5, length_alpha=1.0, generate_batch=100) | overrides)


@functools.cache
def _scene_wordpiece(vocab_size: int) -> tokenizers.Tokenizer:
  """The WordPiece tokenizer of the scenes' training captions and questions and the NLVR training statements."""
  texts = vqa_scenes.training_texts() + nlvr_scenes.training_statements()
  return tokenizers.train_wordpiece(texts, vocab_size, min_frequency=1)


class BEiT3Task:
  """Model + objectives + evaluation for `config.task = "beit3"`."""

  def __init__(self, config):
    self.config = config
    self.cfg = config.beit3
    if self.cfg.objective not in OBJECTIVES:
      raise ConfigError(f"beit3.objective must be one of {OBJECTIVES}, got {self.cfg.objective!r}")
    want = "nlvr_scenes" if self.cfg.objective == "nlvr" else "vqa_scenes"
    if config.data.name != want:
      raise ConfigError(f"beit3.objective={self.cfg.objective!r} reads data.name={want!r}, got {config.data.name!r}")
    if self.pretrain and not self.cfg.visual_tokenizer:
      raise ConfigError("beit3.visual_tokenizer is empty: set it to the params checkpoint of a "
                        "configs/beit3/tokenizer.py run (<run>/checkpoints/<step>/state), or 'random' for a smoke run")
    if self.pretrain and self.cfg.visual_tokenizer != "random" and not os.path.isdir(self.cfg.visual_tokenizer):
      raise ConfigError(f"beit3.visual_tokenizer={self.cfg.visual_tokenizer!r} is not a checkpoint directory; train "
                        "one with configs/beit3/tokenizer.py and pass <run>/checkpoints/<step>/state")
    if self.captioning and int(self.cfg.max_caption_len) > int(self.cfg.max_text_len):
      raise ConfigError(f"beit3.max_caption_len={self.cfg.max_caption_len} exceeds beit3.max_text_len="
                        f"{self.cfg.max_text_len} (the text positions a caption may use); lower it")
    self.mean, self.std, _ = image_preprocessing(config)
    self._sources, self._visual_tokens, self._jitted, self._baselines = {}, {}, {}, {}

  @property
  def pretrain(self) -> bool:
    return self.cfg.objective == "pretrain"

  @property
  def captioning(self) -> bool:
    return self.cfg.objective == "captioning"

  # ------------------------------------------------------------------ data
  def source(self, split: str):
    if split not in self._sources:
      data = self.config.data
      templates = data.get("templates", "pair")
      if split != data.train_split:  # e.g. train on "mixed", test on the five "pair" templates
        templates = data.get("eval_templates", "") or templates
      self._sources[split] = (nlvr_scenes.NLVRScenesSource(split, data.get("subjects", "all"),
                                                           data.get("held_out", "combinations"), templates)
                              if self.cfg.objective == "nlvr" else vqa_scenes.VQAScenesSource(split, "captions"))
    return self._sources[split]

  @functools.cached_property
  def tokenizer(self) -> tokenizers.Tokenizer:
    if self.cfg.tokenizer:
      return tokenizers.load(self.cfg.tokenizer)
    return _scene_wordpiece(int(self.cfg.vocab_size))

  def save_assets(self, workdir: str):
    self.tokenizer.save(os.path.join(workdir, tokenizers.FILE_NAME))

  def encode_text(self, text: str) -> tuple[np.ndarray, np.ndarray]:
    tok, t = self.tokenizer, int(self.cfg.max_text_len)
    ids = np.full((t,), tok.pad_id, np.int32)
    pieces = [tok.cls_id] + tok.encode(text)[:t - 2] + [tok.sep_id]
    ids[:len(pieces)] = pieces
    return ids, (ids != tok.pad_id).astype(np.int32)

  def visual_tokenizer(self):
    """The VQ-VAE (an nnx module) of `beit3.visual_tokenizer`."""
    kwargs = dict(self.cfg.visual_tokenizer_model)
    vq = models.create(kwargs.pop("name"), rngs=nnx.Rngs(0), **kwargs)
    path = self.cfg.visual_tokenizer
    if path != "random":
      from papers_jax.convert import init_model_state_from_checkpoint, init_params_from_checkpoint
      graphdef, params, rest = nnx.split(vq, nnx.Param, ...)
      params, _ = init_params_from_checkpoint(path, nnx.to_pure_dict(params), skip=())
      rest, _ = init_model_state_from_checkpoint(path, nnx.to_pure_dict(rest))
      vq = merge_model(graphdef, params, rest)
    return vq

  def visual_tokens(self, split: str) -> np.ndarray:
    """(scenes, patches) int32: the visual token of every patch of every scene of the split."""
    if split not in self._visual_tokens:
      source = vqa_scenes.VQAScenesSource(split)
      vq = self.visual_tokenizer()
      factor = int(self.cfg.tokenizer_factor)
      # The tokenizer's own normalisation (configs/beit3/tokenizer.py's), whatever the model's data.mean / std.
      mean, std = tuple(self.cfg.visual_tokenizer_mean), tuple(self.cfg.visual_tokenizer_std)
      encode = jax.jit(lambda images: vq.encode(normalize_images(images, mean, std)))
      out = []
      for start in range(0, len(source), 500):
        images = np.stack([nlvr_scenes.downsample(source.image(i), factor)
                           for i in range(start, min(start + 500, len(source)))])
        out.append(np.asarray(encode(images)).reshape(len(images), -1))
      self._visual_tokens[split] = np.concatenate(out).astype(np.int32)
    return self._visual_tokens[split]

  def _mask_text(self, ids, rng, prob):
    tok = self.tokenizer
    maskable = ~np.isin(ids, [tok.pad_id, tok.cls_id, tok.sep_id])
    t = len(ids)
    return mlm.mask_tokens(ids, maskable, rng, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
                           max_predictions=t, prob=prob)

  def _mask_caption(self, ids, rng):
    """BEiT-3's captioning inputs: `caption_mask_prob` of the caption's tokens after [CLS] ([SEP] included, so
    the captioner learns to stop) all become [MASK]; returns mask_tokens' (inputs, positions, labels, weights)."""
    tok = self.tokenizer
    maskable = ~np.isin(ids, [tok.pad_id, tok.cls_id])
    return mlm.mask_tokens(ids, maskable, rng, mask_id=tok.mask_id, vocab_size=tok.vocab_size, max_predictions=len(ids),
                           prob=float(self.cfg.caption_mask_prob), mask_frac=1.0, random_frac=0.0)

  def preprocess(self, train: bool):
    """pretrain: {"image", "visual_tokens" (P,), "image_mask", "pair_image_mask" (P,) bool, "text_*" and
    "pair_*" MLM inputs}; nlvr: {"image" (2, H, W, C), "input_ids", "text_mask", "label", "template"};
    captioning: {"image", "input_ids" (masked), "text_mask", "positions", "labels", "weights", "label"}
    (a random caption of the scene in training, its first with a fixed mask in evaluation)."""
    split = self.config.data.train_split if train else self.config.data.eval_split
    grid = None

    def fn(example, rng):
      nonlocal grid
      if self.captioning:
        scene, texts = int(example["label"]), example["texts"]
        if not train:
          rng = np.random.default_rng(scene)
        ids, mask = self.encode_text(texts[int(rng.integers(len(texts)))] if train else texts[0])
        inputs, positions, labels, weights = self._mask_caption(ids, rng)
        return {"image": np.asarray(example["image"], np.uint8), "input_ids": inputs, "text_mask": mask,
                "positions": positions, "labels": labels, "weights": weights, "label": np.asarray(scene, np.int32)}
      if not self.pretrain:
        ids, mask = self.encode_text(example["statement"])
        return {"image": example["image"], "input_ids": ids, "text_mask": mask,
                "label": np.asarray(example["label"], np.int32), "template": np.asarray(example["template"], np.int32)}
      scene = int(example["label"])
      if not train:  # fixed masks for evaluation
        rng = np.random.default_rng(scene)
      tokens = self.visual_tokens(split)[scene]
      if grid is None:
        side = int(round(np.sqrt(len(tokens))))
        grid = (side, side)
      count = int(round(float(self.cfg.image_mask_ratio) * len(tokens)))
      block = dict(min_patches=int(self.cfg.block_min_patches))
      texts = example["texts"]
      pick = rng.integers(len(texts), size=2) if train else (0, len(texts) - 1)
      text_ids, text_mask = self.encode_text(texts[int(pick[0])])
      pair_ids, pair_mask = self.encode_text(texts[int(pick[1])])
      t_in, t_pos, t_lab, t_w = self._mask_text(text_ids, rng, float(self.cfg.text_mask_prob))
      p_in, p_pos, p_lab, p_w = self._mask_text(pair_ids, rng, float(self.cfg.pair_text_mask_prob))
      return {"image": np.asarray(example["image"], np.uint8), "visual_tokens": tokens,
              "image_mask": objective.block_mask(grid, count, rng, **block).reshape(-1),
              "pair_image_mask": objective.block_mask(grid, count, rng, **block).reshape(-1),
              "text_input_ids": t_in, "text_mask": text_mask, "text_positions": t_pos, "text_labels": t_lab,
              "text_weights": t_w, "pair_input_ids": p_in, "pair_text_mask": pair_mask, "pair_positions": p_pos,
              "pair_labels": p_lab, "pair_weights": p_w, "label": np.asarray(scene, np.int32)}

    return fn

  # ------------------------------------------------------------------ model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    if kwargs.get("dtype"):
      kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    else:
      kwargs.pop("dtype", None)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size)
    kwargs.setdefault("max_text_len", int(self.cfg.max_text_len))
    codes = int(self.cfg.visual_tokenizer_model["num_codes"])
    kwargs |= dict(mlm_head=self.cfg.objective != "nlvr", num_visual_tokens=codes if self.pretrain else 0,
                   nlvr_head=self.cfg.objective == "nlvr")
    model = models.create(name, rngs=rngs, **kwargs)
    if not isinstance(model, beit3.BEiT3):
      raise ConfigError(f"model.name {name!r} is not a BEiT-3 model ({', '.join(beit3.VARIANTS)})")
    if model.vocab_size < self.tokenizer.vocab_size or model.max_text_len < int(self.cfg.max_text_len):
      raise ConfigError(f"model vocab_size/max_text_len ({model.vocab_size}, {model.max_text_len}) are below the "
                        f"tokenizer's {self.tokenizer.vocab_size} / beit3.max_text_len={self.cfg.max_text_len}")
    return model

  def tokens_per_example(self) -> int:
    return int(self.cfg.max_text_len)

  def forward_flops(self, model) -> float:
    """Per example: pretrain counts its three passes as two pair passes (the image alone and the text alone
    together cost a little less than one pair); nlvr two pair passes and the head; captioning one pair pass
    (the MLM head counted on every text token)."""
    t = int(self.cfg.max_text_len)
    if self.pretrain:
      return 2 * models.forward_flops(model, text_len=t)
    if self.captioning:
      return models.forward_flops(model, text_len=t)
    return models.forward_flops(model, text_len=t, pair_images=2)

  # ------------------------------------------------------------------ losses
  def _pretrain_terms(self, model, batch) -> dict:
    """{name: (loss, accuracy, count)} of the four masked-modelling terms."""
    images = normalize_images(batch["image"], self.mean, self.std)
    targets = batch["visual_tokens"]
    x, _ = model.encode(images, image_mask=batch["image_mask"])
    out = {"mim": objective.masked_token_loss(model.mim_head(x[:, 1:]).astype(jnp.float32), targets,
                                              batch["image_mask"])}
    x, _ = model.encode(input_ids=batch["text_input_ids"], text_mask=batch["text_mask"])
    logits = model.mlm_head(jnp.take_along_axis(x, batch["text_positions"][..., None], axis=1))
    out["mlm"] = objective.masked_token_loss(logits.astype(jnp.float32), batch["text_labels"], batch["text_weights"])
    x, n = model.encode(images, batch["pair_input_ids"], batch["pair_text_mask"], image_mask=batch["pair_image_mask"])
    out["pair_mim"] = objective.masked_token_loss(model.mim_head(x[:, 1:n]).astype(jnp.float32), targets,
                                                  batch["pair_image_mask"])
    logits = model.mlm_head(jnp.take_along_axis(x[:, n:], batch["pair_positions"][..., None], axis=1))
    out["pair_mlm"] = objective.masked_token_loss(logits.astype(jnp.float32), batch["pair_labels"],
                                                  batch["pair_weights"])
    return out

  def _caption_term(self, model, batch):
    """(loss, accuracy, count) of the caption's masked tokens, predicted under the prefix-LM mask."""
    images = normalize_images(batch["image"], self.mean, self.std)
    logits = model.caption_logits(images, batch["input_ids"], batch["text_mask"])
    logits = jnp.take_along_axis(logits, batch["positions"][..., None], axis=1)
    return objective.masked_token_loss(logits, batch["labels"], batch["weights"])

  def _nlvr_logits(self, model, batch):
    images = normalize_images(batch["image"], self.mean, self.std)
    return model.nlvr_logits(images, batch["input_ids"], batch["text_mask"])

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      del rng  # no dropout; the masks come from the host
      model = merge_model(graphdef, params, model_state)
      if self.pretrain:
        terms = self._pretrain_terms(model, batch)
        loss = sum(t[0] for t in terms.values())
        metrics = {f"{k}_loss": t[0] for k, t in terms.items()} | {f"{k}_accuracy": t[1] for k, t in terms.items()}
      elif self.captioning:
        loss, accuracy, _ = self._caption_term(model, batch)
        metrics = {"accuracy": accuracy}
      else:
        logits = self._nlvr_logits(model, batch)
        loss = objective.nlvr_loss(logits, batch["label"]).mean()
        metrics = {"accuracy": (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32).mean()}
      return loss, (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))

    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; the loop divides by `count` (or by the entry of `counts`). Per-template
    accuracies only for the templates the eval split has (the colours subset tests four of five)."""
    templates = (sorted(set(self.source(self.config.data.eval_split).template.tolist()))
                 if self.cfg.objective == "nlvr" else [])

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      rows = batch["mask"].astype(jnp.float32)
      if self.pretrain:
        # Padded rows carry no masked positions: their weights are zeroed first.
        weight_keys = {"image_mask": "mim", "text_weights": "mlm", "pair_image_mask": "pair_mim",
                       "pair_weights": "pair_mlm"}
        batch = dict(batch) | {k: batch[k] * rows[:, None].astype(batch[k].dtype) for k in weight_keys}
        terms = self._pretrain_terms(model, batch)
        out = {"count": rows.sum(), "counts": {}}
        loss = 0.0
        for k, (term_loss, accuracy, count) in terms.items():
          out[f"{k}_loss"], out[f"{k}_accuracy"] = term_loss * count, accuracy * count
          out["counts"][f"{k}_loss"] = out["counts"][f"{k}_accuracy"] = count
          loss = loss + term_loss
        out["loss"] = loss * rows.sum()  # the sum of the four batch means, per example
        return out
      if self.captioning:  # per masked token; padded rows carry none
        loss, accuracy, count = self._caption_term(model, batch | {"weights": batch["weights"] * rows[:, None]})
        return {"loss": loss * count, "accuracy": accuracy * count, "count": count}
      logits = self._nlvr_logits(model, batch)
      correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
      # A text-only baseline: the same model with both images blank (the mean image, 0 once normalised).
      blank = model.nlvr_logits(jnp.zeros(batch["image"].shape, jnp.float32), batch["input_ids"], batch["text_mask"])
      blank_correct = (jnp.argmax(blank, -1) == batch["label"]).astype(jnp.float32)
      out = {"loss": (objective.nlvr_loss(logits, batch["label"]) * rows).sum(), "count": rows.sum(),
             "accuracy": (correct * rows).sum(), "accuracy_blank_images": (blank_correct * rows).sum(), "counts": {}}
      for k in templates:
        name = nlvr_scenes.TEMPLATES[k]
        is_type = (batch["template"] == k).astype(jnp.float32) * rows
        out[f"accuracy_{name}"] = (correct * is_type).sum()
        out["counts"][f"accuracy_{name}"] = is_type.sum()
      return out

    return eval_fn

  # ------------------------------------------------------------------ captioning: decoding and evaluation
  def prompt_ids(self) -> list[int]:
    return [self.tokenizer.cls_id] + self.tokenizer.encode(self.cfg.caption_prompt)

  def _generator(self, trainer):
    """Jitted (params, model_state, images uint8) → the beam's tokens after the prompt (replicated)."""
    if "beam" not in self._jitted:
      graphdef, c, tok, prompt = trainer.graphdef, self.cfg, self.tokenizer, self.prompt_ids()

      def generate(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        return beam_caption(model, normalize_images(images, self.mean, self.std), prompt, beam_size=int(c.beam_size),
                            max_len=int(c.max_caption_len), min_len=int(c.min_caption_len), mask_id=tok.mask_id,
                            eos_id=tok.sep_id, pad_id=tok.pad_id, alpha=float(c.length_alpha))

      self._jitted["beam"] = jax.jit(generate, out_shardings=sharding.replicated(trainer.mesh))
    return self._jitted["beam"]

  def generate_captions(self, trainer, images: np.ndarray) -> list[str]:
    """Captions (the prompt included) of uint8 images (N, H, W, C) by beam search."""
    fn, batch, tok = self._generator(trainer), int(self.cfg.generate_batch), self.tokenizer
    out = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        pad = batch - len(chunk)
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)]) if pad else chunk
        tokens = np.asarray(fn(trainer.state.params, trainer.state.model_state, chunk))[:len(chunk) - pad]
        for row in tokens.tolist():
          row = row[:row.index(tok.sep_id)] if tok.sep_id in row else row
          out.append(tok.decode(self.prompt_ids()[1:] + [i for i in row if i != tok.pad_id]))
    return out

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    n = min(int(self.cfg.caption_images), len(source)) if self.captioning else 0
    if n < 1:
      return {}
    images = np.stack([source[i]["image"] for i in range(n)])
    references = [list(source[i]["texts"]) for i in range(n)]
    hyps = self.generate_captions(trainer, images)
    out = {f"caption_{k}": v for k, v in captioning.caption_metrics(hyps, references).items()}
    if n not in self._baselines:
      self._baselines[n] = blip.caption_baselines(self.config.data.train_split, self.cfg.caption_prompt, images,
                                                  references)
    if getattr(trainer, "is_main", True) and getattr(trainer, "workdir", None) and os.path.isdir(trainer.workdir):
      with open(os.path.join(trainer.workdir, f"captions_{step}.json"), "w") as f:  # a sample to read
        json.dump([{"generated": h, "references": r} for h, r in zip(hyps[:20], references[:20])], f, indent=1)
    return out | self._baselines[n]


def beam_caption(model, images, prompt, *, beam_size: int, max_len: int, min_len: int, mask_id: int, eos_id: int,
                 pad_id: int, alpha: float = 1.0):
  """BEiT-3's decoding by beam search (beam_search.py): normalised images (B, H, W, C) and the prompt (P,) ids
  ([CLS] first) → the best caption's tokens after the prompt, (B, max_len − P), [SEP] then `pad_id`. Each
  step writes the last chosen token, puts [MASK] after it and reads the MLM head there (`caption_logits`);
  the whole sequence is encoded again each step (no KV cache: the demo's captions are short). [SEP] is
  ruled out until the caption (from [CLS]) has `min_len` tokens."""
  p, length = len(prompt), model.max_text_len
  if max_len > length:
    raise ValueError(f"max_len {max_len} exceeds the model's {length} text positions")
  b = images.shape[0]
  tokens = jnp.full((b * beam_size, length), pad_id, jnp.int32).at[:, :p - 1].set(jnp.asarray(prompt[:-1], jnp.int32))
  cache = dict(images=beam_search.tile_beams(images, beam_size), tokens=tokens, index=jnp.asarray(p - 1, jnp.int32))

  def step(last, cache):
    i = cache["index"]  # where `last` goes; the [MASK] that predicts the next token goes at i + 1
    tokens = cache["tokens"].at[:, i].set(last[:, 0])
    text_mask = jnp.broadcast_to(jnp.arange(length) <= i + 1, tokens.shape).astype(jnp.int32)
    logits = model.caption_logits(cache["images"], tokens.at[:, i + 1].set(mask_id), text_mask)
    logits = jax.lax.dynamic_slice_in_dim(logits, i + 1, 1, axis=1)  # (N, 1, V)
    logits = logits.at[..., eos_id].set(jnp.where(i + 1 < min_len, -1e9, logits[..., eos_id]))
    return logits, dict(images=cache["images"], tokens=tokens, index=i + 1)

  start = jnp.full((b,), prompt[-1], jnp.int32)
  out, _ = beam_search.beam_search(step, cache, start, beam_size=beam_size, max_len=max_len - p, eos_id=eos_id,
                                   alpha=alpha, pad_id=pad_id)
  return out
