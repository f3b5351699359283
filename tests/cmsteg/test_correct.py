"""M3 correction coding: (d1, d2) round trip, threshold drops, several channels, eq. (16)."""

import math

import numpy as np
import pytest

from stegjax.cmsteg import correct

V, T = 40, 64


def _case(errors, seed=2):
  """True tokens, a recovered copy wrong at ``errors``, and the prior's order at each step."""
  rs = np.random.RandomState(seed)
  order = np.stack([rs.permutation(V) for _ in range(T)])  # the prior's ranking per step
  true = rs.randint(0, V, T)
  rec = true.copy()
  for p in errors:
    rec[p] = (true[p] + 1 + rs.randint(V - 1)) % V
  ranks = np.asarray([int(np.nonzero(order[p] == true[p])[0][0]) for p in range(T)])
  return true, rec, ranks, order


def _apply(rec, positions, ranks, order):
  out = rec.copy()
  for p, r in zip(positions, ranks):
    out[p] = order[p][r]  # what the receiver's replay does: the token of that rank
  return out


def test_round_trip_fixes_every_error():
  true, rec, ranks, order = _case([0, 5, 6, 40, 63])
  plan = correct.plan(true, rec, ranks)
  assert plan.positions == (0, 5, 6, 40, 63) and plan.dropped == () and plan.num_errors == 5
  bits = correct.to_bits(plan, T)
  assert len(bits) == correct.coded_bits(5, T)
  enc = correct.encrypt(bits, b"k", 7)
  assert not np.array_equal(enc, bits)
  pos, rk = correct.from_bits(correct.decrypt(enc, b"k", 7), T)
  assert tuple(pos) == plan.positions and tuple(rk) == plan.ranks
  np.testing.assert_array_equal(_apply(rec, pos, rk, order), true)
  # The corrections do not depend on what was received: through a channel that damaged
  # only some of these tokens (or none), they still give the true tokens back.
  partly = true.copy()
  partly[[5, 40]] = (true[[5, 40]] + 3) % V  # other wrong tokens, at two of the positions
  for other in (true.copy(), partly):
    np.testing.assert_array_equal(_apply(other, pos, rk, order), true)


def test_several_channels_union_with_the_prepared_one_first():
  true, rec_a, ranks, _ = _case([3, 9, 20])
  _, rec_b, _, _ = _case([9, 30, 50], seed=2)  # same truth (same seed), other errors
  rec_b[[3, 20]] = true[[3, 20]]
  rec_b[[30, 50]] = (true[[30, 50]] + 1) % V
  rec_c = true.copy()
  rec_c[50] = (true[50] + 2) % V
  plan = correct.plan(true, np.stack([rec_a, rec_b, rec_c]), ranks)
  assert plan.positions == (3, 9, 20, 30, 50) and plan.num_errors == 5
  # Short of room: the prepared channel's errors, then the one two others share (50).
  short = correct.plan(true, np.stack([rec_a, rec_b, rec_c]), ranks, max_corrections=4)
  assert short.positions == (3, 9, 20, 50) and short.dropped == (30,)


def test_horizon_drops_errors_past_the_message():
  true, rec, ranks, _ = _case([1, 7, 30, 60])
  plan = correct.plan(true, rec, ranks, horizon=30)
  assert plan.positions == (1, 7) and plan.dropped == (30, 60)


def test_relative_position_threshold_drops():
  # l1 = 3: gaps of 8 or more cannot be coded; the later error is dropped.
  true, rec, ranks, _ = _case([2, 4, 20, 23])
  code = correct.Code(l1=3, l2=8)
  plan = correct.plan(true, rec, ranks, code)
  assert plan.positions == (2, 4) and plan.dropped == (20, 23)
  pos, _ = correct.from_bits(correct.to_bits(plan, T, code), T, code)
  assert pos == [2, 4]


def test_rank_threshold_and_outside_topk_drop():
  true, rec, ranks, _ = _case([3, 9])
  ranks[3] = -1  # correct token not samplable: cannot be coded
  l2 = max(1, math.ceil(math.log2(ranks[9] + 1)))
  plan = correct.plan(true, rec, ranks, correct.Code(l1=8, l2=l2))
  assert 3 in plan.dropped
  assert plan.positions == (9,)
  tight = correct.plan(true, rec, ranks, correct.Code(l1=8, l2=1))
  assert (9 in tight.dropped) == (ranks[9] >= 2)


def test_max_corrections_keeps_earliest():
  true, rec, ranks, _ = _case([1, 2, 3, 4])
  plan = correct.plan(true, rec, ranks, max_corrections=2)
  assert plan.positions == (1, 2) and plan.dropped == (3, 4)


def test_truncated_bits_raise():
  true, rec, ranks, _ = _case([1, 2, 3])
  bits = correct.to_bits(correct.plan(true, rec, ranks), T)
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


GOLOMB = correct.Code("golomb", g1=2, g2=1)


def test_golomb_codes_known_words_and_round_trips_any_gap_and_rank():
  assert correct._golomb(0, 0) == [1] and correct._golomb(3, 0) == [0, 0, 1, 0, 0]
  assert correct._golomb(0, 2) == [1, 0, 0] and correct._golomb(4, 2) == [0, 1, 0, 0, 0]
  for v in range(300):
    for k in range(4):
      assert len(correct._golomb(v, k)) == correct._golomb_len(v, k)
  # Gaps of 100 and ranks of 200 are beyond neither code's reach with Exp-Golomb.
  true, rec, ranks, order = _case([0, 1, 2, 40, 63])
  ranks[40] = 200
  plan = correct.plan(true, rec, ranks, GOLOMB)
  assert plan.positions == (0, 1, 2, 40, 63) and plan.dropped == ()
  bits = correct.to_bits(plan, T, GOLOMB)
  assert len(bits) == correct.list_bits(plan.positions, plan.ranks, T, GOLOMB)
  tail = np.ones(9, np.uint8)  # trailing bits are ignored
  pos, rk = correct.from_bits(np.concatenate([bits, tail]), T, GOLOMB)
  assert (tuple(pos), tuple(rk)) == (plan.positions, plan.ranks)
  with pytest.raises(ValueError, match="truncated"):
    correct.from_bits(bits[:-1], T, GOLOMB)


def test_golomb_fits_more_of_m2s_errors_than_fixed_widths():
  # Errors a few tokens apart whose true tokens rank among the prior's first few: what M2
  # leaves behind. Exp-Golomb must fit well over the fixed code's count in the same room.
  rs = np.random.RandomState(3)
  errs = np.sort(rs.choice(T, 40, replace=False))
  true, rec, ranks, _ = _case(errs.tolist())
  ranks[:] = rs.geometric(0.4, T) - 1
  room = 150
  fixed = correct.plan(true, rec, ranks, max_bits=room)
  golomb = correct.plan(true, rec, ranks, GOLOMB, max_bits=room)
  assert len(fixed.positions) == correct.tau(room, T)
  assert correct.list_bits(golomb.positions, golomb.ranks, T, GOLOMB) <= room
  assert len(golomb.positions) < 40  # the room binds
  assert len(golomb.positions) >= 1.5 * len(fixed.positions), (golomb, fixed)
  # The longest priority prefix that fits, not merely any prefix: one more does not fit.
  more = correct.plan(true, rec, ranks, GOLOMB, max_corrections=len(golomb.positions) + 1)
  assert correct.list_bits(more.positions, more.ranks, T, GOLOMB) > room


def test_golomb_sealed_payload_round_trips_and_rejects_tampering():
  secret, lb, tb, n_cls = b"g" * 32, 3, 32, 5
  true, rec, ranks, _ = _case([2, 3, 9, 30])
  p = correct.plan(true, rec, ranks, GOLOMB)
  sealed = correct.seal(4, p, secret, 11, T, lb, tb, GOLOMB)
  assert len(sealed) <= correct.max_sealed_bits(T, lb, tb, GOLOMB, V)
  extra = np.concatenate([sealed, np.zeros(40, np.uint8)])
  label, pos, rk = correct.open_sealed(extra, secret, 11, T, lb, n_cls, tb, GOLOMB)
  assert (label, tuple(pos), tuple(rk)) == (4, p.positions, p.ranks)
  for i in range(len(sealed)):  # any flipped bit is refused
    bad = extra.copy()
    bad[i] ^= 1
    with pytest.raises(ValueError):
      correct.open_sealed(bad, secret, 11, T, lb, n_cls, tb, GOLOMB)


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


def test_sealed_payload_round_trips_and_random_payloads_never_authenticate():
  secret, lb, tb, n_cls = b"k" * 32, 2, 32, 4
  rs = np.random.RandomState(1)
  true = rs.randint(0, V, T)
  rec = true.copy()
  rec[[3, 10, 40]] = (true[[3, 10, 40]] + 1) % V
  p = correct.plan(true, rec, rs.randint(0, V, T))
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
