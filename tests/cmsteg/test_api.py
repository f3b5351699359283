"""M3 sender/receiver through the caption: fitting corrections into a short caption, reading them."""

import dataclasses
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.cmsteg import api, correct
from stegjax.cmsteg import embed as m1
from stegjax.cmsteg import recipes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["astronaut", "coffee", "chelsea", "rocket"]


def _config():
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", "cmsteg.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config("smoke")


@pytest.fixture(scope="module")
def models():
  config = _config()
  vq_model = recipes.vq_model(config)
  vq_params = vq_model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))["params"]
  vq = recipes.Trained(vq_model, vq_params, {})
  grid = (4, 4)
  prior_model = recipes.prior_model(config, config.vq.model, grid, len(NAMES))
  pp = prior_model.init(
    jax.random.PRNGKey(1), jnp.zeros((1, 16), jnp.int32), jnp.zeros((1,), jnp.int32)
  )["params"]
  prior = recipes.Trained(
    prior_model,
    jax.tree.map(lambda x: 3 * x, pp),
    dict(grid=grid, class_names=NAMES, train_labels=[0, 1, 2, 3]),
  )
  cap_model = recipes.caption_model(config)
  cp = cap_model.init(
    jax.random.PRNGKey(2), jnp.zeros((1, 8), jnp.int32), jnp.zeros((1,), jnp.int32)
  )["params"]
  cap = recipes.Trained(cap_model, cp, {})
  cm = config.cmsteg
  cap_sampler = m1.Sampler(
    variant=cm.variant, precision=24, top_k=int(cm.caption_top_k), cfg_scale=1.0, temperature=1.0
  )
  return api.Models(
    vq, prior, cap, recipes.vq_codebook(vq), m1.Sampler.from_config(cm), cap_sampler, config
  )


def test_short_caption_keeps_the_earliest_corrections_and_reads_back(models):
  secret, counters, labels = b"s" * 32, np.arange(3), np.array([0, 1, 2])
  true, _ = m1.embed(
    models.prior,
    np.zeros(8, np.uint32),
    np.zeros((3, 1), np.uint8),
    np.zeros(3, np.int32),
    labels,
    counters,
    models.sampler,
  )
  wrong = (true + 1 + np.arange(16)) % models.codebook.shape[0]  # every token wrong
  length = 24  # far too short for 16 corrections of 16 bits each: forces the retry loop
  m3 = api.correction_captions(models, true, wrong, labels, labels, secret, counters, length)
  full = [
    correct.plan(true[i], wrong[i], r)
    for i, r in enumerate(m1.prior_ranks(models.prior, true, labels, models.sampler))
  ]
  assert np.all(m3["coded_bits"] <= m3["caption_bits"])
  got_labels, ranks, ok = api.read_corrections(
    models, m3["captions"], m3["topics"], secret, counters, length
  )
  assert ok.all()
  np.testing.assert_array_equal(got_labels, labels)
  for i, p in enumerate(m3["plans"]):
    assert len(p.positions) < len(full[i].positions)  # cut to fit ...
    assert p.positions == full[i].positions[: len(p.positions)]  # ... keeping the earliest
    np.testing.assert_array_equal(np.nonzero(ranks[i] >= 0)[0], p.positions)
    np.testing.assert_array_equal(ranks[i][list(p.positions)], p.ranks)


def test_class_label_is_uniform_and_does_not_follow_the_counter():
  from scipy import stats

  cands = [0, 1, 2, 3]
  labels = np.asarray([api.draw_label(b"s" * 32, c, cands) for c in range(2000)])
  assert labels.tolist() == [api.draw_label(b"s" * 32, c, cands) for c in range(2000)]
  counts = np.bincount(labels, minlength=4)
  assert stats.chisquare(counts).pvalue > 1e-3, counts
  # The old rule, candidates[counter % n], makes every next label the successor: a warden
  # sees the cycle. Drawn labels follow their predecessor's successor 1/n of the time.
  old = np.asarray([cands[c % 4] for c in range(2000)])
  succ = lambda l: np.mean(l[1:] == (l[:-1] + 1) % 4)
  assert succ(old) == 1.0
  assert stats.binomtest(int(succ(labels) * 1999), 1999, 0.25).pvalue > 1e-3
  other = np.asarray([api.draw_label(b"t" * 32, c, cands) for c in range(2000)])
  assert np.mean(other == labels) < 0.35  # another secret, another sequence


def test_a_short_carrier_names_the_missing_bits():
  from stegjax.stego import framing

  bits = framing.pack(b"sixteen byte msg", b"s" * 32, 7)
  _, why = api.unpack_or_reason(bits[:150], b"s" * 32, 7)
  hint = api.failure_hint(why, 7)
  assert hint and f"({len(bits) - 150} bits missing)" in hint and "counter 7" in hint
  _, why = api.unpack_or_reason(bits, b"x" * 32, 7)  # a wrong key is not "too short"
  assert api.failure_hint(why, 7) is None


def test_caption_read_under_the_wrong_topic_falls_back_to_the_right_one(models):
  # The fixture's caption head is zero-initialized (every topic gives uniform logits):
  # random weights make the topic matter, as it does for a trained captioner.
  leaves, tree = jax.tree.flatten(models.captioner.params)
  keys = jax.random.split(jax.random.PRNGKey(5), len(leaves))
  noisy = [x + 0.5 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
  cap = recipes.Trained(models.captioner.model, jax.tree.unflatten(tree, noisy), {})
  models = dataclasses.replace(models, captioner=cap)
  secret, counters, labels = b"s" * 32, np.arange(2), np.array([0, 1])
  true, _ = m1.embed(
    models.prior, np.zeros(8, np.uint32), np.zeros((2, 1), np.uint8), np.zeros(2, np.int32),
    labels, counters, models.sampler,
  )  # fmt: skip
  wrong = (true + 1) % models.codebook.shape[0]
  m3 = api.correction_captions(models, true, wrong, labels, labels, secret, counters, 32)
  other = api.topics_for_labels(models, np.array([2, 3]))  # the receiver inferred other classes
  _, _, ok = api.read_corrections(models, m3["captions"], other, secret, counters, 32)
  assert not ok.any()  # control: under the wrong topic nothing authenticates
  read = api.read_corrections_any_topic(models, m3["captions"], other, secret, counters, 32)
  assert read["ok"].all() and read["fallback"].all()
  np.testing.assert_array_equal(read["topics"], m3["topics"])
  np.testing.assert_array_equal(read["labels"], labels)
