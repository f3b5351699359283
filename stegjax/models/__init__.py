"""Flax modules only (no training loops), plus the one parameter counter they all share."""

import jax
import numpy as np


def param_count(tree) -> int:
  """Number of scalars in a parameter tree; works on arrays and on ``jax.eval_shape`` output."""
  return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree)))
