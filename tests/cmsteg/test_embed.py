"""M1 inside the AR loop: round trip, plain sampling, batching, in-loop M3 corrections."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.cmsteg import correct
from stegjax.cmsteg import embed as m1
from stegjax.models import transformer
from stegjax.stego import discop, framing
from stegjax.cmsteg.recipes import Trained

V, GRID, B = 48, (4, 4), 3
S = m1.Sampler(variant="recursive", precision=24, top_k=24, cfg_scale=1.5)


@pytest.fixture(scope="module")
def prior():
  model = transformer.Transformer(
    vocab_size=V, num_classes=4, dim=32, n_layer=2, n_head=2, multiple_of=16, grid=GRID
  )
  params = model.init(
    jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32), jnp.zeros((1,), jnp.int32)
  )["params"]
  # Sharpen the random logits so distributions are peaked, like a trained prior's.
  params = jax.tree.map(lambda x: x * 3.0, params)
  return Trained(model, params, {})


@pytest.fixture(scope="module")
def sent(prior):
  rs = np.random.RandomState(0)
  bits = rs.randint(0, 2, (B, 120)).astype(np.uint8)
  key = framing.sampling_key(b"secret")
  labels, nonces = np.array([0, 1, 2]), np.array([5, 6, 7])
  toks, n = m1.embed(prior, key, bits, np.full(B, 120), labels, nonces, S)
  return dict(bits=bits, key=key, labels=labels, nonces=nonces, tokens=toks, n=n)


def test_round_trip(prior, sent):
  assert sent["tokens"].shape == (B, 16) and np.all(sent["n"] > 0)
  toks, bits, ok = m1.extract(
    prior, None, sent["key"], sent["tokens"], sent["labels"], sent["nonces"], S
  )
  assert ok.all()
  np.testing.assert_array_equal(toks, sent["tokens"])
  for i in range(B):
    np.testing.assert_array_equal(bits[i][: sent["n"][i]], sent["bits"][i, : sent["n"][i]])


def test_tokens_stay_in_topk(prior, sent):
  allowed = m1.allowed_sets(prior, sent["tokens"], sent["labels"], S)
  assert allowed.sum(-1).max() == S.top_k
  assert np.take_along_axis(allowed, sent["tokens"][..., None], -1).all()


def test_zero_message_is_plain_sampling(prior, sent):
  zeros, _ = m1.embed(
    prior,
    sent["key"],
    np.zeros((B, 1), np.uint8),
    np.zeros(B, np.int32),
    sent["labels"],
    sent["nonces"],
    S,
  )
  # Plain sampling with the same randomness, step by step on the same distributions.
  logits = transformer.logits_for_tokens(
    prior.model,
    {"params": prior.params},
    jnp.asarray(sent["labels"]),
    jnp.asarray(zeros),
    cfg_scale=S.cfg_scale,
    top_k=S.top_k,
  )
  freqs = m1._freqs(logits.reshape(-1, V), S).reshape(B, 16, V)
  plain = discop.sample(
    freqs, jnp.asarray(sent["key"]), jnp.asarray(sent["nonces"]), S.variant, support=S.top_k
  )
  np.testing.assert_array_equal(np.asarray(plain), zeros)


def test_batch_equals_alone(prior, sent):
  toks1, n1 = m1.embed(
    prior,
    sent["key"],
    sent["bits"][1:2],
    np.array([120]),
    sent["labels"][1:2],
    sent["nonces"][1:2],
    S,
  )
  np.testing.assert_array_equal(toks1[0], sent["tokens"][1])
  assert n1[0] == sent["n"][1]


def test_corrections_inside_the_loop(prior, sent):
  true = sent["tokens"]
  rs = np.random.RandomState(3)
  rec = true.copy()
  for i, p in [(0, 2), (0, 9), (2, 15)]:
    rec[i, p] = (true[i, p] + 1 + rs.randint(V - 1)) % V
  codebook = rs.randn(V, 4).astype(np.float32)
  allowed = m1.allowed_sets(prior, true, sent["labels"], S)
  ranks = np.full(true.shape, -1, np.int32)
  for i in range(B):
    plan = correct.plan(true[i], rec[i], allowed[i], codebook)
    pos, rk = correct.from_bits(correct.to_bits(plan, 16), 16)
    ranks[i, pos] = rk
  fixed, bits, ok = m1.extract(
    prior, codebook, sent["key"], rec, sent["labels"], sent["nonces"], S, ranks=ranks
  )
  np.testing.assert_array_equal(fixed, true)
  for i in range(B):
    np.testing.assert_array_equal(bits[i][: sent["n"][i]], sent["bits"][i, : sent["n"][i]])
  # Without the corrections the damaged sequences do not give the message back.
  _, raw, _ = m1.extract(prior, None, sent["key"], rec, sent["labels"], sent["nonces"], S)
  assert not np.array_equal(raw[0][: sent["n"][0]], sent["bits"][0, : sent["n"][0]])


def test_wrong_key_reads_other_bits(prior, sent):
  _, bits, _ = m1.extract(
    prior, None, framing.sampling_key(b"other"), sent["tokens"], sent["labels"], sent["nonces"], S
  )
  n = min(len(bits[0]), sent["n"][0])
  assert np.mean(bits[0][:n] == sent["bits"][0, :n]) < 0.8


def test_infer_labels_is_the_maximum_likelihood_class(prior):
  labels = np.array([0, 1, 2, 3] * 2)
  toks, _ = transformer.generate(
    prior.model,
    {"params": prior.params},
    jnp.asarray(labels),
    jax.random.PRNGKey(1),
    cfg_scale=3.0,
    top_k=8,
  )
  toks = np.asarray(toks)
  got = m1.infer_labels(prior, toks, [0, 1, 2, 3])
  # Brute force: total log-likelihood of each sequence under each class, one at a time.
  for i in range(len(toks)):
    ll = []
    for c in range(4):
      logits = prior.model.apply(
        {"params": prior.params}, jnp.asarray(toks[i : i + 1]), jnp.asarray([c])
      )
      logp = np.asarray(jax.nn.log_softmax(logits[0], -1))
      ll.append(logp[np.arange(16), toks[i]].sum())
    assert got[i] == int(np.argmax(ll))
