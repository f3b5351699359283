"""M2: recover the image tokens from a received (lossy) image by latent optimization.

Re-encode the received image to ``z``, then minimize
``|| x_received - N(G(quantize_st(z))) ||^2`` over ``z`` with Adam (CMSTEG: lr
0.002, 10,000 steps), ``N`` the differentiable stand-in of the channel
(``channels.image_channel(name).stand_in()``: JPEG-SS for JPEG, identity for PNG and
Gaussian noise -- the squared error is then the Gaussian noise likelihood --,
down-and-up resizing for scaling); the best-loss iterate's tokens are kept.

The sender simulates M2 and the receiver repeats it, so an image's tokens must not depend
on the batch it arrives in or on the number of devices. Each image therefore runs alone, in
one geometry ([1, H, W, 3]), through one single-device compiled function (a program
partitioned over two devices rounds differently, so splitting an image or a batch over
devices would make the bits depend on the device count). Running alone also gives each image
its own early stop: it stops once its tokens have not changed for ``patience`` steps.

Whole images are spread over the job: each process runs its contiguous block of the images
and the blocks are gathered with ``multihost_utils`` (every process gets the whole result).
On accelerators a process also deals its block out over its local devices, one whole image
per device (the same single-device program on each, so the same bits). Fake CPU devices
share the host's cores, so there a process runs all its images on its first device
(spreading would only add one compilation per device).

The stand-ins of the default channels are branches of one
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
from jax.experimental import multihost_utils

from stegjax import channels
from stegjax import errors
from stegjax.channels import real
from stegjax.train import sharding

# Deal a process's images out over its local CPU devices too (tests only: see above).
SPREAD_ON_CPU = False


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
  """M2 on one image x01 [1, H, W, 3]: (tokens_m1 [h, w], tokens [h, w], loss, steps run,
  latent [h, w, d] of the kept iterate)."""
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
    step, z, opt, best_loss, best_idx, best_z, prev_idx, unchanged = c
    (value, idx), g = grad_fn(z)
    better = value < best_loss
    best_loss = jnp.where(better, value, best_loss)
    best_idx = jnp.where(better, idx, best_idx)
    best_z = jnp.where(better, z, best_z)
    unchanged = jnp.where(jnp.all(idx == prev_idx), unchanged + 1, 0)
    updates, opt = tx.update(g, opt, z)
    z_next = optax.apply_updates(z, updates)
    return step + 1, z_next, opt, best_loss, best_idx, best_z, idx, unchanged

  init = (jnp.int32(0), z0, tx.init(z0), jnp.float32(jnp.inf), idx0, z0, idx0, jnp.int32(0))
  step, z, _, best_loss, best_idx, best_z, _, _ = jax.lax.while_loop(cond, body, init)
  value, idx = loss(z)  # the last iterate has not been scored yet
  better = value < best_loss
  best_idx = jnp.where(better, idx, best_idx)
  best_z = jnp.where(better, z, best_z)
  return idx0[0], best_idx[0], jnp.minimum(value, best_loss), step, best_z[0]


_FIELDS = ("tokens_m1", "tokens", "loss", "steps_each", "latents")


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
  (the most any image ran), ``steps_each`` [B] and float32 [B, h, w, d] ``latents`` (the
  optimized latent whose nearest codebook vectors are ``tokens``: list decoding ranks
  alternatives by their distance margins there).
  """
  x = np.asarray(received_uint8)
  if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or not len(x):
    raise errors.InputError(
      f"received images must be uint8 [B, H, W, 3] with B >= 1, got {x.dtype}{x.shape}"
    )
  del batch_size
  sin = stand_in(channel)  # also a clear error for an unknown channel name
  forms, index = forms_for(channel)
  # Only the image shape and the set of forms are static: channels, step counts, learning
  # rates and patience all reuse one compiled loop.
  args = (jnp.int32(index), jnp.float32(sin.param), jnp.int32(steps), jnp.float32(lr))
  args += (jnp.int32(patience),)
  host_params = sharding.to_host(vq.params)  # a collective for global params: every process
  # This process's contiguous block of the images.
  count, pid = jax.process_count(), jax.process_index()
  per = -(-len(x) // count)
  block = range(min(pid * per, len(x)), min((pid + 1) * per, len(x)))
  devices = jax.local_devices()
  if devices[0].platform == "cpu" and not SPREAD_ON_CPU:
    devices = devices[:1]
  devices = devices[: max(1, len(block))]
  params = [jax.device_put(host_params, d) for d in devices]
  outs = []
  for j, i in enumerate(block):  # dispatched asynchronously, read back at the end
    d = j % len(devices)
    xi = jax.device_put(x[i : i + 1].astype(np.float32) / 255.0, devices[d])
    outs.append(_optimize(vq.model, params[d], xi, *args, forms=forms))
  got = [[np.asarray(o[k]) for o in outs] for k in range(len(_FIELDS))]
  if outs:
    blanks = [np.zeros_like(g[0]) for g in got]
  else:  # an empty block (fewer images than processes): only the shapes are needed
    shapes = jax.eval_shape(
      functools.partial(_optimize, vq.model, forms=forms),
      host_params,
      jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32),
      *args,
    )
    blanks = [np.zeros(s.shape, s.dtype) for s in shapes]
  # The block's rows, padded to ``per`` rows (zeros, not computed) so that every process
  # gathers the same shapes.
  rows = [np.stack(g + [z] * (per - len(g))) for g, z in zip(got, blanks)]
  if count > 1:
    rows = multihost_utils.process_allgather(rows, tiled=True)  # the blocks, in process order
  res = dict(zip(_FIELDS, (r[: len(x)] for r in rows)))
  res["steps"] = int(res["steps_each"].max())
  chex.assert_equal_shape([res["tokens_m1"], res["tokens"]])
  return res
