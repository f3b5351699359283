"""M3 correction coding: (d1, d2) round trip, threshold drops, ordering, eq. (16)."""

import math

import numpy as np
import pytest

from stegjax.cmsteg import correct

V, D, T = 40, 4, 64


@pytest.fixture(scope="module")
def codebook():
  rs = np.random.RandomState(0)
  cb = rs.randn(V, D).astype(np.float32)
  return cb / np.linalg.norm(cb, axis=1, keepdims=True)


def _brute_order(cb, wrong, allowed):
  d = [(float(np.sum((cb[i] - cb[wrong]) ** 2)), i) for i in range(V) if allowed[i]]
  return [i for _, i in sorted(d)]


def test_distance_order_matches_brute_force(codebook):
  rs = np.random.RandomState(1)
  allowed = rs.rand(5, V) < 0.5
  wrong = rs.randint(0, V, 5)
  order = np.asarray(correct.distance_order(codebook, wrong, allowed))
  for i in range(5):
    k = int(allowed[i].sum())
    assert order[i, :k].tolist() == _brute_order(codebook, wrong[i], allowed[i])
    assert set(order[i, k:].tolist()) == set(np.nonzero(~allowed[i])[0].tolist())


def test_ties_break_by_token_id():
  cb = np.zeros((6, 2), np.float32)  # all entries equidistant
  order = np.asarray(correct.distance_order(cb, np.int32(3), np.ones(6, bool)))
  assert order.tolist() == [0, 1, 2, 3, 4, 5]


def _case(codebook, errors, seed=2):
  rs = np.random.RandomState(seed)
  true = rs.randint(0, V, T)
  rec = true.copy()
  for p in errors:
    rec[p] = (true[p] + 1 + rs.randint(V - 1)) % V
  allowed = np.ones((T, V), bool)
  return true, rec, allowed


def _apply(rec, positions, ranks, codebook, allowed):
  out = rec.copy()
  for p, r in zip(positions, ranks):
    out[p] = np.asarray(correct.distance_order(codebook, rec[p], allowed[p]))[r]
  return out


def test_round_trip_fixes_every_error(codebook):
  true, rec, allowed = _case(codebook, [0, 5, 6, 40, 63])
  plan = correct.plan(true, rec, allowed, codebook)
  assert plan.positions == (0, 5, 6, 40, 63) and plan.dropped == () and plan.num_errors == 5
  bits = correct.to_bits(plan, T)
  assert len(bits) == correct.coded_bits(5, T)
  enc = correct.encrypt(bits, b"k", 7)
  assert not np.array_equal(enc, bits)
  pos, ranks = correct.from_bits(correct.decrypt(enc, b"k", 7), T)
  assert tuple(pos) == plan.positions and tuple(ranks) == plan.ranks
  np.testing.assert_array_equal(_apply(rec, pos, ranks, codebook, allowed), true)


def test_relative_position_threshold_drops(codebook):
  # l1 = 3: gaps of 8 or more cannot be coded; the later error is dropped.
  true, rec, allowed = _case(codebook, [2, 4, 20, 23])
  plan = correct.plan(true, rec, allowed, codebook, l1=3, l2=8)
  assert plan.positions == (2, 4) and plan.dropped == (20, 23)
  pos, ranks = correct.from_bits(correct.to_bits(plan, T, 3, 8), T, 3, 8)
  assert pos == [2, 4]


def test_rank_threshold_and_outside_topk_drop(codebook):
  true, rec, allowed = _case(codebook, [3, 9])
  allowed[3, true[3]] = False  # correct token not samplable: cannot be coded
  order = np.asarray(correct.distance_order(codebook, rec[9], allowed[9])).tolist()
  rank9 = order.index(true[9])
  plan = correct.plan(
    true, rec, allowed, codebook, l1=8, l2=max(1, math.ceil(math.log2(rank9 + 1)))
  )
  assert 3 in plan.dropped
  assert plan.positions == (9,)
  tight = correct.plan(true, rec, allowed, codebook, l1=8, l2=1)
  assert (9 in tight.dropped) == (rank9 >= 2)


def test_max_corrections_keeps_earliest(codebook):
  true, rec, allowed = _case(codebook, [1, 2, 3, 4])
  plan = correct.plan(true, rec, allowed, codebook, max_corrections=2)
  assert plan.positions == (1, 2) and plan.dropped == (3, 4)


def test_truncated_bits_raise(codebook):
  true, rec, allowed = _case(codebook, [1, 2, 3])
  bits = correct.to_bits(correct.plan(true, rec, allowed, codebook), T)
  with pytest.raises(ValueError, match="truncated"):
    correct.from_bits(bits[:-3], T)


def test_tau_is_exact_for_this_coding():
  for payload in range(0, 400, 7):
    n = correct.tau(payload, T)
    assert correct.coded_bits(n, T) <= payload or n == 0
    assert correct.coded_bits(n + 1, T) > payload


def test_eq16_as_printed():
  # tau = floor(1 + (rho*l - floor(log2(h*w)) + l2) / (l1 + l2)): 576 tokens, 200 tokens at 2 bits.
  assert correct.tau_paper(2.0, 200, 24, 24) == math.floor(1 + (400 - 9 + 8) / 16)
  # The exact count for the same payload differs only by the first entry's cost.
  assert abs(correct.tau(400, 576) - correct.tau_paper(2.0, 200, 24, 24)) <= 2


def _old_rule_parses(bits, secret, counter, lb, num_classes):
  """What read_corrections accepted before the authenticator: any payload that parses."""
  plain = correct.decrypt(bits, secret, counter)
  if int("".join(map(str, plain[:lb])), 2) >= num_classes:
    return False
  try:
    correct.from_bits(plain[lb:], T)
    return True
  except ValueError:
    return False


def test_sealed_payload_round_trips_and_random_payloads_never_authenticate(codebook):
  secret, lb, tb, n_cls = b"k" * 32, 2, 32, 4
  rs = np.random.RandomState(1)
  true = rs.randint(0, V, T)
  rec = true.copy()
  rec[[3, 10, 40]] = (true[[3, 10, 40]] + 1) % V
  p = correct.plan(true, rec, np.ones((T, V), bool), codebook)
  sealed = correct.seal(3, p, secret, 9, T, lb, tb)
  assert len(sealed) == correct.sealed_bits(3, T, lb, tb)
  extra = np.concatenate([sealed, rs.randint(0, 2, 50).astype(np.uint8)])  # caption carries more
  label, pos, rk = correct.open_sealed(extra, secret, 9, T, lb, n_cls, tb)
  assert (label, tuple(pos), tuple(rk)) == (3, p.positions, p.ranks)
  for bad in (
    lambda b: correct.open_sealed(b, secret, 10, T, lb, n_cls, tb),  # another counter
    lambda b: correct.open_sealed(b, b"x" * 32, 9, T, lb, n_cls, tb),  # another key
    lambda b: correct.open_sealed(np.r_[b[:5], 1 - b[5], b[6:]], secret, 9, T, lb, n_cls, tb),
  ):
    with pytest.raises(ValueError):
      bad(extra)
  # Positive control: random payloads. The old rule (parse = accept) takes some of them;
  # with the authenticator none may pass (expected 20000 * 2**-32 false accepts).
  old = new = 0
  for i in range(20000):
    bits = rs.randint(0, 2, 120).astype(np.uint8)
    old += _old_rule_parses(bits, secret, i, lb, n_cls)
    try:
      correct.open_sealed(bits, secret, i, T, lb, n_cls, tb)
      new += 1
    except ValueError:
      pass
  assert old >= 20 and new == 0, (old, new)
