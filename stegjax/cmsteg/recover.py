"""M2: recover the image tokens from a received (lossy) image by latent optimization.

Re-encode the received image to ``z``, then minimize
``|| x_received - N(G(quantize_st(z))) ||^2`` over ``z`` with Adam (CMSTEG: lr
0.002, 10,000 steps), ``N`` the differentiable stand-in of the channel
(``channels.image_channel(name).stand_in()``: JPEG-SS for JPEG, identity for PNG and
Gaussian noise -- the squared error is then the Gaussian noise likelihood --,
down-and-up resizing for scaling). Batched over images (each image's loss
depends only on its own latent, and Adam is elementwise, so a batch equals
the images one by one), jitted, one ``lax.while_loop``; the best-loss iterate's
tokens are kept per image. Optional early stop once every image's tokens have
not changed for ``patience`` steps.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stegjax import channels
from stegjax.train import sharding


def _to_model(x01):
  return x01 * 2.0 - 1.0


def stand_in(channel: str) -> channels.StandIn:
  """The channel's differentiable stand-in, split as (static form, traced parameter).

  Every JPEG quality shares one compiled M2 loop (the quality is traced), and PNG
  and Gaussian noise share the identity; only a scale factor changes shapes.
  """
  return channels.image_channel(channel).stand_in()


@functools.partial(jax.jit, static_argnames=("model", "form", "steps", "lr", "patience"))
def _optimize(model, params, x01, param, *, form, steps: int, lr: float, patience: int):
  noise = lambda x, key=None: form(x, param, key)
  variables = {"params": params}
  z0 = model.apply(variables, _to_model(x01), method="encode")
  idx0, _ = model.apply(variables, z0, method="quantize")

  def losses(z):
    idx, z_q = model.apply(variables, z, method="quantize")
    x = (model.apply(variables, z_q, method="decode") + 1.0) / 2.0
    y = noise(x, None)
    per_image = jnp.mean(jnp.square(y - x01), axis=(1, 2, 3))
    return jnp.sum(per_image), (per_image, idx)

  grad_fn = jax.value_and_grad(losses, has_aux=True)
  tx = optax.adam(lr)
  b = x01.shape[0]

  def cond(c):
    step, _, _, _, _, _, unchanged = c
    return (step < steps) & ((patience <= 0) | jnp.any(unchanged < patience))

  def body(c):
    step, z, opt, best_loss, best_idx, prev_idx, unchanged = c
    (_, (loss, idx)), g = grad_fn(z)
    better = loss < best_loss
    best_loss = jnp.where(better, loss, best_loss)
    best_idx = jnp.where(better[:, None, None], idx, best_idx)
    same = jnp.all(idx == prev_idx, axis=(1, 2))
    unchanged = jnp.where(same, unchanged + 1, 0)
    updates, opt = tx.update(g, opt, z)
    return step + 1, optax.apply_updates(z, updates), opt, best_loss, best_idx, idx, unchanged

  init = (
    jnp.int32(0),
    z0,
    tx.init(z0),
    jnp.full((b,), jnp.inf),
    idx0,
    idx0,
    jnp.zeros((b,), jnp.int32),
  )
  step, z, _, best_loss, best_idx, _, _ = jax.lax.while_loop(cond, body, init)
  # The last iterate has not been scored yet.
  (_, (loss, idx)) = losses(z)
  better = loss < best_loss
  best_idx = jnp.where(better[:, None, None], idx, best_idx)
  best_loss = jnp.where(better, loss, best_loss)
  return idx0, best_idx, best_loss, step


def recover(
  vq,
  received_uint8,
  channel: str,
  steps: int,
  lr: float = 0.002,
  patience: int = 0,
  batch_size: int = 64,
) -> dict:
  """Tokens of received images: ``tokens_m1`` (plain re-encoding) and ``tokens`` (after M2).

  Args:
    vq: the tokenizer (``recipes.Trained``).
    received_uint8: uint8 [B, H, W, 3], already resized back to the sent size.
    channel: the channel name (e.g. "jpeg75"), picks the differentiable stand-in.
    steps: Adam steps (0: M2 off, tokens == tokens_m1).
    patience: stop once no image's tokens changed for this many steps (0: never).
  Returns dict with int32 [B, h, w] ``tokens_m1`` and ``tokens``, ``loss`` [B], ``steps``.
  """
  x = np.asarray(received_uint8)
  if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
    raise ValueError(f"received images must be uint8 [B, H, W, 3], got {x.dtype}{x.shape}")
  sin = stand_in(channel)  # also a clear error for an unknown channel name
  # Images over every local device (replicated where the batch does not divide).
  params = sharding.replicate_local(vq.params)
  out = {"tokens_m1": [], "tokens": [], "loss": [], "steps": []}
  for i in range(0, len(x), batch_size):
    chunk = sharding.spread(x[i : i + batch_size].astype(np.float32) / 255.0)
    idx0, idx, loss, n = _optimize(
      vq.model,
      params,
      chunk,
      jnp.float32(sin.param),
      form=sin.form,
      steps=int(steps),
      lr=float(lr),
      patience=int(patience),
    )
    out["tokens_m1"].append(np.asarray(idx0))
    out["tokens"].append(np.asarray(idx))
    out["loss"].append(np.asarray(loss))
    out["steps"].append(int(n))
  res = {k: np.concatenate(v) for k, v in out.items() if k != "steps"}
  res["steps"] = max(out["steps"]) if out["steps"] else 0
  chex.assert_equal_shape([res["tokens_m1"], res["tokens"]])
  return res
