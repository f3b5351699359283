"""The M3 carrier: a small image-conditioned character language model and its text codec.

The caption model is the same Llama-style decoder as the image prior
(``models.transformer.Transformer`` with a 1 x L grid, i.e. 1D rotary
positions), over characters, conditioned on a *topic*: the WordNet
lexicographer file (noun.animal, noun.food, ...) its training gloss came from
(corpus vendored in ``stegjax/data/captions``). The image feature both sides
compute is the image's class, inferred from the recovered tokens with the image
prior (``embed.infer_labels``), mapped to a topic; the report counts how often
sender and receiver disagree. Bits are hidden in the caption with the same
Discop choose function as the image (``embed.embed`` / ``embed.extract``).
"""

from __future__ import annotations

import functools
import gzip
import os

import numpy as np

ALPHABET = "\n abcdefghijklmnopqrstuvwxyz,.'-:"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
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
  bad = sorted({c for c in text if c not in _INDEX})
  if bad:
    raise ValueError(f"caption text has characters outside the model's alphabet: {bad}")
  return np.asarray([_INDEX[c] for c in text], np.int32)


def decode_text(ids) -> str:
  ids = np.asarray(ids).reshape(-1)
  if ids.size and (ids.min() < 0 or ids.max() >= len(ALPHABET)):
    raise ValueError(f"caption ids must lie in [0, {len(ALPHABET)})")
  return "".join(ALPHABET[i] for i in ids)


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
  """A deterministic batch of (topic int32[B], chars int32[B, length]) for ``step``.

  Each row is lines of one topic joined by newlines, cut to ``length``; topics are
  drawn uniformly so rare topics (the photos' ones) are learnt too.
  """
  corpus = load_corpus()
  names = sorted(corpus)
  rs = np.random.RandomState((seed * 1_000_003 + step) % (2**32))
  topic_ids = rs.randint(0, len(names), size=batch).astype(np.int32)
  rows = np.zeros((batch, length), np.int32)
  for i, t in enumerate(topic_ids):
    lines = corpus[names[t]]
    text = ""
    while len(text) < length:
      text += lines[rs.randint(len(lines))] + "\n"
    rows[i] = encode_text(text[:length])
  return topic_ids, rows
