"""List decoding: search likely alternatives of uncertain tokens until a tag verifies.

A wrong token after M2 (and M3) is usually one whose latent lay almost halfway between two
codebook vectors. The chunk tag (``cmsteg.message``) and the frame's AEAD tag verify the
result, so the receiver can afford to *guess*: rank each position's alternatives by how much
less likely they are than the token it got, and try sets of substitutions in increasing total
cost (ordered-statistics decoding over a flat list of moves) within a stated budget.

Costs are nats of evidence against a substitution: the M2 distance margin
``(d_alt - d_best) / (2 * sigma^2)`` between the latent and the two codebook vectors (the
Gaussian likelihood M2 optimizes), plus optionally the prior's log-probability ratio
``log p(best) - log p(alt)``. Nothing here runs a model: ``search`` takes a batched verify
function (``cmsteg.api`` replays the prior there), so it is tested on synthetic cases.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterator, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Move:
  """Substitute ``token`` at ``position``, at ``cost`` nats of evidence against it."""

  position: int
  token: int
  cost: float


@dataclasses.dataclass
class Result:
  """What ``search`` found: the verified value and substitutions, and the work it took."""

  value: object | None
  moves: tuple[Move, ...]
  tried: int  # candidates verified, including the unchanged tokens
  budget: int
  exhausted: bool  # every candidate within the limits was tried

  @property
  def found(self) -> bool:
    return self.value is not None


def moves_from_distances(
  distances,
  tokens,
  positions: int = 16,
  per_position: int = 2,
  sigma2: float = 1.0,
  prior_logp=None,
  allowed=None,
) -> list[Move]:
  """The cheapest substitutions at the ``positions`` least certain tokens, sorted by cost.

  Args:
    distances: float[T, V] squared distances of each latent to every codebook vector.
    tokens: int[T], the tokens received (usually the nearest codebook vectors).
    sigma2: noise variance that turns distances into nats (a larger one trusts M2 less).
    prior_logp: optional float[T, V] log-probabilities of the prior at each step.
    allowed: optional bool[T, V]; substitutions outside it are never proposed.
  """
  d = np.asarray(distances, np.float64)
  tok = np.asarray(tokens, np.int64).reshape(-1)
  t, v = d.shape
  cost = (d - d[np.arange(t), tok][:, None]) / (2.0 * float(sigma2))
  if prior_logp is not None:
    lp = np.asarray(prior_logp, np.float64)
    cost = cost + (lp[np.arange(t), tok][:, None] - lp)
  cost[np.arange(t), tok] = np.inf
  if allowed is not None:
    cost = np.where(np.asarray(allowed, bool), cost, np.inf)
  cost = np.maximum(cost, 0.0)  # a token M2 did not pick is never *more* likely than its pick
  k = min(per_position, v - 1)
  alt = np.argsort(cost, axis=1, kind="stable")[:, :k]
  alt_cost = np.take_along_axis(cost, alt, 1)
  order = np.argsort(alt_cost[:, 0], kind="stable")[:positions]
  moves = [
    Move(int(p), int(alt[p, j]), float(alt_cost[p, j]))
    for p in order
    for j in range(k)
    if np.isfinite(alt_cost[p, j])
  ]
  return sorted(moves, key=lambda m: (m.cost, m.position, m.token))


def candidates(moves: Sequence[Move], max_moves: int = 4) -> Iterator[tuple[float, tuple]]:
  """Every set of moves (at most one per position, at most ``max_moves``) by total cost.

  Yields ``(cost, moves)`` in nondecreasing cost, starting with the empty set. The standard
  subset-sum enumeration over moves sorted by cost: a set ending at index i has the two
  successors "append i+1" and "replace i by i+1", so each subset is reached exactly once.
  """
  moves = sorted(moves, key=lambda m: (m.cost, m.position, m.token))
  yield 0.0, ()
  if not moves or max_moves <= 0:
    return
  heap = [(moves[0].cost, (0,))]
  while heap:
    cost, idx = heapq.heappop(heap)
    last = idx[-1]
    if last + 1 < len(moves):
      nxt = moves[last + 1].cost
      if len(idx) < max_moves:
        heapq.heappush(heap, (cost + nxt, idx + (last + 1,)))
      heapq.heappush(heap, (cost - moves[last].cost + nxt, idx[:-1] + (last + 1,)))
    chosen = tuple(moves[i] for i in idx)
    if len({m.position for m in chosen}) == len(chosen):
      yield cost, chosen


def apply_moves(tokens, moves: Sequence[Move]) -> np.ndarray:
  out = np.array(tokens, copy=True)
  flat = out.reshape(-1)
  for m in moves:
    flat[m.position] = m.token
  return out


def search(
  moves: Sequence[Move],
  verify_batch: Callable[[list[tuple[Move, ...]]], list],
  budget: int,
  batch: int = 16,
  max_moves: int = 4,
  max_cost: float = np.inf,
) -> Result:
  """Tries candidate move sets, cheapest first, ``batch`` at a time, until one verifies.

  ``verify_batch(list of move tuples) -> list of values`` returns, per candidate, the verified
  result (for example the decrypted chunk) or None. At most ``budget`` candidates are tried
  (the unchanged tokens count as the first); the first verified one in cost order wins.
  """
  if budget < 1:
    raise ValueError(f"list decoding budget must be >= 1, got {budget}")
  gen = candidates(moves, max_moves)
  tried, exhausted = 0, False
  while tried < budget:
    group = []
    for cost, cand in gen:
      if cost > max_cost:
        break
      group.append(cand)
      if len(group) >= min(batch, budget - tried):
        break
    if not group:
      exhausted = True
      break
    values = verify_batch(group)
    for j, (cand, value) in enumerate(zip(group, values)):
      if value is not None:
        return Result(value, cand, tried + j + 1, budget, False)
    tried += len(group)
  return Result(None, (), tried, budget, exhausted)
