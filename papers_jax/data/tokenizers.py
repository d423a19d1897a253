"""Sub-word tokenizers for the language-model papers, built on the `tokenizers` package.

Three trained kinds, each saved as a standard `tokenizer.json` (loadable by HF `transformers` too):

  "wordpiece"  BERT (Devlin et al. 2019): lower-casing normaliser that also strips accents and
               cleans control characters, BERT pre-tokenizer (whitespace and punctuation), WordPiece
               with "##" continuations; specials [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4.
  "byte_bpe"   GPT-2 (Radford et al. 2019): byte-level BPE over GPT-2's regex pre-tokenizer, no
               unknown token; <|endoftext|>=0 serves as both BOS and EOS; no padding token.
  "translation_bpe"  Vaswani et al. (2017) share one BPE vocabulary between source and target (and tie
               the embeddings): byte-level BPE trained on both sides; <pad>=0 <s>=1 (BOS) </s>=2 (EOS).

or any `tokenizer.json` from disk (`load`), e.g. HF's bert-base-uncased or gpt2.

  tok = tokenizers.get_or_train(workdir, "wordpiece", lambda: texts, vocab_size=8000)
  ids = tok.encode("some text")          # list[int], never with special tokens added
  tok.decode(ids), tok.vocab_size, tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.eos_id ...

Decisions:
- Training is deterministic: the same texts in the same order give byte-identical tokenizer.json files
  in any process. The package's WordPiece trainer is not (it numbers the "##x" continuation alphabet in
  hash-map order, and merge ties then break differently from run to run), so "wordpiece" trains the
  package's BPE with "##" continuations, numbering that alphabet up front in sorted order, and
  reads the learnt vocabulary into a WordPiece model (greedy longest-match-first, as BERT encodes),
  which is what the package's WordPiece trainer does internally.
- `encode` treats special-token strings in raw text ("[MASK]", "<|endoftext|>") as plain text, so
  data can never inject control tokens; builders in data/text.py add the special ids themselves.
- On a small corpus the learnt vocabulary can be smaller than `vocab_size` (no pair left to merge
  `min_frequency` times); `vocab_size` reports the real size, which is what a model must be built with.
- `get_or_train` caches the tokenizer as `<directory>/tokenizer.json` (a run's workdir), beside
  `tokenizer_spec.json` recording how it was trained; a later run reuses the file and refuses a spec
  that differs. Writes are atomic, and every host trains the same file, so hosts may race.
"""

import json
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from papers_jax.errors import ConfigError, DataError

KINDS = ("wordpiece", "byte_bpe", "translation_bpe")
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
GPT2_EOS = "<|endoftext|>"
TRANSLATION_SPECIALS = ("<pad>", "<s>", "</s>")
FILE_NAME = "tokenizer.json"
SPEC_NAME = "tokenizer_spec.json"

# Token strings recognised as each special role in a tokenizer, first match wins. Covers the three
# kinds above and the HF BERT, GPT-2, RoBERTa and T5 tokenizer.json files.
SPECIAL_ROLES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]",),
    "sep": ("[SEP]",),
    "mask": ("[MASK]", "<mask>"),
    "bos": ("<s>", "<bos>", GPT2_EOS),
    "eos": ("</s>", "<eos>", GPT2_EOS),
}


class Tokenizer:
  """A `tokenizers.Tokenizer` with plain-list encoding and named special ids.

  Special ids (`pad_id`, `unk_id`, `cls_id`, `sep_id`, `mask_id`, `bos_id`, `eos_id`) are found by
  their usual strings (SPECIAL_ROLES) and are None where the vocabulary has no such token; pass
  e.g. `eos="<|im_end|>"` to name a different string for a role.
  """

  def __init__(self, backend: tokenizers.Tokenizer, **special_tokens: str | None):
    unknown = set(special_tokens) - set(SPECIAL_ROLES)
    if unknown:
      raise ConfigError(f"Unknown special-token roles {sorted(unknown)}; use {sorted(SPECIAL_ROLES)}.")
    self.backend = backend
    self.backend.encode_special_tokens = True  # Raw text never yields control tokens.
    for role, candidates in SPECIAL_ROLES.items():
      if role in special_tokens:
        token = special_tokens[role]
        token_id = None if token is None else backend.token_to_id(token)
        if token is not None and token_id is None:
          raise ConfigError(f"Special token {token!r} (for {role}) is not in the tokenizer's vocabulary.")
      else:
        token_id = next((i for i in map(backend.token_to_id, candidates) if i is not None), None)
      setattr(self, f"{role}_id", token_id)

  @classmethod
  def from_file(cls, path: str, **special_tokens: str | None) -> "Tokenizer":
    if os.path.isdir(path):
      path = os.path.join(path, FILE_NAME)
    if not os.path.isfile(path):
      raise DataError(f"No tokenizer file at {path}. Give the path of a tokenizer.json (or of the directory "
                      "holding one), or train one with data.tokenizers.get_or_train.")
    try:
      backend = tokenizers.Tokenizer.from_file(path)
    except Exception as e:  # The package raises a bare Exception on malformed JSON.
      raise DataError(f"Cannot read tokenizer {path} ({e}). It must be a `tokenizers` tokenizer.json.") from e
    return cls(backend, **special_tokens)

  def save(self, path: str) -> None:
    """Writes tokenizer.json atomically (to a temporary name, then renamed)."""
    tmp = f"{path}.tmp{os.getpid()}"
    self.backend.save(tmp)
    os.replace(tmp, path)

  @property
  def vocab_size(self) -> int:
    return self.backend.get_vocab_size(with_added_tokens=True)

  @property
  def special_ids(self) -> tuple[int, ...]:
    """Sorted ids of every special role present (for excluding them from e.g. masking)."""
    ids = {getattr(self, f"{role}_id") for role in SPECIAL_ROLES}
    return tuple(sorted(i for i in ids if i is not None))

  def token_to_id(self, token: str) -> int | None:
    return self.backend.token_to_id(token)

  def id_to_token(self, token_id: int) -> str | None:
    return self.backend.id_to_token(int(token_id))

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, with no special tokens added."""
    return self.backend.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` over many texts, in parallel inside the package."""
    return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids, *, skip_special_tokens: bool = True, stop_at_eos: bool = False) -> str:
    """Text of `ids` (a list or an int array). `stop_at_eos` drops the first EOS and all after it
    (for decoder outputs, which run on past the end)."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if stop_at_eos and self.eos_id is not None and self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

  def decode_batch(self, ids_batch, **kwargs) -> list[str]:
    return [self.decode(ids, **kwargs) for ids in ids_batch]

  def __repr__(self) -> str:
    roles = ", ".join(f"{r}={getattr(self, f'{r}_id')}" for r in SPECIAL_ROLES if getattr(self, f"{r}_id") is not None)
    return f"Tokenizer(vocab_size={self.vocab_size}, {roles})"


def load(path: str, **special_tokens: str | None) -> Tokenizer:
  """A tokenizer.json from disk (a file, or a directory holding tokenizer.json)."""
  return Tokenizer.from_file(path, **special_tokens)


# --- Training ---


def _check_vocab_size(vocab_size: int, minimum: int) -> None:
  if not isinstance(vocab_size, int) or vocab_size < minimum:
    raise ConfigError(f"Tokenizer vocab_size must be an integer >= {minimum}, got {vocab_size!r}.")


def train_wordpiece(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2,
                    lowercase: bool = True) -> Tokenizer:
  """BERT's uncased WordPiece tokenizer learnt from `texts` (see the module docstring)."""
  _check_vocab_size(vocab_size, len(BERT_SPECIALS) + 1)
  texts = list(texts)
  normalizer = normalizers.BertNormalizer(lowercase=lowercase)
  alphabet = set()
  for text in texts:
    alphabet.update(normalizer.normalize_str(text))
  alphabet = sorted(c for c in alphabet if not c.isspace())
  # Numbering the "##x" continuations up front (as if special) makes the merge order reproducible.
  learner = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
  learner.normalizer = normalizer
  learner.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False, continuing_subword_prefix="##",
      special_tokens=list(BERT_SPECIALS) + [f"##{c}" for c in alphabet])
  learner.train_from_iterator(texts, trainer, length=len(texts))
  vocab = learner.get_vocab(with_added_tokens=False)

  backend = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
  backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
  backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  backend.decoder = decoders.WordPiece(prefix="##")
  backend.add_special_tokens(list(BERT_SPECIALS))
  # So that HF's BertTokenizerFast built from this file adds [CLS]/[SEP] the usual way.
  backend.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
  return Tokenizer(backend)


def _train_byte_bpe(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str],
                    min_frequency: int) -> tokenizers.Tokenizer:
  _check_vocab_size(vocab_size, len(special_tokens) + 256)
  texts = list(texts)
  backend = tokenizers.Tokenizer(models.BPE())
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  backend.post_processor = processors.ByteLevel(trim_offsets=False)
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
      special_tokens=list(special_tokens), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  backend.train_from_iterator(texts, trainer, length=len(texts))
  return backend


def train_byte_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> Tokenizer:
  """GPT-2's byte-level BPE learnt from `texts`; <|endoftext|> (id 0) is BOS and EOS. Lossless:
  decode(encode(text)) == text for any text."""
  return Tokenizer(_train_byte_bpe(texts, vocab_size, (GPT2_EOS,), min_frequency))


def train_translation_bpe(source_texts: Iterable[str], target_texts: Iterable[str], vocab_size: int, *,
                          min_frequency: int = 2) -> Tokenizer:
  """One byte-level BPE vocabulary for both languages (the paper's shared source/target vocabulary),
  learnt on the source texts followed by the target texts; <pad>=0, <s>=1 (BOS), </s>=2 (EOS)."""
  texts = list(source_texts) + list(target_texts)
  return Tokenizer(_train_byte_bpe(texts, vocab_size, TRANSLATION_SPECIALS, min_frequency))


def train(kind: str, texts: Callable[[], Iterable], vocab_size: int, **options) -> Tokenizer:
  """Trains a tokenizer of `kind` (KINDS). `texts()` yields strings, or (source, target) pairs for
  "translation_bpe"."""
  if kind == "wordpiece":
    return train_wordpiece(texts(), vocab_size, **options)
  if kind == "byte_bpe":
    return train_byte_bpe(texts(), vocab_size, **options)
  if kind == "translation_bpe":
    pairs = list(texts())
    return train_translation_bpe([s for s, _ in pairs], [t for _, t in pairs], vocab_size, **options)
  raise ConfigError(f"Unknown tokenizer kind (lm.tokenizer_kind) {kind!r}; use one of {KINDS} or give a tokenizer.json path.")


def get_or_train(directory: str | None, kind: str, texts: Callable[[], Iterable], vocab_size: int,
                 **options) -> Tokenizer:
  """The tokenizer cached in `directory` if there is one, else one trained now (and saved there).

  `texts` is a callable so that a cached tokenizer does not read the corpus. With directory None
  nothing is cached. A cached tokenizer trained with another spec is an error, not silently reused.
  """
  spec = {"kind": kind, "vocab_size": vocab_size, **options}
  if directory is None:
    return train(kind, texts, vocab_size, **options)
  path, spec_path = os.path.join(directory, FILE_NAME), os.path.join(directory, SPEC_NAME)
  if os.path.exists(path):
    if os.path.exists(spec_path):
      with open(spec_path) as f:
        saved = json.load(f)
      if saved != spec:
        raise ConfigError(
            f"{path} was trained with {saved}, but this run asks for {spec}. Use another workdir, or delete "
            f"{path} and {spec_path} to train a new tokenizer.")
    return load(path)
  tokenizer = train(kind, texts, vocab_size, **options)
  os.makedirs(directory, exist_ok=True)
  tmp = f"{spec_path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:  # The spec first: a tokenizer.json never exists without its spec.
    json.dump(spec, f, indent=1)
  os.replace(tmp, spec_path)
  tokenizer.save(path)
  return tokenizer
