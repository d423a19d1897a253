"""Text data: tokenizers, causal-LM packing, BERT pretraining examples, the generated translation task,
TFDS text sources, and the BLEU / bits-per-byte evaluators. Host-side numpy only; no JAX compilation."""

import math

import numpy as np
import pytest

from papers_jax.data import text, tokenizers, translation
from papers_jax.errors import ConfigError, DataError
from papers_jax.evaluators import text as text_eval

VOCAB = 2000


@pytest.fixture(scope="module")
def train_docs():
  return text.python_docs("train")


@pytest.fixture(scope="module")
def validation_docs():
  return text.python_docs("validation")


@pytest.fixture(scope="module")
def wordpiece(train_docs):
  return tokenizers.train_wordpiece(train_docs, VOCAB)


@pytest.fixture(scope="module")
def byte_bpe(train_docs):
  return tokenizers.train_byte_bpe(train_docs, VOCAB)


# --- Sources ---


def test_python_docs_split():
  from pydoc_data import topics
  train, validation = text.python_docs("train"), text.python_docs("validation")
  names = sorted(topics.topics)
  assert validation == [topics.topics[n] for n in names[6::10]]
  assert sorted(train + validation) == sorted(topics.topics.values())
  assert len(validation) == len(names[6::10]) and not set(train) & set(validation)
  with pytest.raises(DataError, match="validation"):
    text.python_docs("test")


def test_tfds_text_sources(tmp_path):
  import tensorflow_datasets as tfds

  with pytest.raises(DataError) as error:
    text.TfdsTranslation("wmt14_translate/de-en", "train", str(tmp_path))
  assert f"tfds build wmt14_translate/de-en --data_dir={tmp_path} --file_format=array_record" in str(error.value)
  with pytest.raises(DataError, match="Apache Beam"):
    text.TfdsText("wikipedia/20230601.en", "train", str(tmp_path))
  assert not list(tmp_path.iterdir())  # Nothing was downloaded or prepared.

  class PapersJaxTinyText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
          {"text": tfds.features.Text(), "en": tfds.features.Text(), "de": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(6)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {"text": f"Dokument {i} über Äpfel.", "en": f"{i} apples", "de": f"{i} Äpfel"}

  PapersJaxTinyText(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  documents = text.TfdsText("papers_jax_tiny_text", "train", str(tmp_path))
  assert sorted(documents[i] for i in range(len(documents))) == [f"Dokument {i} über Äpfel." for i in range(6)]
  pairs = text.TfdsTranslation("papers_jax_tiny_text", "train[:50%]", str(tmp_path))
  assert len(pairs) == 3 and all(pairs[i][1] == pairs[i][0].replace("apples", "Äpfel") for i in range(3))
  with pytest.raises(DataError, match="Available splits"):
    text.TfdsText("papers_jax_tiny_text", "validation", str(tmp_path))
  with pytest.raises(DataError, match="no feature"):
    text.TfdsText("papers_jax_tiny_text", "train", str(tmp_path), feature="body")


# --- Tokenizers ---


def test_wordpiece(wordpiece):
  tok = wordpiece
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
  assert tok.bos_id is None and tok.eos_id is None and tok.special_ids == (0, 1, 2, 3, 4)
  assert tok.vocab_size == VOCAB
  ids = tok.encode("Assignment statements are used to (re)bind names!")
  assert tok.decode(ids) == "assignment statements are used to ( re ) bind names!"  # Uncased; punctuation split.
  assert any(tok.id_to_token(i).startswith("##") for i in tok.encode("unbinding rebinds"))
  # Special-token text in the data stays text.
  assert tok.mask_id not in tok.encode("a [MASK] b")
  assert tok.encode_batch(["a b", "c"]) == [tok.encode("a b"), tok.encode("c")]
  assert tok.decode([tok.cls_id, *ids[:2], tok.sep_id], skip_special_tokens=False).startswith("[CLS] assignment")


def test_byte_bpe_is_lossless(byte_bpe):
  tok = byte_bpe
  assert tok.eos_id == tok.bos_id == 0 and tok.pad_id is None and tok.unk_id is None and tok.vocab_size == VOCAB
  sample = "def f(x):\n    return x ** 2  # Äpfel, 東京, \t<|endoftext|>\n\n"
  ids = tok.encode(sample)
  assert tok.eos_id not in ids and tok.decode(ids) == sample
  assert tok.decode(np.asarray(ids + [tok.eos_id] + ids), stop_at_eos=True) == sample


def test_training_is_deterministic(train_docs, wordpiece, byte_bpe):
  # The package's own WordPiece trainer fails this: it numbers "##x" tokens in hash-map order.
  assert tokenizers.train_wordpiece(train_docs, VOCAB).backend.to_str() == wordpiece.backend.to_str()
  assert tokenizers.train_byte_bpe(train_docs, VOCAB).backend.to_str() == byte_bpe.backend.to_str()


def test_get_or_train_caches_and_loads(tmp_path, train_docs):
  docs = train_docs[:10]
  first = tokenizers.get_or_train(str(tmp_path), "byte_bpe", lambda: docs, 500)
  assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "tokenizer_spec.json").exists()

  def no_training():
    raise AssertionError("a cached tokenizer must not read the corpus")

  again = tokenizers.get_or_train(str(tmp_path), "byte_bpe", no_training, 500)
  assert again.backend.to_str() == first.backend.to_str() and again.eos_id == first.eos_id
  loaded = tokenizers.load(str(tmp_path / "tokenizer.json"))
  assert loaded.encode(docs[0]) == first.encode(docs[0]) and tokenizers.load(str(tmp_path)).vocab_size == 500
  with pytest.raises(ConfigError, match="vocab_size"):
    tokenizers.get_or_train(str(tmp_path), "byte_bpe", no_training, 600)
  with pytest.raises(DataError, match="No tokenizer file"):
    tokenizers.load(str(tmp_path / "missing.json"))
  with pytest.raises(ConfigError, match="Unknown tokenizer kind"):
    tokenizers.get_or_train(None, "sentencepiece", lambda: docs, 500)


@pytest.fixture(scope="module")
def translation_tokenizer():
  pairs = translation.number_sentences("train")[:4000]
  return tokenizers.train_translation_bpe([s for s, _ in pairs], [t for _, t in pairs], 800)


def test_translation_tokenizer_is_shared(translation_tokenizer):
  tok = translation_tokenizer
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, None)
  for source, target in translation.number_sentences("validation")[:50]:
    assert tok.decode(tok.encode(source)) == source and tok.decode(tok.encode(target)) == target
  shared = set(tok.encode("Am Montag kauft der Mann drei Äpfel.")) & set(tok.encode("On Monday the man buys three."))
  assert shared  # One vocabulary: both languages use e.g. the "." token.


# --- Causal LM packing ---


def _synthetic_documents(rng, count, seq_len):
  lengths = rng.integers(1, 3 * seq_len, count)
  lengths[:3] = (seq_len, seq_len + 1, 2 * seq_len - 1)  # Exactly a row, and the first cuts.
  return [np.arange(1, n + 1, dtype=np.int32) + 10_000 * d for d, n in enumerate(lengths)]


@pytest.mark.parametrize("split_documents", [False, True])
def test_packing_invariants(split_documents):
  seq_len, pad = 16, -1
  docs = _synthetic_documents(np.random.default_rng(0), 60, seq_len)
  rows = text.pack_documents(docs, seq_len, split_documents=split_documents, pad_id=pad)
  f = text.causal_lm_features(rows["tokens"], rows["segment_ids"], rows["positions"])
  tokens, segments, positions = f["tokens"], f["segment_ids"], f["positions"]
  assert all(a.dtype == np.int32 and a.shape == tokens.shape for a in (tokens, segments, positions))

  targets = {}
  for r in range(len(tokens)):
    real = segments[r] > 0
    n = int(real.sum())
    assert real[:n].all() and not real[n:].any()  # Padding only at the end of a row...
    assert (tokens[r, n:] == pad).all() and not f["attention_mask"][r, n:].any() and not f["loss_mask"][r, n:].any()
    assert (np.diff(segments[r, :n]) >= 0).all() and (np.diff(segments[r, :n]) <= 1).all() and segments[r, 0] == 1
    for s in range(1, segments[r].max() + 1):
      piece = np.flatnonzero(segments[r] == s)
      assert (positions[r, piece] == np.arange(len(piece))).all()
      assert not f["loss_mask"][r, piece[0]] and f["loss_mask"][r, piece[1:]].all()
      values = tokens[r, piece]
      doc = values[0] // 10_000
      assert (np.diff(values) == 1).all()  # A piece is a contiguous run of its document.
      for v in values[1:]:
        targets.setdefault(doc, []).append(v)
    if split_documents and r < len(tokens) - 1:
      assert n >= seq_len - 1  # Rows are full (bar one slot that could not hold a target).
  # Every token but each document's first is a target exactly once.
  assert sorted(targets) == [d for d in range(len(docs)) if len(docs[d]) > 1]
  for d, values in targets.items():
    assert values == list(docs[d][1:])
  if not split_documents:  # A document that fits a row is never cut.
    for d, doc in enumerate(docs):
      if len(doc) <= seq_len:
        rows_with_doc = {r for r in range(len(tokens)) if ((tokens[r] // 10_000 == d) & (segments[r] > 0)).any()}
        assert len(rows_with_doc) == 1
  assert (tokens.size - (segments > 0).sum()) / tokens.size < (0.5 if not split_documents else 0.05)


def test_causal_lm_source(tmp_path, byte_bpe, wordpiece, validation_docs):
  seq_len = 64
  source = text.CausalLMSource.from_documents(validation_docs, byte_bpe, seq_len, seed=3)
  assert source.num_bytes == text_eval.utf8_bytes(validation_docs)
  ids = [byte_bpe.encode(d) for d in validation_docs]
  assert source.num_targets == sum(len(i) + 1 for i in ids)  # Tokens and EOS of every document.
  # Decoding the rows piece by piece (dropping the context token of continuations) gives back the documents.
  recovered, current = [], []
  for i in range(len(source)):
    example = source[i]
    assert set(example) == {"tokens", "segment_ids", "positions", "attention_mask", "loss_mask"}
    for s in range(1, example["segment_ids"].max() + 1):
      # Drop a document's BOS, or the repeated context token that starts a continuation.
      current += example["tokens"][example["segment_ids"] == s].tolist()[1:]
      if current and current[-1] == byte_bpe.eos_id:
        recovered.append(byte_bpe.decode(current[:-1]))
        current = []
  order = np.random.default_rng(3).permutation(len(validation_docs))
  assert recovered == [validation_docs[i] for i in order]
  # Deterministic per seed; the memory-mapped copy reads the same rows.
  again = text.CausalLMSource.from_documents(validation_docs, byte_bpe, seq_len, seed=3)
  assert (again.tokens == source.tokens).all()
  other = text.CausalLMSource.from_documents(validation_docs, byte_bpe, seq_len, seed=4)
  assert other.tokens.shape != source.tokens.shape or (other.tokens != source.tokens).any()
  written = text.CausalLMSource.write(str(tmp_path), [validation_docs[i] for i in order], byte_bpe, seq_len)
  assert len(written) == len(source) and written.num_bytes == source.num_bytes
  for i in (0, len(source) - 1):
    assert all((written[i][k] == source[i][k]).all() for k in source[i])
  with pytest.raises(ConfigError, match="end-of-text"):
    text.CausalLMSource.from_documents(validation_docs, wordpiece, 32)


# --- BERT pretraining examples ---

MAX_SEQ, MAX_PRED = 64, 12


@pytest.fixture(scope="module")
def bert_source(wordpiece, train_docs):
  return text.BertPretrainingSource(train_docs, wordpiece, max_seq_len=MAX_SEQ, max_predictions=MAX_PRED,
                                    dupe_factor=2, seed=0)


def test_split_sentences():
  doc = ("Title\n*****\n\nFirst sentence. Second one!  Third?\nStill third.\n\n"
         "   >>> x = 1. \n   >>> print(x)\n\nends here e.g. lower")
  assert text.split_sentences(doc) == [
      "Title", "First sentence.", "Second one!", "Third?", "Still third.", ">>> x = 1. >>> print(x)",
      "ends here e.g. lower"]


def test_bert_examples_structure(bert_source, wordpiece, train_docs):
  tok = wordpiece
  for i in range(0, len(bert_source), 7):
    a, b, is_random_next = bert_source.instances[i]
    ex = bert_source[i]
    assert {k: v.dtype for k, v in ex.items()} == {
        "input_ids": np.int32, "token_type_ids": np.int32, "attention_mask": np.bool_, "masked_positions": np.int32,
        "masked_labels": np.int32, "masked_weights": np.float32, "next_sentence_label": np.int32}
    n = len(a) + len(b) + 3
    assert len(a) >= 1 and len(b) >= 1 and n <= MAX_SEQ
    original = np.asarray([tok.cls_id, *a, tok.sep_id, *b, tok.sep_id])
    assert (ex["attention_mask"] == (np.arange(MAX_SEQ) < n)).all() and (ex["input_ids"][n:] == tok.pad_id).all()
    assert (ex["token_type_ids"] == np.r_[np.zeros(len(a) + 2), np.ones(len(b) + 1), np.zeros(MAX_SEQ - n)]).all()
    assert int(ex["next_sentence_label"]) == int(is_random_next)
    count = int(ex["masked_weights"].sum())
    assert count == min(MAX_PRED, max(1, round(0.15 * (n - 3))))
    positions = ex["masked_positions"][:count]
    assert (np.diff(positions) > 0).all() and (ex["masked_weights"][count:] == 0).all()
    specials = {0, len(a) + 1, n - 1}
    assert not specials & set(positions.tolist()) and (positions < n).all()  # Never [CLS], [SEP] or padding.
    assert (ex["masked_labels"][:count] == original[positions]).all()
    untouched = np.setdiff1d(np.arange(n), positions)
    assert (ex["input_ids"][untouched] == original[untouched]).all()
  # Fixed by (seed, index): a second source with the same seed gives the same pairs and every field of every
  # example read back equal, in any order; another seed gives other pairs and other masks.
  kwargs = dict(max_seq_len=MAX_SEQ, max_predictions=MAX_PRED, dupe_factor=2)
  again = text.BertPretrainingSource(train_docs, tok, seed=0, **kwargs)
  assert len(again) == len(bert_source) and again.instances == bert_source.instances
  for i in [len(bert_source) - 1, 5, 0, 5]:
    first, second = bert_source[i], again[i]
    assert first.keys() == second.keys()
    for key in first:
      np.testing.assert_array_equal(first[key], second[key], err_msg=f"example {i}, {key}")
  other = text.BertPretrainingSource(train_docs, tok, seed=1, **kwargs)
  assert other.instances != bert_source.instances
  differs = [any(not np.array_equal(bert_source[i][k], other[i][k]) for k in ("input_ids", "masked_positions"))
             for i in range(20)]
  assert sum(differs) >= 18, differs


def _binomial_ok(k: int, n: int, p: float, z: float = 4.5) -> bool:
  return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p))


def test_bert_next_sentence_and_masking_statistics(bert_source, wordpiece, train_docs):
  n = len(bert_source)
  assert n > 2000
  labels = np.array([inst[2] for inst in bert_source.instances])
  assert _binomial_ok(int(labels.sum()), n, 0.5)
  # A B that follows A comes from the same document as A.
  streams = [np.concatenate([np.asarray(wordpiece.encode(s), np.int32) for s in text.split_sentences(d)]).tobytes()
             for d in train_docs]
  for a, b, is_random_next in bert_source.instances[:300]:
    if not is_random_next:
      a_bytes, b_bytes = np.asarray(a, np.int32).tobytes(), np.asarray(b, np.int32).tobytes()
      assert any(a_bytes in s and b_bytes in s for s in streams)

  v, mask_id = wordpiece.vocab_size, wordpiece.mask_id
  outcomes = np.zeros(3, int)  # [MASK], unchanged, another token
  for i in range(n):
    ex = bert_source[i]
    chosen = ex["masked_weights"] > 0
    inputs = ex["input_ids"][ex["masked_positions"][chosen]]
    labels_i = ex["masked_labels"][chosen]
    other = (inputs != mask_id) & (inputs != labels_i)
    outcomes += [(inputs == mask_id).sum(), (inputs == labels_i).sum(), other.sum()]
  total = outcomes.sum()
  # 80% [MASK], 10% a uniform random token (which may be [MASK] or the original itself), 10% unchanged.
  for k, p in zip(outcomes, (0.8 + 0.1 / v, 0.1 + 0.1 / v, 0.1 * (v - 2) / v)):
    assert _binomial_ok(int(k), int(total), p), (outcomes, total)


# --- Translation ---


def test_numbers():
  known = {2: ("two", "zwei"), 16: ("sixteen", "sechzehn"), 17: ("seventeen", "siebzehn"), 30: ("thirty", "dreißig"),
           21: ("twenty-one", "einundzwanzig"), 77: ("seventy-seven", "siebenundsiebzig"),
           100: ("one hundred", "einhundert"), 105: ("one hundred and five", "einhundertfünf"),
           342: ("three hundred and forty-two", "dreihundertzweiundvierzig"), 1000: ("one thousand", "eintausend"),
           2005: ("two thousand and five", "zweitausendfünf"),
           1100: ("one thousand one hundred", "eintausendeinhundert"),
           9999: ("nine thousand nine hundred and ninety-nine", "neuntausendneunhundertneunundneunzig")}
  for n, (en, de) in known.items():
    assert (translation.english_number(n), translation.german_number(n)) == (en, de)
  assert not translation.attributive_number(101) and translation.attributive_number(21)


def test_known_sentence_pairs():
  t = translation
  assert t.sentence(t.PRONOUNS[0], "buy", t.noun_phrase("apple", "number", "acc", "red", 342)) == (
      "I buy three hundred and forty-two red apples.", "Ich kaufe dreihundertzweiundvierzig rote Äpfel.")
  old_man, new_book = t.noun_phrase("man", "definite", "nom", "old"), t.noun_phrase("book", "definite", "acc", "new")
  assert t.sentence(old_man, "read", new_book, tense="perfect", day="Monday") == (
      "On Monday the old man has read the new book.", "Am Montag hat der alte Mann das neue Buch gelesen.")
  children, small_dog = t.noun_phrase("child", "definite_pl", "nom"), t.noun_phrase("dog", "indefinite", "acc", "small")
  woman = t.noun_phrase("woman", "definite", "nom")
  assert t.sentence(children, "find", small_dog, tense="perfect", speaker=woman) == (
      "The woman says that the children have found a small dog.",
      "Die Frau sagt, dass die Kinder einen kleinen Hund gefunden haben.")
  assert t.sentence(t.PRONOUNS[3], "see", t.noun_phrase("boy", "definite", "acc"), day="Friday",
                    speaker=t.PRONOUNS[2]) == (
      "On Friday she says that we see the boy.", "Am Freitag sagt sie, dass wir den Jungen sehen.")
  assert t.noun_phrase("book", "indefinite", "acc", "old")[:2] == ("an old book", "ein altes Buch")


def test_translation_splits():
  splits = {s: translation.number_sentences(s) for s in translation.SPLIT_SIZES}
  assert {s: len(p) for s, p in splits.items()} == translation.SPLIT_SIZES
  for side in (0, 1):
    sets = [{p[side] for p in pairs} for pairs in splits.values()]
    assert sum(map(len, sets)) == len(set().union(*sets)) == sum(translation.SPLIT_SIZES.values())
  translation._all_splits.cache_clear()  # Regenerate from scratch: the same pairs.
  assert translation.number_sentences("test") == splits["test"]
  assert translation.number_sentences("test", seed=1) != splits["test"]
  for en, de in splits["validation"][:200]:
    assert en[0].isupper() and de[0].isupper() and en.endswith(".") and de.endswith(".")


def test_seq2seq_examples(translation_tokenizer):
  ex = text.seq2seq_example([7, 8, 9], [5, 6], max_source_len=5, max_target_len=4, bos_id=1, eos_id=2, pad_id=0)
  assert ex["source_ids"].tolist() == [7, 8, 9, 2, 0] and ex["source_mask"].tolist() == [1, 1, 1, 1, 0]
  assert ex["decoder_input_ids"].tolist() == [1, 5, 6, 0] and ex["target_ids"].tolist() == [5, 6, 2, 0]
  assert ex["target_mask"].tolist() == [1, 1, 1, 0] and ex["source_ids"].dtype == np.int32
  cut = text.seq2seq_example([7, 8, 9], [5, 6, 4], max_source_len=3, max_target_len=3, bos_id=1, eos_id=2)
  assert cut["source_ids"].tolist() == [7, 8, 9] and cut["target_ids"].tolist() == [5, 6, 4]  # EOS cut off.

  tok = translation_tokenizer
  pairs = translation.number_sentences("test")[:20]
  source = text.TranslationSource(pairs, tok, max_source_len=48, max_target_len=40)
  for i in range(len(source)):
    ex = source[i]
    n = int(ex["target_mask"].sum())
    assert tok.decode(ex["source_ids"]) == pairs[i][0] and tok.decode(ex["target_ids"][:n - 1]) == pairs[i][1]
    assert ex["target_ids"][n - 1] == tok.eos_id and ex["decoder_input_ids"][0] == tok.bos_id
    assert (ex["decoder_input_ids"][1:n] == ex["target_ids"][:n - 1]).all()


# --- Evaluators ---


def test_bleu():
  refs = ["the quick brown fox jumps over", "a cat sat on the mat today"]
  score, signature = text_eval.corpus_bleu(refs, refs)
  assert score == pytest.approx(100.0) and "tok:13a" in signature and "nrefs:1" in signature
  # One wrong word in six: n-gram precisions 5/6, 4/5, 3/4, 2/3, no brevity penalty.
  score, _ = text_eval.corpus_bleu(["the quick brown fox jumps high"], [refs[0]])
  assert score == pytest.approx(100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)
  # All n-grams right but one word short: brevity penalty exp(1 - 6/5).
  score, _ = text_eval.corpus_bleu(["the quick brown fox jumps"], [refs[0]])
  assert score == pytest.approx(100 * math.exp(1 - 6 / 5))
  # Corpus level: counts add up over sentences before the geometric mean.
  score, _ = text_eval.corpus_bleu(["the quick brown fox jumps high", "the quick brown fox jumps"], [refs[0]] * 2)
  assert score == pytest.approx(100 * math.exp(1 - 12 / 11) * (10 / 11 * 8 / 9 * 6 / 7 * 4 / 5) ** 0.25)
  with pytest.raises(ValueError, match="reference"):
    text_eval.corpus_bleu(["a"], ["a", "b"])


def test_bits_per_byte_and_accuracy():
  # A uniform model over bytes, one token per byte: 8 bits per byte.
  text_ = "héllo wörld"
  n = text_eval.utf8_bytes(text_)
  assert n == 13 and text_eval.bits_per_byte(n * math.log(256), n) == pytest.approx(8.0)
  assert text_eval.perplexity(5 * math.log(7), 5) == pytest.approx(7.0)
  logits = np.array([[[0.1, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
  correct, total = text_eval.masked_accuracy_counts(logits, np.array([[1, 2, 2]]), np.array([[1.0, 1.0, 0.0]]))
  assert (float(correct), float(total)) == (1.0, 2.0)
