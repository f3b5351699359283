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
