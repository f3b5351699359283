"""M1 inside the AR loop: round trip, plain sampling, batching, in-loop M3 corrections."""

import json

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


def _coded_ranks(prior, sent, rec):
  true = sent["tokens"]
  order = m1.prior_ranks(prior, true, sent["labels"], S)
  ranks = np.full(true.shape, -1, np.int32)
  for i in range(B):
    plan = correct.plan(true[i], rec[i], order[i])
    pos, rk = correct.from_bits(correct.to_bits(plan, 16), 16)
    ranks[i, pos] = rk
  return ranks


def _damage(true, where, seed):
  rs = np.random.RandomState(seed)
  rec = true.copy()
  for i, p in where:
    rec[i, p] = (true[i, p] + 1 + rs.randint(V - 1)) % V
  return rec


def test_corrections_inside_the_loop(prior, sent):
  true = sent["tokens"]
  rec = _damage(true, [(0, 2), (0, 9), (2, 15)], 3)
  ranks = _coded_ranks(prior, sent, rec)
  fixed, bits, ok = m1.extract(
    prior, None, sent["key"], rec, sent["labels"], sent["nonces"], S, ranks=ranks
  )
  np.testing.assert_array_equal(fixed, true)
  for i in range(B):
    np.testing.assert_array_equal(bits[i][: sent["n"][i]], sent["bits"][i, : sent["n"][i]])
  # Without the corrections the damaged sequences do not give the message back.
  _, raw, _ = m1.extract(prior, None, sent["key"], rec, sent["labels"], sent["nonces"], S)
  assert not np.array_equal(raw[0][: sent["n"][0]], sent["bits"][0, : sent["n"][0]])


def test_prior_ranks_are_the_replay_order(prior, sent):
  # The rank of each true token among its step's candidates, ordered by frequency, then id.
  order = m1.prior_ranks(prior, sent["tokens"], sent["labels"], S)
  logits = transformer.logits_for_tokens(
    prior.model, {"params": prior.params}, jnp.asarray(sent["labels"]),
    jnp.asarray(sent["tokens"]), cfg_scale=S.cfg_scale, top_k=S.top_k,
  )  # fmt: skip
  freqs = np.asarray(m1._freqs(logits.reshape(-1, V), S)).reshape(B, 16, V)
  for i in range(B):
    for t in range(16):
      f, tok = freqs[i, t], sent["tokens"][i, t]
      want = int(np.sum((f > f[tok]) | ((f == f[tok]) & (np.arange(V) < tok))))
      assert order[i, t] == want, (i, t)
  assert order.min() >= 0 and order.max() < S.top_k


def test_corrections_hold_through_a_channel_they_were_not_made_for(prior, sent):
  # Corrections planned for one channel's errors, applied to tokens another channel damaged
  # elsewhere or not at all: coded positions get their true token whatever was received.
  true = sent["tokens"]
  ranks = _coded_ranks(prior, sent, _damage(true, [(0, 2), (0, 9), (1, 4), (2, 15)], 3))
  other = _damage(true, [(0, 9), (1, 4)], 8)  # a subset, and with other wrong tokens
  untouched = true.copy()  # the channel changed nothing
  for rec in (other, untouched):
    fixed, bits, _ = m1.extract(
      prior, None, sent["key"], rec, sent["labels"], sent["nonces"], S, ranks=ranks
    )
    np.testing.assert_array_equal(fixed, true)
    for i in range(B):
      np.testing.assert_array_equal(bits[i][: sent["n"][i]], sent["bits"][i, : sent["n"][i]])


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


def test_receiver_with_another_batch_size_reads_the_same_bits(prior, sent):
  # The sender embeds one message alone; the receiver replays 17 counters around it.
  toks1, n1 = m1.embed(
    prior, sent["key"], sent["bits"][:1], np.array([120]), sent["labels"][:1], [5], S
  )
  nonces = np.arange(17) + 100
  nonces[8] = 5
  _, bits, ok = m1.extract(
    prior, None, sent["key"], np.repeat(toks1, 17, 0), np.repeat(sent["labels"][:1], 17), nonces, S
  )
  assert ok[8].all()
  np.testing.assert_array_equal(bits[8][: n1[0]], sent["bits"][0, : n1[0]])
  # Every pass runs in the same fixed geometry, so the rows' results do not depend on
  # how many rows were asked for.
  a = m1.allowed_sets(prior, np.repeat(toks1, 17, 0), np.repeat(sent["labels"][:1], 17), S)
  b = m1.allowed_sets(prior, toks1, sent["labels"][:1], S)
  np.testing.assert_array_equal(a[8], b[0])


_SENDER_ON_TWO_DEVICES = """
import json
import jax, jax.numpy as jnp, numpy as np
from stegjax.cmsteg import embed as m1
from stegjax.cmsteg.recipes import Trained
from stegjax.models import transformer
from stegjax.stego import framing
assert jax.device_count() == 2
model = transformer.Transformer(
  vocab_size=48, num_classes=4, dim=32, n_layer=2, n_head=2, multiple_of=16, grid=(4, 4)
)
params = model.init(
  jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32), jnp.zeros((1,), jnp.int32)
)["params"]
prior = Trained(model, jax.tree.map(lambda x: x * 3.0, params), {})
s = m1.Sampler(variant="recursive", precision=24, top_k=24, cfg_scale=1.5)
bits = np.random.RandomState(0).randint(0, 2, (3, 120)).astype(np.uint8)
toks, n = m1.embed(
  prior, framing.sampling_key(b"secret"), bits[:1], np.array([120]), [0], [5], s
)
print(json.dumps({"tokens": toks.tolist(), "n": n.tolist()}))
"""


def test_receiver_with_another_device_count_reads_the_same_bits(prior, sent, python_subprocess):
  out = json.loads(python_subprocess(_SENDER_ON_TWO_DEVICES, n_devices=2).strip().splitlines()[-1])
  toks, n = np.asarray(out["tokens"]), out["n"][0]
  np.testing.assert_array_equal(toks[0], sent["tokens"][0])  # the same draw as here
  _, bits, ok = m1.extract(prior, None, sent["key"], toks, sent["labels"][:1], [5], S)
  assert ok.all()
  np.testing.assert_array_equal(bits[0][:n], sent["bits"][0, :n])
