"""Fine-tuning data (data/text_tasks.py): the bundled tasks' splits, answers and fixed-shape examples."""

import numpy as np
import pytest

from papers_jax.data import text_tasks, translation
from papers_jax.tasks import lm


@pytest.fixture(scope="module")
def tokenizer():
  return lm._trained_tokenizer("wordpiece", 512, "python_docs", "train", None)


def test_topic_splits_are_disjoint_and_every_topic_is_in_both():
  train, validation = text_tasks.python_docs_topics("train"), text_tasks.python_docs_topics("validation")
  assert (len(train), len(validation)) == (1773, 437)
  assert not {s for s, _, _ in train} & {s for s, _, _ in validation}
  assert {l for *_, l in train} == {l for *_, l in validation} == set(range(len(text_tasks.TOPICS)))


def test_number_spans_find_each_number_and_what_it_counts():
  en = translation.english_number
  sentence = f"On Monday {en(302)} old men say that the woman has bought {en(21)} red apples."
  spans = text_tasks.number_spans(sentence)
  assert [(sentence[s:e], q) for s, e, q in spans] == [("three hundred and two", "How many old men?"),
                                                       ("twenty-one", "How many red apples?")]
  questions = text_tasks.number_questions("validation")
  assert len(questions) == 176 and len(text_tasks.number_questions("train")) == 3530
  for question, context, (s, e) in questions:
    assert len(text_tasks.number_spans(context)) >= 2
    assert context[s:e].lower() in {en(n) for n in range(2, 10000)}
  first = np.mean([text_tasks.first_number_span(c) == a for _, c, a in questions])
  assert 0.3 < first < 0.7  # the question decides which number: the first is right about half the time


def test_span_examples_point_at_the_answer_tokens(tokenizer):
  questions = text_tasks.number_questions("validation")[:20]
  source = text_tasks.SpanSource(questions, tokenizer, max_seq_len=48)
  assert len(source) + source.dropped == 20 and len(source) >= 15
  for i in range(len(source)):
    row = source[i]
    question, context, (s, e) = source.examples[i]
    ids, types = row["input_ids"], row["token_type_ids"]
    n = int(row["attention_mask"].sum())
    q_len = len(tokenizer.encode(question))
    assert ids[0] == tokenizer.cls_id and ids[q_len + 1] == tokenizer.sep_id and ids[n - 1] == tokenizer.sep_id
    assert (types[:q_len + 2] == 0).all() and (types[q_len + 2:n] == 1).all() and (types[n:] == 0).all()
    assert row["context_mask"].sum() == n - q_len - 3 and row["context_mask"][row["start_position"]]
    answer = tokenizer.decode(ids[row["start_position"]:row["end_position"] + 1])
    assert answer.replace(" - ", "-") == context[s:e].lower()


def test_classification_examples_single_and_pair(tokenizer):
  source = text_tasks.ClassificationSource([("a b c", None, 0), ("a b c", "d e", 2)], tokenizer, max_seq_len=7)
  assert source.num_labels == 3
  one, two = source[0], source[1]
  a, b = tokenizer.encode("a b c"), tokenizer.encode("d e")
  np.testing.assert_array_equal(one["input_ids"][:5], [tokenizer.cls_id, *a, tokenizer.sep_id])
  assert one["attention_mask"].sum() == 5 and one["token_type_ids"].sum() == 0 and one["label"] == 0
  # 3 + 2 tokens do not fit 7 - 3: the longer side loses its last token.
  np.testing.assert_array_equal(two["input_ids"], [tokenizer.cls_id, *a[:2], tokenizer.sep_id, *b, tokenizer.sep_id])
  np.testing.assert_array_equal(two["token_type_ids"], [0, 0, 0, 0, 1, 1, 1])
