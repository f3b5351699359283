"""The M3 carrier: a small topic-conditioned language model over *words*, and its codec.

The caption model is the same Llama-style decoder as the image prior
(``models.transformer.Transformer`` with a 1 x L grid, i.e. 1D rotary positions), over a
word vocabulary of the vendored WordNet 3.0 glosses (``stegjax/data/captions``): the
``size`` most frequent words of the training lines, the punctuation ``, . :`` and a line
break. Only gloss lines made entirely of vocabulary words are kept, so every caption the
model draws is a sequence of corpus words. Text <-> ids is exact both ways: the receiver
re-tokenizes the caption to the very ids the sender drew (``Vocabulary.encode`` refuses any
text that would not), which Discop extraction needs.

The model is conditioned on a *topic*: the WordNet lexicographer file (noun.animal,
noun.food, ...) of its training line. Both sides derive it from the image's class (inferred
from the recovered tokens with the image prior, ``embed.infer_labels``), mapped to a topic.
Bits are hidden in the caption with the same Discop choose function as the image.

One line in ``HELDOUT_EVERY`` (by a hash of its text) is held out for the perplexity the
report gives; the vocabulary is counted on the training lines only.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import os
import re
import zlib

import numpy as np

from stegjax import errors

NEWLINE = "\n"
PUNCTUATION = (",", ".", ":")
_TOKEN = re.compile(r"[a-z][a-z'\-]*|[,.:]|\n")
DEFAULT_VOCAB = 8192
VOCAB_SIZE = DEFAULT_VOCAB  # the caption model's vocabulary (every size: the codec is shared)
HELDOUT_EVERY = 20
CORPUS = os.path.join(
  os.path.dirname(os.path.dirname(__file__)), "data", "captions", "wordnet_glosses.txt.gz"
)

# What each bundled photo shows, as a WordNet topic. Classes of users' folders map to
# DEFAULT_TOPIC unless their name is itself a topic.
PHOTO_TOPICS = {
  "astronaut": "noun.person",
  "coffee": "noun.food",
  "chelsea": "noun.animal",
  "rocket": "noun.artifact",
  "hubble_deep_field": "noun.object",
  "retina": "noun.body",
  "immunohistochemistry": "noun.body",
  "stereo_motorcycle": "noun.artifact",
  "china": "noun.artifact",
  "flower": "noun.plant",
  "grace_hopper": "noun.person",
}
DEFAULT_TOPIC = "noun.artifact"


def encode_text(text: str) -> np.ndarray:
  """The caption model's ids of a caption's text (``errors.InputError`` unless exact)."""
  return vocabulary(VOCAB_SIZE).encode(text)


def decode_text(ids) -> str:
  return vocabulary(VOCAB_SIZE).decode(ids)


@functools.lru_cache(maxsize=1)
def load_corpus() -> dict[str, list[str]]:
  """topic -> list of 'lemma: gloss' lines (WordNet 3.0; see LICENSE.wordnet beside it)."""
  if not os.path.exists(CORPUS):
    raise FileNotFoundError(
      f"caption corpus missing: {CORPUS} (run scripts/make_caption_corpus.py)"
    )
  out: dict[str, list[str]] = {}
  with gzip.open(CORPUS, "rt") as f:
    for row in f:
      topic, _, text = row.rstrip("\n").partition("\t")
      if text:
        out.setdefault(topic, []).append(text)
  return out


def topics() -> list[str]:
  return sorted(load_corpus())


def topic_of_class(class_name: str) -> int:
  names = topics()
  t = PHOTO_TOPICS.get(class_name, class_name if class_name in names else DEFAULT_TOPIC)
  return names.index(t)


def training_windows(
  length: int, batch: int, seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
  """A deterministic training batch of (topic int32[B], ids int32[B, length]) for ``step``."""
  return word_windows(VOCAB_SIZE, length, batch, seed, step)


# ----------------------------------------------------------------------------- words


def split_tokens(text: str) -> list[str]:
  """Words, punctuation marks and line breaks of ``text``, in order."""
  return _TOKEN.findall(text)


def join_tokens(tokens) -> str:
  """Inverse of ``split_tokens``: a space before each word except at a line's start."""
  out = []
  for i, tok in enumerate(tokens):
    if i and tok not in PUNCTUATION and tok != NEWLINE and tokens[i - 1] != NEWLINE:
      out.append(" ")
    out.append(tok)
  return "".join(out)


def _exact(text: str) -> bool:
  return join_tokens(split_tokens(text)) == text


def _is_heldout(line: str) -> bool:
  return zlib.crc32(line.encode()) % HELDOUT_EVERY == 0


@functools.lru_cache(maxsize=1)
def _lines() -> dict[str, dict[str, list[list[str]]]]:
  """split -> topic -> tokenized lines (only lines whose text re-tokenizes exactly)."""
  out = {"train": {}, "heldout": {}}
  for topic, lines in load_corpus().items():
    for line in lines:
      if _exact(line):
        split = "heldout" if _is_heldout(line) else "train"
        out[split].setdefault(topic, []).append(split_tokens(line))
  return out


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Caption tokens: the line break, the punctuation, then words by training frequency."""

  tokens: tuple[str, ...]

  @functools.cached_property
  def index(self) -> dict[str, int]:
    return {t: i for i, t in enumerate(self.tokens)}

  @property
  def size(self) -> int:
    return len(self.tokens)

  def encode(self, text: str) -> np.ndarray:
    """int32 ids of a caption; InputError unless the text is exactly a caption's text."""
    toks = split_tokens(text)
    if join_tokens(toks) != text:
      raise errors.InputError(
        "caption text is not one this vocabulary writes (spacing, case or characters differ "
        "from what the sender wrote); pass the caption file unchanged"
      )
    unknown = sorted({t for t in toks if t not in self.index})
    if unknown:
      raise errors.InputError(f"caption has words outside the vocabulary: {unknown[:5]}")
    return np.asarray([self.index[t] for t in toks], np.int32)

  def decode(self, ids) -> str:
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.size):
      raise errors.InputError(f"caption ids must lie in [0, {self.size})")
    return join_tokens([self.tokens[i] for i in ids])

  def words(self, ids) -> list[str]:
    return [self.tokens[i] for i in np.asarray(ids).reshape(-1)]


@functools.lru_cache(maxsize=4)
def vocabulary(size: int = DEFAULT_VOCAB) -> Vocabulary:
  """The ``size`` caption tokens (ties in frequency broken alphabetically)."""
  fixed = (NEWLINE,) + PUNCTUATION
  if size <= len(fixed):
    raise errors.ConfigError(f"caption vocabulary size must exceed {len(fixed)}, got {size}")
  counts = collections.Counter(
    t for lines in _lines()["train"].values() for line in lines for t in line
  )
  words = sorted((w for w in counts if w not in fixed), key=lambda w: (-counts[w], w))
  return Vocabulary(fixed + tuple(words[: size - len(fixed)]))


@functools.lru_cache(maxsize=8)
def corpus_ids(size: int, split: str = "train") -> dict[int, list[np.ndarray]]:
  """topic id -> id arrays of the ``split`` lines made only of vocabulary words."""
  vocab, names = vocabulary(size), topics()
  out: dict[int, list[np.ndarray]] = {}
  for topic, lines in _lines()[split].items():
    kept = [
      np.asarray([vocab.index[t] for t in line], np.int32)
      for line in lines
      if all(t in vocab.index for t in line)
    ]
    if kept:
      out[names.index(topic)] = kept
  return out


@functools.lru_cache(maxsize=1)
def corpus_words() -> frozenset[str]:
  """Every token of every corpus line (the check that captions are made of corpus words)."""
  return frozenset(
    t for lines in load_corpus().values() for line in lines for t in split_tokens(line)
  )


def corpus_stats(size: int) -> dict:
  """How much of the corpus a vocabulary of ``size`` keeps (for the report)."""
  all_lines = sum(len(v) for split in _lines().values() for v in split.values())
  stats = {"vocabulary": size, "exact_lines": all_lines}
  for split in ("train", "heldout"):
    ids = corpus_ids(size, split)
    stats[f"{split}_lines"] = sum(len(v) for v in ids.values())
    stats[f"{split}_tokens"] = sum(len(x) for v in ids.values() for x in v)
  stats["topics_with_lines"] = len(corpus_ids(size, "train"))
  return stats


def word_windows(
  size: int, length: int, batch: int, seed: int, step: int, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
  """A deterministic batch of (topic int32[B], ids int32[B, length]) for ``step``.

  Each row is lines of one topic, each followed by a line break, cut to ``length``; topics
  (among those with lines) are drawn uniformly, so the photos' rarer topics are learnt too.
  """
  corpus = corpus_ids(size, split)
  present = np.asarray(sorted(corpus), np.int32)
  rs = np.random.RandomState((seed * 1_000_003 + step) % (2**32))
  topic_ids = present[rs.randint(0, len(present), size=batch)]
  rows = np.zeros((batch, length), np.int32)
  for i, t in enumerate(topic_ids):
    lines, got, n = corpus[int(t)], [], 0
    while n < length:
      line = lines[rs.randint(len(lines))]
      got += [line, np.zeros(1, np.int32)]  # id 0 is the line break
      n += len(line) + 1
    rows[i] = np.concatenate(got)[:length]
  return topic_ids.astype(np.int32), rows


def heldout_perplexity(model, params, size: int, length: int, batch: int = 16, batches: int = 4):
  """exp(mean NLL per token) of the caption LM on held-out lines (every token scored).

  ``model``/``params``: the caption transformer with a ``length``-token grid. Windows are
  drawn like training windows but from the held-out lines, under their own topics.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from stegjax.models import transformer  # pylint: disable=g-import-not-at-top

  total, count = 0.0, 0
  for step in range(batches):
    topic, ids = word_windows(size, length, batch, seed=12345, step=step, split="heldout")
    logits = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(topic), train=False)
    nll = -transformer.token_log_probs(jnp.asarray(logits), jnp.asarray(ids))
    total += float(jnp.sum(nll))
    count += ids.size
  return float(np.exp(total / count))
