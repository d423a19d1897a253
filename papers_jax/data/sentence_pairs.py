"""Generated sentences for sentence-embedding demos (SimCSE, tasks/simcse.py): descriptions of a thing by four
attributes (size, colour, kind, place), NLI-style triples built from them, and held-out pairs with a graded
similarity. Offline and deterministic; no NLI or STS set is bundled, so these stand in for SNLI/MNLI and STS-B.

Sentences: `describe(attrs, template, rng)` writes the four attributes into one of TRAIN_TEMPLATES (training) or
HELD_OUT_TEMPLATES (evaluation only: new wordings of the same words), each value in one of its two synonyms
drawn per sentence.

`nli_triples(n, seed)`: (premise, entailment, contradiction) like SNLI's, used as SimCSE's supervised
(anchor, positive, hard negative): the premise is a full description; the entailment states two or three of its
attributes in a hypothesis wording (HYPOTHESES: true of every scene the premise describes); the contradiction
is the same hypothesis with one stated attribute replaced by another value (false, given the premise).

`similarity_pairs(n, seed)`: (sentence a, sentence b, score) with both sentences in held-out wordings and
score = the number of attributes the two descriptions share (0-4, drawn uniformly), the gold similarity that
Spearman's ρ is measured against (as STS-B's 0-5 scores).

`training_sentences(n, seed)`: random descriptions in the training wordings (SimCSE's unsupervised input).
"""

import numpy as np

# Each value has two wordings (synonyms), drawn independently for every sentence, so that two sentences can
# share an attribute without sharing its word: the grade is about meaning, not word overlap.
ATTRIBUTES = {
    "size": (("small", "little"), ("big", "large"), ("tiny", "wee"), ("huge", "giant"), ("tall", "high"),
             ("short", "low")),
    "colour": (("red", "crimson"), ("blue", "azure"), ("green", "emerald"), ("yellow", "golden"), ("black", "dark"),
               ("white", "pale"), ("brown", "tan"), ("grey", "silver")),
    "kind": (("cat", "kitty"), ("dog", "hound"), ("bird", "fowl"), ("horse", "steed"), ("fish", "trout"),
             ("car", "automobile"), ("boat", "ship"), ("ball", "sphere")),
    "place": (("on the hill", "on the hilltop"), ("in the garden", "in the yard"), ("by the river", "by the stream"),
              ("near the house", "near the home"), ("under the tree", "beneath the oak"),
              ("on the road", "on the street")),
}
SLOTS = tuple(ATTRIBUTES)
TRAIN_TEMPLATES = (
    "the {size} {colour} {kind} is {place}.",
    "a {colour} {kind}, {size}, is {place}.",
    "{place}, there is a {size} {colour} {kind}.",
    "i saw a {size} {colour} {kind} {place}.",
    "we found the {colour} {kind} {place} and it was {size}.",
)
HELD_OUT_TEMPLATES = (
    "{place} stands a {colour} {kind} that is {size}.",
    "look at the {size} {kind} {place}; it is {colour}.",
    "there is one {colour} {kind} {place}, quite {size}.",
)
# Hypotheses stating a subset of the attributes (the slots each one names).
HYPOTHESES = (
    ("there is a {colour} {kind}.", ("colour", "kind")),
    ("a {kind} is {place}.", ("kind", "place")),
    ("the {kind} is {size}.", ("kind", "size")),
    ("something {colour} is {place}.", ("colour", "place")),
    ("the {size} {kind} is {colour}.", ("size", "kind", "colour")),
)


def random_attributes(rng: np.random.Generator) -> dict:
  """slot → the index of its value."""
  return {slot: int(rng.integers(len(values))) for slot, values in ATTRIBUTES.items()}


def describe(attrs: dict, template: str, rng: np.random.Generator) -> str:
  """The template filled with one of the two wordings of each value, drawn uniformly."""
  return template.format(**{slot: ATTRIBUTES[slot][v][rng.integers(2)] for slot, v in attrs.items()})


def _other(slot: str, value: int, rng: np.random.Generator) -> int:
  return int((value + 1 + rng.integers(len(ATTRIBUTES[slot]) - 1)) % len(ATTRIBUTES[slot]))


def training_sentences(n: int, seed: int = 0) -> list[str]:
  rng = np.random.default_rng((seed, 0))
  return [describe(random_attributes(rng), TRAIN_TEMPLATES[rng.integers(len(TRAIN_TEMPLATES))], rng)
          for _ in range(n)]


def nli_triples(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
  rng = np.random.default_rng((seed, 1))
  out = []
  for _ in range(n):
    attrs = random_attributes(rng)
    premise = describe(attrs, TRAIN_TEMPLATES[rng.integers(len(TRAIN_TEMPLATES))], rng)
    hypothesis, named = HYPOTHESES[rng.integers(len(HYPOTHESES))]
    changed = named[rng.integers(len(named))]
    contradiction = attrs | {changed: _other(changed, attrs[changed], rng)}
    out.append((premise, describe(attrs, hypothesis, rng), describe(contradiction, hypothesis, rng)))
  return out


def similarity_pairs(n: int, seed: int = 0, templates=HELD_OUT_TEMPLATES) -> list[tuple[str, str, float]]:
  """`templates`: the wordings (two different ones per pair); the training ones only for diagnosis."""
  rng = np.random.default_rng((seed, 2))
  out = []
  for _ in range(n):
    a = random_attributes(rng)
    shared = rng.permutation(len(SLOTS))[:rng.integers(len(SLOTS) + 1)]
    b = {slot: a[slot] if i in shared else _other(slot, a[slot], rng) for i, slot in enumerate(SLOTS)}
    ta, tb = rng.choice(len(templates), size=2, replace=False)
    out.append((describe(a, templates[ta], rng), describe(b, templates[tb], rng),
                float(len(shared))))
  return out


def _encoded(tokenizer, text: str, max_seq_len: int, ids: dict) -> tuple[np.ndarray, np.ndarray]:
  from papers_jax.data.text_tasks import pair_example
  example = pair_example(tokenizer.encode(text), None, max_seq_len=max_seq_len, **ids)
  return example["input_ids"], example["attention_mask"]


class SentenceSource:
  """Tuples of sentences (one: unsupervised; premise, entailment, contradiction: supervised; a, b, score:
  evaluation) as [CLS] sentence [SEP] rows: `<name>_ids` int32 (T,), `<name>_mask` bool (T,) for each name of
  `names`, and `score` float32 () when the tuples carry one."""

  def __init__(self, rows, tokenizer, *, max_seq_len: int, names: tuple[str, ...]):
    self.rows, self.tokenizer, self.max_seq_len, self.names = rows, tokenizer, max_seq_len, names
    self._ids = {"cls_id": tokenizer.cls_id, "sep_id": tokenizer.sep_id, "pad_id": tokenizer.pad_id}

  def __len__(self):
    return len(self.rows)

  def __getitem__(self, i) -> dict:
    row = self.rows[int(i)]
    row = (row,) if isinstance(row, str) else row
    out = {}
    for name, text in zip(self.names, row):
      out[f"{name}_ids"], out[f"{name}_mask"] = _encoded(self.tokenizer, text, self.max_seq_len, self._ids)
    if len(row) > len(self.names):
      out["score"] = np.float32(row[len(self.names)])
    return out
