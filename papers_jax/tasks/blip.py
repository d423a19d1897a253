"""BLIP pre-training, CapFilt and VQA as generation (`config.task = "blip"`), Li et al. 2022.

`config.blip.objective` selects the recipe:
  "pretrain"  one step trains the three objectives jointly (the paper's §3.2; not staged, not frozen): ITC with the
              momentum encoders' soft targets (α = 0.4) over the global batch, ITM on hard negatives drawn by
              contrastive similarity, and the decoder's LM loss with label smoothing 0.1 (objectives/blip.py); loss =
              ITC + ITM + LM. The momentum encoders follow the online ones by EMA (`blip.momentum` = 0.995) in
              `post_update`. Two options for the scenes, off by default: `itm_known_matches` also leaves out of
              the ITM negatives the pairs whose count or relation caption holds for the other scene (caption_code,
              scene_facts; "there are two shapes and one digit." fits about 13% of scenes, and the hard negatives,
              drawn by similarity, fit it more often), and `itm_weight` scales the ITM loss. Eval: eval/loss (the
              LM loss), eval/lm_accuracy (next-token), eval/itm_accuracy (own image vs the next example's),
              eval/itm_pair_ranking (how often the own image gets higher match log-odds
              than the next example's, where that one is no known match; chance 50% whatever the head's bias),
              eval/itc_top1 (image→text within each eval batch); after each evaluation with
              `blip.caption_images` = N > 0, captions of the first N eval images by beam search (`beam_size` 3,
              `max_caption_len` 20, `min_caption_len` 5, lengths counted from [DEC], the prompt included, as the
              official generate) scored against all of each image's references: eval/caption_bleu4 (sacrebleu),
              eval/caption_cider (CIDEr-D, evaluators/captioning.py), and the trivial baselines on the same images: the
              caption of the nearest training image by pixel distance (eval/baseline_nearest_*) and the most frequent
              training caption (eval/baseline_frequent_*); with a `caption_prompt` both baselines take captions that
              start with it. With `blip.retrieval_images` = N > 0, retrieval over the first N eval scenes and all of
              their captions (tasks/albef.py's protocol and baselines): eval/itc_* by the ITC similarity,
              eval/itm_* its top `rerank_k` re-ranked by the ITM match logit, eval/itm_itc_* by the match logit +
              the ITC similarity (BLIP's official evaluation), eval/baseline_{chance,nearest_caption}_*.
  "vqa"       VQA as generation (§5.3): the image-grounded encoder reads "[ENC] question" against the
              image, and the decoder generates "[DEC] answer [SEP]" with cross-attention to the encoded
              question (LM loss, label smoothing 0.1). Eval: eval/accuracy (the greedy answer equals the
              reference, token for token), eval/accuracy_<type>; after each evaluation, the majority-answer
              baseline (eval/baseline_majority).
Start VQA from a pre-training run with `init_from=<run>/checkpoints/<step>/state` (the momentum encoders
are not needed and not loaded).

CapFilt (`capfilt(trainer, path)`, run by tools/blip_capfilt.py): the captioner (the decoder) writes one
synthetic caption per training image by nucleus sampling (p = `top_p` 0.9), the filter (the ITM head)
keeps each original and synthetic caption whose match probability exceeds 0.5, and the result is a JSON
file of the kept captions per training scene, which `blip.train_captions` reads in a second pre-training
(configs/blip/scenes_capfilt.py); scenes left with no caption are dropped, as the paper drops the pairs.

Data: `data.name = "vqa_scenes"` (data/vqa_scenes.py). Text: "[CLS] words [SEP]" padded to
`blip.max_text_len`, by `blip.tokenizer` or, when empty, a WordPiece tokenizer trained on the training
captions and questions (saved as <workdir>/tokenizer.json); [DEC] and [ENC] are the two ids after its
vocabulary (BLIP adds them to BERT's tokenizer), so the model's vocabulary is the tokenizer's + 2. The ITC,
ITM and LM passes use the same caption with [CLS], [ENC] and [DEC] first.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from papers_jax import beam_search, decoding, models
from papers_jax.core import sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import tokenizers, vqa_scenes
from papers_jax.errors import ConfigError, DataError
from papers_jax.evaluators import captioning, retrieval
from papers_jax.models import blip as blip_model
from papers_jax.objectives import blip as objective
from papers_jax.tasks import albef  # its batching and nearest-caption baseline
from papers_jax.tasks.classification import normalize_images

OBJECTIVES = ("pretrain", "vqa")
MOMENTUM_PAIRS = (("visual", "visual_m"), ("vision_proj", "vision_proj_m"), ("text", "text_m"),
                  ("text_proj", "text_proj_m"))

RANGES = (
    ("max_text_len", "[4, 4096]"),
    ("alpha", "[0, 1]"),
    ("momentum", "[0, 1]"),
    ("label_smoothing", "[0, 1)"),
    ("caption_images", "[0, 100000]"),
    ("beam_size", "[1, 64]"),
    ("max_caption_len", "[2, 4096]"),
    ("min_caption_len", "[0, 4096]"),
    ("top_p", "(0, 1]"),
    ("answer_max_len", "[1, 64]"),
    ("generate_batch", "[1, 100000]"),
    ("retrieval_images", "[0, 100000]"),
    ("rerank_k", "[1, 100000]"),
    ("itm_weight", "[0, 1000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.blip`, the fields this task reads (the paper's values)."""
  return ml_collections.ConfigDict(dict(
      objective="pretrain", tokenizer="", vocab_size=256, max_text_len=32, alpha=0.4, momentum=0.995,
      label_smoothing=0.1, train_captions="", caption_prompt="", caption_images=0, beam_size=3,
      max_caption_len=20, min_caption_len=5, length_alpha=1.0, top_p=0.9, answer_max_len=5, generate_batch=100,
      retrieval_images=0, rerank_k=128, itm_known_matches=False, itm_weight=1.0,
      itm_hard_negatives=True)
      | overrides)


class CaptionsFile:
  """The training scenes with the captions of a CapFilt JSON file ({"captions": [[str, ...] per scene]});
  scenes with no caption left are dropped."""

  def __init__(self, source, path: str):
    if not os.path.isfile(path):
      raise DataError(f"blip.train_captions: no file {path}; run tools/blip_capfilt.py first (it writes it)")
    with open(path) as f:
      captions = json.load(f)["captions"]
    if len(captions) != len(source):
      raise DataError(f"{path} has captions for {len(captions)} scenes but the {source.split} split has "
                      f"{len(source)}; it was written for another dataset")
    self.source, self.captions = source, captions
    self.index = [i for i, c in enumerate(captions) if c]
    self.split, self.name, self.num_classes = source.split, source.name, 0

  def __len__(self):
    return len(self.index)

  def __getitem__(self, i):
    s = self.index[int(i)]
    return dict(self.source[s]) | {"texts": tuple(self.captions[s])}


# ---------------------------------------------------------------------------------------------- known matches
RELATIONS = ("left of", "right of", "above", "below")
MAX_FACTS = 16  # at most 4 objects: 12 ordered pairs, and the counts
_NO_FACT = -2
_COUNTS = 20000


def _object_code(colour: str, kind: str) -> int:
  return vqa_scenes._COLOUR_NAMES.index(colour) * len(vqa_scenes.KINDS) + vqa_scenes.KINDS.index(kind)


def caption_code(caption: str) -> int:
  """The fact a scene caption states as an int (vqa_scenes' templates): the counts, or a relation between two
  (colour, kind) objects; −1 for anything else (the listings, which hold only for a scene whose own listing is
  this text). A caption holds for a scene whose `scene_facts` hold its code (vqa_scenes.caption_holds)."""
  words = caption.rstrip(".").split()
  if caption.startswith("there are ") and len(words) == 7 and words[2] in vqa_scenes._NUMBER_WORDS \
     and words[5] in vqa_scenes._NUMBER_WORDS:
    return _COUNTS + 5 * vqa_scenes._NUMBER_WORDS.index(words[2]) + vqa_scenes._NUMBER_WORDS.index(words[5])
  for r, relation in enumerate(RELATIONS):
    head, sep, tail = caption.rstrip(".").partition(f" is {relation} ")
    a, b = head.split()[1:], tail.split()[1:]
    if sep and len(a) == len(b) == 2 and a[0] in vqa_scenes.COLOURS and b[0] in vqa_scenes.COLOURS \
       and a[1] in vqa_scenes.KINDS and b[1] in vqa_scenes.KINDS:
      return (_object_code(*a) * len(RELATIONS) + r) * len(vqa_scenes.KINDS) * len(vqa_scenes.COLOURS) + \
          _object_code(*b)
  return -1


def scene_facts(objects) -> np.ndarray:
  """The codes (`caption_code`) of every count and relation caption that holds for a scene, padded: (MAX_FACTS,)."""
  shapes = sum(o["kind"] in vqa_scenes.SHAPES for o in objects)
  codes = [_COUNTS + 5 * shapes + len(objects) - shapes]
  for a in objects:
    for b in objects:
      relation = vqa_scenes._relation(a, b) if a is not b else None
      if relation:
        codes.append(caption_code(f"a {a['colour']} {a['kind']} is {relation} a {b['colour']} {b['kind']}."))
  return np.asarray(codes + [_NO_FACT] * (MAX_FACTS - len(codes)), np.int32)


class WithFacts:
  """A captions source whose examples also carry their scene's `scene_facts` ("scene_facts")."""

  def __init__(self, source, scenes):
    self.source, self.scenes = source, scenes
    self.split, self.name, self.num_classes = source.split, source.name, source.num_classes

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    example = self.source[i]
    return example | {"scene_facts": scene_facts(self.scenes[int(example["label"])]["objects"])}


# ---------------------------------------------------------------------------------------------- generation
def _min_length_step(model, eos_id: int, min_len: int):
  """`model.decode_step` with EOS ruled out until the sequence (from [DEC] on) has min_len tokens."""
  def step(tokens, cache):
    before = cache["self_kv"][0].index
    logits, cache = model.decode_step(tokens, cache)
    too_short = before + tokens.shape[1] < min_len
    last = logits[:, -1]
    last = last.at[:, eos_id].set(jnp.where(too_short, -1e9, last[:, eos_id]))
    return logits.at[:, -1].set(last), cache
  return step


def _prefill(model, memory, prompt, max_len: int, memory_mask=None):
  """A decode cache for memory with every prompt token but the last fed; returns (cache, last tokens (B,))."""
  cache = model.init_decode_cache(memory, max_len, memory_mask)
  prompt = jnp.broadcast_to(jnp.asarray(prompt, jnp.int32), (memory.shape[0], len(prompt)))
  if prompt.shape[1] > 1:
    _, cache = model.decode_step(prompt[:, :-1], cache)
  return cache, prompt[:, -1]


def beam_generate(model, memory, prompt, *, beam_size: int, max_len: int, min_len: int, eos_id: int, pad_id: int,
                  alpha: float = 1.0, memory_mask=None):
  """Beam search after `prompt` (P,) ids ([DEC] first): the generated tokens (B, max_len − P), EOS then pad."""
  p = len(prompt)
  memory = beam_search.tile_beams(memory, beam_size)
  memory_mask = None if memory_mask is None else beam_search.tile_beams(memory_mask, beam_size)
  cache, last = _prefill(model, memory, prompt, max_len, memory_mask)
  tokens, _ = beam_search.beam_search(_min_length_step(model, eos_id, min_len), cache, last[::beam_size],
                                      beam_size=beam_size, max_len=max_len - p, eos_id=eos_id, alpha=alpha,
                                      pad_id=pad_id)
  return tokens


def sample_generate(model, memory, prompt, rng, *, max_len: int, min_len: int, eos_id: int, pad_id: int,
                    top_p: float = 0.9, temperature: float = 1.0, memory_mask=None):
  """Nucleus sampling (temperature 0: greedy) after `prompt`: tokens (B, max_len − P), EOS then pad."""
  p = len(prompt)
  cache = model.init_decode_cache(memory, max_len, memory_mask)
  prompt = jnp.broadcast_to(jnp.asarray(prompt, jnp.int32), (memory.shape[0], p))
  return decoding.generate(_min_length_step(model, eos_id, min_len), cache, prompt, max_new_tokens=max_len - p,
                           rng=rng, temperature=temperature, top_p=top_p, eos_id=eos_id, pad_id=pad_id)


def caption_baselines(train_split: str, prompt: str, eval_images: np.ndarray, references: list[list[str]]) -> dict:
  """BLEU-4 and CIDEr-D of two captioners that do not learn from pairs, on the same images: the caption of the
  nearest training image (L2 on 2×2-averaged pixels) and the most frequent training caption; with a prompt,
  both use captions starting with it. BLIP's and BEiT-3's captioning evaluations (tasks/beit3.py) report them."""
  train = vqa_scenes.VQAScenesSource(train_split, "captions")

  def pick(texts):
    fitting = [t for t in texts if t.startswith(prompt)]
    return (fitting or list(texts))[0]

  def pooled(images):
    x = images.astype(np.float32)
    return x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2, -1).mean((2, 4)).reshape(x.shape[0], -1)

  train_x = pooled(np.stack([train.image(i) for i in range(len(train))]))
  test_x = pooled(eval_images)
  d = (test_x ** 2).sum(1)[:, None] - 2 * test_x @ train_x.T + (train_x ** 2).sum(1)[None, :]
  nearest = [pick(train.scenes[j]["captions"]) for j in np.argmin(d, axis=1)]
  counts = {}
  for s in train.scenes:
    for t in s["captions"]:
      if t.startswith(prompt):
        counts[t] = counts.get(t, 0) + 1
  frequent = max(counts, key=counts.get)
  out = {}
  for name, hyps in (("nearest", nearest), ("frequent", [frequent] * len(references))):
    out |= {f"baseline_{name}_{k}": v for k, v in captioning.caption_metrics(hyps, references).items()}
  return out


def known_matches(batch):
  """(B, B) bool: [t, i] where caption t states a count or relation that holds for scene i (caption_code,
  scene_facts); all False without those fields."""
  if "caption_code" not in batch:
    b = batch["input_ids"].shape[0]
    return jnp.zeros((b, b), bool)
  codes = batch["caption_code"]
  return jnp.any(codes[:, None, None] == batch["scene_facts"][None, :, :], axis=-1) & (codes >= 0)[:, None]


class BLIPTask:
  """Model + objectives + evaluation for `config.task = "blip"`."""

  def __init__(self, config):
    self.config = config
    self.c = config.blip
    if self.c.objective not in OBJECTIVES:
      raise ConfigError(f"blip.objective must be one of {OBJECTIVES}, got {self.c.objective!r}")
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task blip reads data.name='vqa_scenes', got {config.data.name!r}")
    if self.c.train_captions and not self.pretrain:
      raise ConfigError("blip.train_captions (CapFilt's output) is for objective='pretrain'")
    if self.c.min_caption_len > self.c.max_caption_len:
      raise ConfigError(f"blip.min_caption_len {self.c.min_caption_len} exceeds max_caption_len "
                        f"{self.c.max_caption_len}")
    self.mean, self.std, _ = image_preprocessing(config)
    self._sources, self._jitted, self._baselines = {}, {}, {}

  @property
  def pretrain(self) -> bool:
    return self.c.objective == "pretrain"

  # ------------------------------------------------------------------ data and text
  def source(self, split: str):
    if split not in self._sources:
      src = vqa_scenes.VQAScenesSource(split, "captions" if self.pretrain else "vqa")
      scenes = src.scenes if self.pretrain else None
      if self.c.train_captions and split == self.config.data.train_split:
        src = CaptionsFile(src, self.c.train_captions)
      if self.pretrain:
        src = WithFacts(src, scenes)
      self._sources[split] = src
    return self._sources[split]

  @functools.cached_property
  def tokenizer(self) -> tokenizers.Tokenizer:
    if self.c.tokenizer:
      return tokenizers.load(self.c.tokenizer)
    return tokenizers.train_wordpiece(vqa_scenes.training_texts(), int(self.c.vocab_size), min_frequency=1)

  @property
  def dec_id(self) -> int:
    return self.tokenizer.vocab_size

  @property
  def enc_id(self) -> int:
    return self.tokenizer.vocab_size + 1

  def save_assets(self, workdir: str):
    self.tokenizer.save(os.path.join(workdir, tokenizers.FILE_NAME))

  def encode_texts(self, texts, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """"[CLS] text [SEP]" ids padded to `length` (default max_text_len) and their attention mask."""
    tok, t = self.tokenizer, int(length or self.c.max_text_len)
    ids = np.full((len(texts), t), tok.pad_id, np.int32)
    for row, text in zip(ids, texts):
      pieces = [tok.cls_id] + tok.encode(text)[:t - 2] + [tok.sep_id]
      row[:len(pieces)] = pieces
    return ids, (ids != tok.pad_id).astype(np.int32)

  def prompt_ids(self) -> list[int]:
    return [self.dec_id] + self.tokenizer.encode(self.c.caption_prompt)

  def decode(self, tokens) -> list[str]:
    """Generated ids → texts (stopping at [SEP]; special ids dropped)."""
    tok, out = self.tokenizer, []
    for row in np.asarray(tokens):
      row = [int(i) for i in row]
      row = row[:row.index(tok.sep_id)] if tok.sep_id in row else row
      out.append(tok.decode([i for i in row if i < tok.vocab_size]))
    return out

  def preprocess(self, train: bool):
    """example → {"image" uint8, "input_ids", "attention_mask", "label"} (pretrain: one of the scene's captions,
    the first for evaluation) or the question's and answer's ids and masks, "answer", "qtype" (vqa)."""
    def fn(example, rng):
      out = {"image": np.asarray(example["image"], np.uint8), "label": np.asarray(example["label"], np.int32)}
      if self.pretrain:
        texts = example["texts"]
        text = texts[int(rng.integers(len(texts)))] if train else texts[0]
        ids, mask = self.encode_texts([text])
        facts = example.get("scene_facts", np.full((MAX_FACTS,), _NO_FACT, np.int32))
        return out | {"input_ids": ids[0], "attention_mask": mask[0], "scene_facts": np.asarray(facts, np.int32),
                      "caption_code": np.int32(caption_code(text))}
      q_ids, q_mask = self.encode_texts([example["question"]])
      a_ids, a_mask = self.encode_texts([vqa_scenes.ANSWERS[int(example["answer"])]], self.c.answer_max_len + 1)
      return out | {"input_ids": q_ids[0], "attention_mask": q_mask[0], "answer_ids": a_ids[0],
                    "answer_mask": a_mask[0], "answer": np.asarray(example["answer"], np.int32),
                    "qtype": np.asarray(example["qtype"], np.int32)}
    return fn

  # ------------------------------------------------------------------ model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    if kwargs.get("dtype"):
      kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    else:
      kwargs.pop("dtype", None)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size + 2)
    kwargs["momentum"] = self.pretrain
    model = models.create(name, rngs=rngs, **kwargs)
    if not isinstance(model, blip_model.BLIP):
      raise ConfigError(f"model.name {name!r} is not a BLIP model (blip_base, blip_tiny)")
    if model.vocab_size < self.tokenizer.vocab_size + 2 or model.max_text_len < int(self.c.max_text_len):
      raise ConfigError(f"model vocab_size/max_position_embeddings ({model.vocab_size}, {model.max_text_len}) are "
                        f"below the tokenizer's {self.tokenizer.vocab_size} + 2 ([DEC], [ENC]) / "
                        f"blip.max_text_len={self.c.max_text_len}")
    if model.max_text_len < int(self.c.max_caption_len):
      raise ConfigError(f"blip.max_caption_len {self.c.max_caption_len} exceeds the model's "
                        f"max_position_embeddings {model.max_text_len}")
    if not self.pretrain and model.vision_width != model.hidden_size:
      raise ConfigError(f"VQA's answer decoder cross-attends to the encoded question through the cross-attention "
                        f"it shares with the image-grounded encoder, so vision_width ({model.vision_width}) must "
                        f"equal hidden_size ({model.hidden_size})")
    return model

  def tokens_per_example(self) -> int:
    return int(self.c.max_text_len)

  def forward_flops(self, model) -> float:
    """One forward pass of each path (image encoder, unimodal, image-grounded and decoder text passes)."""
    return models.forward_flops(model, text_len=int(self.c.max_text_len))

  @property
  def post_update(self):
    if not self.pretrain:
      return None
    m = float(self.c.momentum)

    def update(params, model_state, step):
      del step
      model_state = dict(model_state)
      for online, target in MOMENTUM_PAIRS:
        model_state[target] = optax.incremental_update(params[online], model_state[target], 1.0 - m)
      return model_state
    return update

  # ------------------------------------------------------------------ losses
  def _images(self, batch):
    return normalize_images(batch["image"], self.mean, self.std)

  def _pretrain_losses(self, model, batch, key, *, train: bool, rngs=None):
    kw = dict(train=train, rngs=rngs)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    image_embeds = model.encode_image(self._images(batch), **kw)
    image_feat = model.image_feature(image_embeds)
    text_feat = model.text_feature(model.encode_text(ids, mask, **kw), mask)
    image_feat_m = jax.lax.stop_gradient(model.image_feature(model.encode_image(self._images(batch), momentum=True),
                                                             momentum=True))
    text_feat_m = jax.lax.stop_gradient(model.text_feature(model.encode_text(ids, mask, momentum=True), mask,
                                                           momentum=True))
    temp = jnp.clip(model.temp[...].astype(jnp.float32), 0.001, 0.5)
    itc, sim_i2t, sim_t2i = objective.itc_loss(image_feat, text_feat, image_feat_m, text_feat_m, temp,
                                               float(self.c.alpha))
    # ITM on [ENC] text: the positives, each text with a hard negative image, each image with a hard negative text.
    enc_ids = ids.at[:, 0].set(self.enc_id)
    same_text = jnp.all(ids[:, None, :] == ids[None, :, :], axis=-1)
    positive = same_text | known_matches(batch) if self.c.itm_known_matches else same_text
    hard = float(self.c.itm_hard_negatives)  # 0: every other pair equally likely
    neg_image, neg_text = objective.itm_negatives(key, hard * sim_i2t, hard * sim_t2i, positive)
    mm_ids = jnp.concatenate([enc_ids, enc_ids, enc_ids[neg_text]])
    mm_mask = jnp.concatenate([mask, mask, mask[neg_text]])
    mm_images = jnp.concatenate([image_embeds, image_embeds[neg_image], image_embeds])
    itm_logits = model.itm_logits(model.encode_multimodal(mm_ids, mm_mask, mm_images, **kw), mm_mask)
    itm, itm_labels = objective.itm_loss(itm_logits)
    # LM on [DEC] text.
    dec_ids = ids.at[:, 0].set(self.dec_id)
    lm_logits = model.decoder_logits(dec_ids, mask, image_embeds, **kw)
    lm, lm_sums, lm_counts = objective.lm_loss(lm_logits, dec_ids, mask, float(self.c.label_smoothing))
    return dict(itc=itc, itm=itm, lm=lm, temp=temp, lm_sums=lm_sums, lm_counts=lm_counts,
                itm_correct=(jnp.argmax(itm_logits, -1) == itm_labels).astype(jnp.float32),
                i2t_correct=same_text[jnp.arange(ids.shape[0]), jnp.argmax(sim_i2t, 1)].astype(jnp.float32))

  def _vqa_memory(self, model, batch, *, train: bool, rngs=None):
    """The question read against the image by the image-grounded encoder: (B, T, D)."""
    image_embeds = model.encode_image(self._images(batch), train=train, rngs=rngs)
    q_ids = batch["input_ids"].at[:, 0].set(self.enc_id)
    return model.encode_multimodal(q_ids, batch["attention_mask"], image_embeds, train=train, rngs=rngs)

  def _vqa_lm(self, model, batch, memory, *, train: bool, rngs=None):
    a_ids = batch["answer_ids"].at[:, 0].set(self.dec_id)
    logits = model.decoder_logits(a_ids, batch["answer_mask"], memory, batch["attention_mask"], train=train,
                                  rngs=rngs)
    return objective.lm_loss(logits, a_ids, batch["answer_mask"], float(self.c.label_smoothing))

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      k_itm, k_drop = jax.random.split(rng)
      rngs = nnx.Rngs(dropout=k_drop)
      if self.pretrain:
        r = self._pretrain_losses(model, batch, k_itm, train=True, rngs=rngs)
        loss = r["itc"] + float(self.c.itm_weight) * r["itm"] + r["lm"]
        metrics = {"itc_loss": r["itc"], "itm_loss": r["itm"], "lm_loss": r["lm"], "temp": r["temp"],
                   "itm_accuracy": r["itm_correct"].mean(), "itc_top1": r["i2t_correct"].mean()}
      else:
        memory = self._vqa_memory(model, batch, train=True, rngs=rngs)
        loss, _, _ = self._vqa_lm(model, batch, memory, train=True, rngs=rngs)
        metrics = {}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; the loop divides by `count` (or by the entry of `counts`)."""
    smoothing = float(self.c.label_smoothing)

    def pretrain_sums(model, batch, rows):
      ids, mask = batch["input_ids"], batch["attention_mask"]
      image_embeds = model.encode_image(self._images(batch))
      dec_ids = ids.at[:, 0].set(self.dec_id)
      logits = model.decoder_logits(dec_ids, mask, image_embeds)
      _, sums, counts = objective.lm_loss(logits, dec_ids, mask, smoothing)
      weights = mask[:, 1:].astype(jnp.float32) * rows[:, None]
      correct = (jnp.argmax(logits[:, :-1], -1) == dec_ids[:, 1:]).astype(jnp.float32) * weights
      # ITM: each caption with its own image (match) and with the next row's image (no match unless equal text).
      enc_ids = ids.at[:, 0].set(self.enc_id)
      other = jnp.roll(jnp.arange(ids.shape[0]), -1)
      same = jnp.all(ids == ids[other], axis=-1)
      logits_itm = model.itm_logits(model.encode_multimodal(
          jnp.concatenate([enc_ids, enc_ids]), jnp.concatenate([mask, mask]),
          jnp.concatenate([image_embeds, image_embeds[other]])), jnp.concatenate([mask, mask]))
      pred = jnp.argmax(logits_itm, -1).reshape(2, -1)
      itm_correct = ((pred[0] == 1).astype(jnp.float32) + (pred[1] == same).astype(jnp.float32)) / 2
      # Ranking, not calibration: the own image's match log-odds above the next scene's, where that one is no match.
      odds = (logits_itm[:, 1] - logits_itm[:, 0]).reshape(2, -1)
      no_match = ~(same | known_matches(batch)[jnp.arange(ids.shape[0]), other])
      pair_rows = rows * rows[other] * no_match.astype(jnp.float32)
      # ITC: in-batch image → text over the real rows; a caption equal to the image's own counts.
      sims = model.image_feature(image_embeds) @ model.text_feature(model.encode_text(ids, mask), mask).T
      sims = jnp.where(rows[None, :] > 0, sims, -jnp.inf)
      same_text = jnp.all(ids[:, None, :] == ids[None, :, :], axis=-1)
      top1 = same_text[jnp.arange(ids.shape[0]), jnp.argmax(sims, 1)].astype(jnp.float32)
      return {"loss": (sums / jnp.maximum(counts, 1.0) * rows).sum(), "count": rows.sum(),
              "lm_accuracy": correct.sum(), "itm_accuracy": (itm_correct * rows).sum(), "itc_top1": (top1 * rows).sum(),
              "itm_pair_ranking": ((odds[0] > odds[1]) * pair_rows).sum(),
              "counts": {"lm_accuracy": weights.sum(), "itm_pair_ranking": pair_rows.sum()}}

    def vqa_sums(model, batch, rows):
      memory = self._vqa_memory(model, batch, train=False)
      _, sums, counts = self._vqa_lm(model, batch, memory, train=False)
      tok = self.tokenizer
      length = int(self.c.answer_max_len)
      answer = sample_generate(model, memory, [self.dec_id], None, max_len=length + 1, min_len=0,
                               eos_id=tok.sep_id, pad_id=tok.pad_id, temperature=0.0,
                               memory_mask=batch["attention_mask"])
      correct = jnp.all(answer == batch["answer_ids"][:, 1:], axis=1).astype(jnp.float32)
      out = {"loss": (sums / jnp.maximum(counts, 1.0) * rows).sum(), "count": rows.sum(),
             "accuracy": (correct * rows).sum(), "counts": {}}
      for k, name in enumerate(vqa_scenes.QUESTION_TYPES):
        is_type = (batch["qtype"] == k).astype(jnp.float32) * rows
        out[f"accuracy_{name}"] = (correct * is_type).sum()
        out["counts"][f"accuracy_{name}"] = is_type.sum()
      return out

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      rows = batch["mask"].astype(jnp.float32)
      return pretrain_sums(model, batch, rows) if self.pretrain else vqa_sums(model, batch, rows)

    return eval_fn

  # ------------------------------------------------------------------ after each evaluation
  def _generator(self, trainer, kind: str):
    """Jitted (params, model_state, images uint8, rng) → generated ids after the prompt (replicated)."""
    if kind not in self._jitted:
      graphdef, c, tok, prompt = trainer.graphdef, self.c, self.tokenizer, self.prompt_ids()
      common = dict(max_len=int(c.max_caption_len), min_len=int(c.min_caption_len), eos_id=tok.sep_id,
                    pad_id=tok.pad_id)

      def generate(params, model_state, images, rng):
        model = merge_model(graphdef, params, model_state)
        memory = model.encode_image(normalize_images(images, self.mean, self.std))
        if kind == "beam":
          return beam_generate(model, memory, prompt, beam_size=int(c.beam_size), alpha=float(c.length_alpha),
                               **common)
        return sample_generate(model, memory, prompt, rng, top_p=float(c.top_p), **common)

      self._jitted[kind] = jax.jit(generate, out_shardings=sharding.replicated(trainer.mesh))
    return self._jitted[kind]

  def generate_captions(self, trainer, images: np.ndarray, kind: str = "beam", seed: int = 0) -> list[str]:
    """Captions (the prompt included) of uint8 images (N, H, W, C), by beam search or nucleus sampling."""
    fn, batch = self._generator(trainer, kind), int(self.c.generate_batch)
    prompt = self.tokenizer.decode(self.prompt_ids()[1:]) if self.c.caption_prompt else ""
    state, out = trainer.state, []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        pad = batch - len(chunk)
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)]) if pad else chunk
        tokens = fn(state.params, state.model_state, chunk, jax.random.key(seed + start))
        out += self.decode(np.asarray(tokens)[:len(chunk) - pad])
    return [f"{prompt} {t}".strip() for t in out]

  def caption_baselines(self, eval_images: np.ndarray, references: list[list[str]]) -> dict:
    return caption_baselines(self.config.data.train_split, self.c.caption_prompt, eval_images, references)

  def retrieval_metrics(self, trainer, source) -> dict:
    """Recall@1/5/10 both ways on the first `retrieval_images` scenes of `source` (module docstring)."""
    if "retrieval" not in self._jitted:
      graphdef, rep = trainer.graphdef, sharding.replicated(trainer.mesh)

      def image_fn(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        embeds = model.encode_image(normalize_images(images, self.mean, self.std))
        return embeds, model.image_feature(embeds)

      def text_fn(params, model_state, ids, mask):
        model = merge_model(graphdef, params, model_state)
        return model.text_feature(model.encode_text(ids, mask), mask)

      def itm_fn(params, model_state, ids, mask, image_embeds):
        model = merge_model(graphdef, params, model_state)
        mm = model.encode_multimodal(ids.at[:, 0].set(self.enc_id), mask, image_embeds)
        return model.itm_logits(mm, mask)[:, 1]

      self._jitted["retrieval"] = tuple(jax.jit(f, out_shardings=rep) for f in (image_fn, text_fn, itm_fn))
    image_fn, text_fn, itm_fn = self._jitted["retrieval"]
    n = min(int(self.c.retrieval_images), len(source))
    examples = [source[i] for i in range(n)]
    images = np.stack([e["image"] for e in examples])
    texts = [t for e in examples for t in e["texts"]]
    image_ids, text_ids = np.arange(n), np.repeat(np.arange(n), [len(e["texts"]) for e in examples])
    ids, mask = self.encode_texts(texts)
    state, batch, in_batches = trainer.state, int(self.c.generate_batch), albef.ALBEFTask._in_batches
    p, s = state.params, state.model_state
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      image_embeds, image_feat = in_batches(lambda x: image_fn(p, s, x), [images], batch)
      text_feat = in_batches(lambda i, m: text_fn(p, s, i, m), [ids, mask], batch)
      itc = image_feat @ text_feat.T
      out = {f"itc_{k}": v for k, v in retrieval.recall_from_scores(itc, image_ids, text_ids).items()}

      def itm_scores(text_idx, image_idx):
        return in_batches(lambda t, m, x: itm_fn(p, s, t, m, x), [ids[text_idx], mask[text_idx],
                                                                   image_embeds[image_idx]], batch)

      i2t, t2i = retrieval.rerank_with_itm(itc, itm_scores, int(self.c.rerank_k))
      out |= {f"itm_{k}": v for k, v in retrieval.recall_from_scores(i2t, image_ids, text_ids, t2i_scores=t2i).items()}
      i2t, t2i = retrieval.add_itc(i2t, t2i, itc)
      out |= {f"itm_itc_{k}": v
              for k, v in retrieval.recall_from_scores(i2t, image_ids, text_ids, t2i_scores=t2i).items()}
    key = ("retrieval", n)
    if key not in self._baselines:  # against the original training captions, whatever this run trained on
      ks = (1, 5, 10)
      base = {f"baseline_chance_{k}": v for k, v in retrieval.chance_recall(image_ids, text_ids, ks).items()}
      train = vqa_scenes.VQAScenesSource(self.config.data.train_split, "captions")
      scores = albef.nearest_caption_scores(np.stack([train.image(i) for i in range(len(train))]),
                                            [scene["captions"] for scene in train.scenes], images, texts)
      recall = retrieval.recall_from_scores(scores, image_ids, text_ids, ks)
      self._baselines[key] = base | {f"baseline_nearest_caption_{k}": v for k, v in recall.items()}
    return out | self._baselines[key]

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    if not self.pretrain:
      if "majority" not in self._baselines:
        self._baselines["majority"] = vqa_scenes.answer_baselines()["majority"]
      return {"baseline_majority": self._baselines["majority"]}
    n = min(int(self.c.caption_images), len(source))
    if n < 1:
      return {}
    images = np.stack([source[i]["image"] for i in range(n)])
    references = [list(source[i]["texts"]) for i in range(n)]
    hyps = self.generate_captions(trainer, images, "beam")
    out = {f"caption_{k}": v for k, v in captioning.caption_metrics(hyps, references).items()}
    if n not in self._baselines:
      self._baselines[n] = self.caption_baselines(images, references)
    if int(self.c.retrieval_images) > 1:
      out |= self.retrieval_metrics(trainer, source)
    if getattr(trainer, "is_main", True) and getattr(trainer, "workdir", None) and os.path.isdir(trainer.workdir):
      with open(os.path.join(trainer.workdir, f"captions_{step}.json"), "w") as f:  # a sample to read
        json.dump([{"generated": h, "references": r} for h, r in zip(hyps[:20], references[:20])], f, indent=1)
    return out | self._baselines[n]


# ---------------------------------------------------------------------------------------------- CapFilt
def tidy_caption(text: str) -> str:
  """A decoded caption in the scenes' spelling: WordPiece's decoder spaces out ':' and ',' ("right : a red 7 ,"),
  and a repeated final '.' is one."""
  text = " ".join(text.replace(" :", ":").replace(" ,", ",").split())
  return text.rstrip(". ") + "." if text.endswith(".") else text


def corrupted_captions(source, seed: int = 0) -> list[str]:
  """One noisy caption per scene of `source`, standing in for the web's mismatched alt-texts: the caption of a
  random other scene that does not hold for this one (vqa_scenes.caption_holds)."""
  rng, out = np.random.default_rng(seed), []
  for i, scene in enumerate(source.scenes):
    while True:
      other = source.scenes[(i + 1 + int(rng.integers(len(source) - 1))) % len(source)]["captions"]
      text = other[int(rng.integers(len(other)))]
      if not vqa_scenes.caption_holds(scene["objects"], text):
        out.append(text)
        break
  return out


def filter_quality(counts: dict) -> dict:
  """The ITM filter as a classifier of captions that hold for their scene, from `capfilt`'s counts:
  precision and recall over all candidates, and the share kept of each kind (original, corrupted,
  synthetic) and of the synthetic captions that hold and that do not."""
  kinds = ("original", "corrupted", "synthetic")
  kept = sum(counts[f"{k}_kept"] for k in kinds)
  true_kept = sum(counts[f"{k}_true_kept"] for k in kinds)
  true = sum(counts[f"{k}_true"] for k in kinds)
  out = {"precision": true_kept / max(kept, 1), "recall": true_kept / max(true, 1)}
  out |= {f"{k}_kept_share": counts[f"{k}_kept"] / max(counts[k], 1) for k in kinds}
  false = counts["synthetic"] - counts["synthetic_true"]
  out["synthetic_true_kept_share"] = counts["synthetic_true_kept"] / max(counts["synthetic_true"], 1)
  out["synthetic_false_kept_share"] = (counts["synthetic_kept"] - counts["synthetic_true_kept"]) / max(false, 1)
  return out


def capfilt(task: BLIPTask, trainer, path: str, *, threshold: float = 0.5, seed: int = 0,
            scenes: int | None = None) -> dict:
  """One bootstrap round on the training split: synthetic captions by nucleus sampling, the ITM filter over
  the original and synthetic captions, the kept captions written to `path` (JSON). Returns the counts and
  `filter_quality`. The filter also scores one corrupted caption per scene (`corrupted_captions`): those
  measure it and never enter the file. Whether a caption is true of its scene is vqa_scenes.caption_holds.
  `scenes` limits the round to the first scenes (a measurement of the filter: a second pre-training needs them
  all)."""
  source = vqa_scenes.VQAScenesSource(trainer.config.data.train_split, "captions")
  graphdef, c = trainer.graphdef, task.c
  if "itm" not in task._jitted:
    def match_prob(params, model_state, images, ids, mask):
      model = merge_model(graphdef, params, model_state)
      embeds = model.encode_image(normalize_images(images, task.mean, task.std))
      logits = model.itm_logits(model.encode_multimodal(ids.at[:, 0].set(task.enc_id), mask, embeds), mask)
      return jax.nn.softmax(logits, -1)[:, 1]
    task._jitted["itm"] = jax.jit(match_prob, out_shardings=sharding.replicated(trainer.mesh))
  itm = task._jitted["itm"]
  batch, state = int(c.generate_batch), trainer.state
  corrupted = corrupted_captions(source, seed)
  kinds = ("original", "corrupted", "synthetic")
  kept, counts = [], {f"{k}{part}": 0 for k in kinds for part in ("", "_kept", "_true", "_true_kept")}
  n = len(source) if not scenes else min(int(scenes), len(source))
  for start in range(0, n, batch):
    idx = list(range(start, min(start + batch, n)))
    images = np.stack([source.image(i) for i in idx])
    synthetic = task.generate_captions(trainer, images, "sample", seed=seed + start)
    rows = [(k, t, "original") for k, i in enumerate(idx) for t in source.scenes[i]["captions"]]
    rows += [(k, corrupted[i], "corrupted") for k, i in enumerate(idx)]
    rows += [(k, tidy_caption(t), "synthetic") for k, t in enumerate(synthetic)]
    probs = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for r0 in range(0, len(rows), batch):
        chunk = rows[r0:r0 + batch]
        full = chunk + [chunk[0]] * (batch - len(chunk))
        ids, mask = task.encode_texts([t for _, t, _ in full])
        p = itm(state.params, state.model_state, images[[k for k, _, _ in full]], ids, mask)
        probs += [float(x) for x in np.asarray(p)[:len(chunk)]]
    by_scene = [[] for _ in idx]
    for (k, t, kind), p in zip(rows, probs):
      holds = vqa_scenes.caption_holds(source.scenes[idx[k]]["objects"], t)
      counts[kind] += 1
      counts[kind + "_true"] += holds
      if p > threshold:
        counts[kind + "_kept"] += 1
        counts[kind + "_true_kept"] += holds
        if kind != "corrupted" and t not in by_scene[k]:
          by_scene[k].append(t)
    kept += by_scene
  counts["scenes_kept"] = sum(bool(k) for k in kept)
  quality = filter_quality(counts)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump({"split": source.split, "threshold": threshold, "counts": counts, "filter": quality,
               "captions": kept}, f)
  os.replace(path + ".tmp", path)
  return counts | {"filter": quality}
