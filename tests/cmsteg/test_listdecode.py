"""List decoding on synthetic cases: flipped tokens found within budget, a wrong key never."""

import hashlib
import hmac
import itertools

import numpy as np
import pytest

from stegjax.cmsteg import listdecode as ld


def test_candidates_are_every_valid_set_once_in_cost_order():
  rng = np.random.default_rng(0)
  moves = [
    ld.Move(int(p), int(t), float(c))
    for p, t, c in zip(rng.integers(0, 4, 7), rng.integers(0, 9, 7), rng.random(7))
  ]
  moves = list({(m.position, m.token): m for m in moves}.values())
  got = list(ld.candidates(moves, max_moves=3))
  costs = [c for c, _ in got]
  assert costs == sorted(costs) and got[0] == (0.0, ())
  want = {
    frozenset(s)
    for r in range(4)
    for s in itertools.combinations(moves, r)
    if len({m.position for m in s}) == len(s)
  }
  sets = [frozenset(s) for _, s in got]
  assert len(sets) == len(set(sets)) and set(sets) == want
  for c, s in got:
    assert c == pytest.approx(sum(m.cost for m in s))


def _case(seed, t=144, v=64, flips=3):
  """Latent distances where the truth is the 2nd nearest vector at ``flips`` ambiguous steps."""
  rng = np.random.default_rng(seed)
  d = rng.random((t, v)) * 4.0 + 1.0
  truth = rng.integers(0, v, t)
  d[np.arange(t), truth] = rng.random(t) * 0.2  # clearly nearest: recovered right
  wrong = rng.choice(t, flips, replace=False)
  got = truth.copy()
  for p in wrong:
    alt = (truth[p] + 1 + rng.integers(v - 1)) % v
    got[p] = alt
    d[p, alt] = 0.3
    d[p, truth[p]] = 0.3 + rng.random() * 0.1  # wrong by a small margin
  # A few more ambiguous but correct positions, as decoys.
  for p in rng.choice(np.setdiff1d(np.arange(t), wrong), 6, replace=False):
    alt = (truth[p] + 1) % v
    d[p, alt] = d[p, truth[p]] + rng.random() * 0.1
  return d, truth, got


def _verifier(truth, key):
  tag = hmac.new(b"right key", truth.tobytes(), hashlib.sha256).digest()

  def verify_batch(cands, got):
    out = []
    for cand in cands:
      toks = ld.apply_moves(got, cand)
      ok = hmac.compare_digest(hmac.new(key, toks.tobytes(), hashlib.sha256).digest(), tag)
      out.append(toks if ok else None)
    return out

  return verify_batch


@pytest.mark.parametrize("flips", [0, 1, 2, 3])
def test_flipped_tokens_found_within_budget(flips):
  for seed in range(3):
    d, truth, got = _case(seed, flips=flips)
    moves = ld.moves_from_distances(d, got, positions=16, per_position=2)
    verify = _verifier(truth, b"right key")
    res = ld.search(moves, lambda c: verify(c, got), budget=2000, batch=32, max_moves=4)
    assert res.found and np.array_equal(res.value, truth)
    assert res.tried <= res.budget
    assert len(res.moves) == flips
    if flips == 0:
      assert res.tried == 1  # the unchanged tokens are tried first


def test_wrong_key_never_verifies_and_budget_is_respected():
  d, truth, got = _case(1, flips=2)
  moves = ld.moves_from_distances(d, got)
  verify = _verifier(truth, b"wrong key")
  res = ld.search(moves, lambda c: verify(c, got), budget=300, batch=64)
  assert not res.found and res.tried == 300 and not res.exhausted


def test_search_stops_when_candidates_run_out():
  moves = [ld.Move(0, 1, 0.5), ld.Move(1, 2, 0.7)]
  res = ld.search(moves, lambda c: [None] * len(c), budget=100)
  assert res.exhausted and res.tried == 4  # {}, {a}, {b}, {a, b}


def test_prior_and_allowed_shape_the_ranking():
  d = np.array([[0.0, 0.1, 5.0], [0.0, 3.0, 3.0]])
  tok = np.array([0, 0])
  moves = ld.moves_from_distances(d, tok, positions=2, per_position=1)
  assert moves[0] == ld.Move(0, 1, pytest.approx(0.05))
  lp = np.log(np.array([[0.98, 0.01, 0.01], [0.3, 0.3, 0.4]]))
  moves = ld.moves_from_distances(d, tok, positions=2, per_position=1, prior_logp=lp)
  assert moves[0].position == 1  # the prior makes position 0's alternative unlikely
  allowed = np.array([[True, False, True], [True, True, True]])
  moves = ld.moves_from_distances(d, tok, positions=2, per_position=2, allowed=allowed)
  assert all(not (m.position == 0 and m.token == 1) for m in moves)
