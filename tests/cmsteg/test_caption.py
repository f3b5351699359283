"""Word-level captions: exact re-tokenization, corpus words only, held-out lines apart."""

import numpy as np
import pytest

from stegjax import errors
from stegjax.cmsteg import caption

SIZE = 4096


@pytest.fixture(scope="module")
def vocab():
  return caption.vocabulary(SIZE)


def test_any_id_sequence_re_tokenizes_to_the_same_ids(vocab):
  rng = np.random.default_rng(0)
  for n in (1, 2, 7, 64, 300):
    for _ in range(20):
      ids = rng.integers(0, vocab.size, n).astype(np.int32)
      ids[rng.random(n) < 0.2] = rng.integers(0, 4)  # many line breaks and punctuation marks
      text = vocab.decode(ids)
      np.testing.assert_array_equal(vocab.encode(text), ids)


def test_corpus_windows_round_trip_and_are_deterministic(vocab):
  t1, r1 = caption.word_windows(SIZE, 80, 4, seed=3, step=5)
  t2, r2 = caption.word_windows(SIZE, 80, 4, seed=3, step=5)
  np.testing.assert_array_equal(r1, r2)
  np.testing.assert_array_equal(t1, t2)
  for row in r1:
    np.testing.assert_array_equal(vocab.encode(vocab.decode(row)), row)
  assert "\n" in vocab.decode(r1[0])


def test_every_token_is_a_corpus_word(vocab):
  corpus_words = {
    t
    for lines in caption.load_corpus().values()
    for line in lines
    for t in caption.split_tokens(line)
  }
  assert vocab.size == SIZE
  assert set(vocab.tokens) - {"\n"} <= corpus_words
  assert len(set(vocab.tokens)) == vocab.size
  assert vocab.tokens[:4] == ("\n", ",", ".", ":")


def test_encode_refuses_text_the_sender_did_not_write(vocab):
  good = vocab.decode(vocab.encode("cat: a small domestic animal"))
  assert good == "cat: a small domestic animal"
  for bad in ("cat:  a small", "Cat: a small", "cat : a small", "cat: a smal1", " cat"):
    with pytest.raises(errors.InputError):
      vocab.encode(bad)
  with pytest.raises(errors.InputError, match="outside the vocabulary"):
    vocab.encode("cat: a xylophonically")
  with pytest.raises(errors.InputError):
    vocab.decode([SIZE])


def test_heldout_lines_are_apart_and_in_vocabulary(vocab):
  train = {tuple(x) for v in caption.corpus_ids(SIZE, "train").values() for x in v}
  held = [tuple(x) for v in caption.corpus_ids(SIZE, "heldout").values() for x in v]
  assert len(held) > 100
  # Held-out lines are other lines of the corpus (a line repeated under two topics may recur).
  assert np.mean([h in train for h in held]) < 0.1
  stats = caption.corpus_stats(SIZE)
  assert stats["train_lines"] > 10 * stats["heldout_lines"] > 0
  assert stats["topics_with_lines"] == len(caption.topics())


def test_topics_of_photo_classes():
  names = caption.topics()
  assert names[caption.topic_of_class("chelsea")] == "noun.animal"
  assert names[caption.topic_of_class("some_user_folder")] == caption.DEFAULT_TOPIC
  assert names[caption.topic_of_class("noun.food")] == "noun.food"
