"""M2: recover the image tokens from a received (lossy) image by latent optimization.

Re-encode the received image to ``z``, then minimize
``|| x_received - N(G(quantize_st(z))) ||^2`` over ``z`` with Adam (CMSTEG: lr
0.002, 10,000 steps), ``N`` the differentiable stand-in of the channel
(``channels.image_channel(name).stand_in()``: JPEG-SS for JPEG, identity for PNG and
Gaussian noise -- the squared error is then the Gaussian noise likelihood --,
down-and-up resizing for scaling); the best-loss iterate's tokens are kept.

The sender simulates M2 and the receiver repeats it, so an image's tokens must not depend
on the batch it arrives in or on the number of devices. Each image therefore runs alone, in
one geometry ([1, H, W, 3]), through one single-device compiled function on the first local
device (a program partitioned over two devices rounds differently, so spreading images over
devices would make the bits depend on the device count). Running alone also gives each image
its own early stop: it stops once its tokens have not changed
for ``patience`` steps. The stand-ins of the default channels are branches of one
``lax.switch`` with the channel's parameter traced, so every default channel (and every
JPEG quality, step count, learning rate and patience) reuses one compiled loop.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stegjax import channels
from stegjax import errors
from stegjax.channels import real
from stegjax.train import sharding


def _to_model(x01):
  return x01 * 2.0 - 1.0


def stand_in(channel: str) -> channels.StandIn:
  """The channel's differentiable stand-in, split as (static form, traced parameter)."""
  return channels.image_channel(channel).stand_in()


def forms_for(channel: str) -> tuple[tuple, int]:
  """(the stand-in forms compiled together, the index of ``channel``'s form among them).

  The default channels' forms always come first, so all of them share one compiled loop;
  another channel adds its own form (and so one more compilation).
  """
  forms = []
  for form in [stand_in(c).form for c in real.CHANNELS] + [stand_in(channel).form]:
    if form not in forms:
      forms.append(form)
  return tuple(forms), forms.index(stand_in(channel).form)


@functools.partial(jax.jit, static_argnames=("model", "forms"))
def _optimize(model, params, x01, form_index, param, steps, lr, patience, *, forms):
  """M2 on one image x01 [1, H, W, 3]: (tokens_m1 [h, w], tokens [h, w], loss, steps run)."""
  chex.assert_shape(x01, (1, None, None, 3))
  branches = [functools.partial(lambda f, x: f(x, param, None), f) for f in forms]
  noise = lambda x: jax.lax.switch(form_index, branches, x)
  variables = {"params": params}
  z0 = model.apply(variables, _to_model(x01), method="encode")
  idx0, _ = model.apply(variables, z0, method="quantize")

  def loss(z):
    idx, z_q = model.apply(variables, z, method="quantize")
    x = (model.apply(variables, z_q, method="decode") + 1.0) / 2.0
    return jnp.mean(jnp.square(noise(x) - x01)), idx

  grad_fn = jax.value_and_grad(loss, has_aux=True)
  tx = optax.adam(lr)

  def cond(c):
    step, unchanged = c[0], c[-1]
    return (step < steps) & ((patience <= 0) | (unchanged < patience))

  def body(c):
    step, z, opt, best_loss, best_idx, prev_idx, unchanged = c
    (value, idx), g = grad_fn(z)
    better = value < best_loss
    best_loss = jnp.where(better, value, best_loss)
    best_idx = jnp.where(better, idx, best_idx)
    unchanged = jnp.where(jnp.all(idx == prev_idx), unchanged + 1, 0)
    updates, opt = tx.update(g, opt, z)
    return step + 1, optax.apply_updates(z, updates), opt, best_loss, best_idx, idx, unchanged

  init = (jnp.int32(0), z0, tx.init(z0), jnp.float32(jnp.inf), idx0, idx0, jnp.int32(0))
  step, z, _, best_loss, best_idx, _, _ = jax.lax.while_loop(cond, body, init)
  value, idx = loss(z)  # the last iterate has not been scored yet
  better = value < best_loss
  best_idx = jnp.where(better, idx, best_idx)
  return idx0[0], best_idx[0], jnp.minimum(value, best_loss), step


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
    patience: an image stops once its tokens have not changed for this many steps (0: never).
    batch_size: unused (kept for callers): every image runs alone, so the result does
      not depend on how images are grouped.
  Returns dict with int32 [B, h, w] ``tokens_m1`` and ``tokens``, ``loss`` [B], ``steps``
  (the most any image ran) and ``steps_each`` [B].
  """
  x = np.asarray(received_uint8)
  if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or not len(x):
    raise errors.InputError(
      f"received images must be uint8 [B, H, W, 3] with B >= 1, got {x.dtype}{x.shape}"
    )
  del batch_size
  sin = stand_in(channel)  # also a clear error for an unknown channel name
  forms, index = forms_for(channel)
  # One device, one image at a time: the same compiled program for every image, whatever
  # the batch or the number of devices (an SPMD program over 2 devices rounds differently).
  device = jax.local_devices()[0]
  params = jax.device_put(sharding.to_host(vq.params), device)
  # Only the image shape and the set of forms are static: channels, step counts, learning
  # rates and patience all reuse one compiled loop.
  args = (jnp.int32(index), jnp.float32(sin.param), jnp.int32(steps), jnp.float32(lr))
  args += (jnp.int32(patience),)
  outs = []
  for i in range(len(x)):  # dispatched asynchronously, read back at the end
    xi = jax.device_put(x[i : i + 1].astype(np.float32) / 255.0, device)
    outs.append(_optimize(vq.model, params, xi, *args, forms=forms))
  outs = [np.stack([np.asarray(o[k]) for o in outs]) for k in range(4)]
  res = dict(zip(("tokens_m1", "tokens", "loss", "steps_each"), outs))
  res["steps"] = int(res["steps_each"].max())
  chex.assert_equal_shape([res["tokens_m1"], res["tokens"]])
  return res
