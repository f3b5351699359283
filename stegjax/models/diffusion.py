"""A small class-conditional UNet with epsilon prediction, for coverless stego SemCom.

``UNet(x_t, t, cond) -> eps``: ``x_t`` [B,H,W,3] in the model range [-1, 1], ``t`` the
integer diffusion step [B] (0..T-1), ``cond`` a condition vector [B, cond_dim]. The
condition is a *vector*, not a class id, so a keyed condition (a point of the embedding
space derived from a shared secret, ``stegjax.semcom.coverless``) goes through the same
path as a class: ``class_cond(labels)`` looks a class up in the learned table, row
``num_classes`` is the null class that classifier-free guidance contrasts against.

Training (``loss``) is the DDPM epsilon objective (Ho et al. 2020, eq. 14) with the
class dropped to null with probability ``p_uncond`` (Ho & Salimans 2022). The noise
schedule is linear in beta (1e-4 .. 0.02 over T steps), ``alpha_bars(T)``.

Pixel space: ``to_model`` / ``to_image`` map images [0, 1] to the model's space and back.
``"linear"`` is x = 2y - 1 (a generation can leave [0, 1] and must then be clipped to be sent
as an image, which loses what the clip cuts off). ``"soft"`` is a bounded bijection: linear on
the middle of the range (|x| <= ``SOFT_KNEE``), tanh tails beyond, so every model-space value
maps to a distinct pixel value strictly inside (0, 1) and back; real pixels at 0 or 1 are
first moved in by ``SOFT_MARGIN`` (a quarter of an 8-bit level), so model values beyond about
+-1.33 come back at +-1.33 (8 bits cannot tell those pixels apart). A model trained in the soft
space generates images in range by construction, and a DDIM inversion of its (un-clipped)
output finds the same trajectory.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def alpha_bars(num_train_steps: int = 1000, beta_min: float = 1e-4, beta_max: float = 0.02):
  """Cumulative products of (1 - beta_t) for the linear schedule, float32 [T]."""
  betas = np.linspace(beta_min, beta_max, num_train_steps, dtype=np.float64)
  return jnp.asarray(np.cumprod(1.0 - betas), jnp.float32)


SPACES = ("linear", "soft")
SOFT_KNEE = 0.8
SOFT_MARGIN = 1.0 / 510.0  # in model units (2 per [0, 1]): a quarter of an 8-bit level


def _check_space(space: str):
  if space not in SPACES:
    raise ValueError(f"pixel space must be one of {SPACES}, got {space!r}")


def to_model(images: jax.Array, space: str = "linear") -> jax.Array:
  """Images in [0, 1] -> the model's space (the inverse of ``to_image``)."""
  _check_space(space)
  y = 2.0 * jnp.asarray(images, jnp.float32) - 1.0
  if space == "linear":
    return y
  k = SOFT_KNEE
  a = jnp.minimum(jnp.abs(y), 1.0 - SOFT_MARGIN)
  tail = k + (1.0 - k) * jnp.arctanh((jnp.maximum(a, k) - k) / (1.0 - k))
  return jnp.sign(y) * jnp.where(a <= k, a, tail)


def to_image(x: jax.Array, space: str = "linear") -> jax.Array:
  """Model space -> images: ``linear`` unclipped, ``soft`` strictly inside (0, 1)."""
  _check_space(space)
  if space == "soft":
    k = SOFT_KNEE
    a = jnp.abs(x)
    x = jnp.sign(x) * jnp.where(a <= k, a, k + (1.0 - k) * jnp.tanh((a - k) / (1.0 - k)))
  return (x + 1.0) / 2.0


def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal embedding of (float) steps [B] -> [B, dim]."""
  half = dim // 2
  freqs = jnp.exp(-np.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def _groups(c: int) -> int:
  return min(8, c) if c % min(8, c) == 0 else 1


class ResBlock(nn.Module):
  """GroupNorm-SiLU-conv twice; the embedding sets a per-channel scale and shift (FiLM)."""

  features: int

  @nn.compact
  def __call__(self, x, emb):
    h = nn.silu(nn.GroupNorm(_groups(x.shape[-1]))(x))
    h = nn.Conv(self.features, (3, 3))(h)
    scale, shift = jnp.split(nn.Dense(2 * self.features)(nn.silu(emb)), 2, axis=-1)
    h = (
      nn.GroupNorm(_groups(self.features))(h) * (1.0 + scale[:, None, None]) + shift[:, None, None]
    )
    h = nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros)(nn.silu(h))
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1))(x)
    return x + h


class UNet(nn.Module):
  """Class-conditional UNet: one ResBlock per level, stride-2 down, nearest-neighbour up."""

  num_classes: int
  features: Sequence[int] = (32, 64)
  cond_dim: int = 64

  def setup(self):
    self.classes = nn.Embed(self.num_classes + 1, self.cond_dim)  # last row: null
    f0 = self.features[0]
    self.t_mlp = [nn.Dense(4 * f0), nn.Dense(4 * f0)]
    self.c_proj = nn.Dense(4 * f0)
    self.conv_in = nn.Conv(f0, (3, 3))
    self.down = [ResBlock(f) for f in self.features]
    self.downsample = [nn.Conv(f, (3, 3), strides=2) for f in self.features[:-1]]
    self.mid = ResBlock(self.features[-1])
    self.up = [ResBlock(f) for f in reversed(self.features)]
    self.out_norm = nn.GroupNorm(_groups(f0))
    self.conv_out = nn.Conv(3, (3, 3), kernel_init=nn.initializers.zeros)

  def class_cond(self, labels: jax.Array) -> jax.Array:
    """Condition vectors of class ids [B] (``num_classes`` = null) -> [B, cond_dim]."""
    return self.classes(labels)

  def init_all(self, x, t, labels):
    """``__call__`` under class conditions: touches every parameter (for ``init``)."""
    return self(x, t, self.class_cond(labels))

  def __call__(self, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    b, h, w, _ = x.shape
    chex.assert_shape(t, (b,))
    chex.assert_shape(cond, (b, self.cond_dim))
    scale = 2 ** (len(self.features) - 1)
    if h % scale or w % scale:
      raise ValueError(f"UNet image size {h}x{w} must be a multiple of {scale}")
    emb = timestep_embedding(t, self.features[0])
    emb = self.t_mlp[1](nn.silu(self.t_mlp[0](emb))) + self.c_proj(cond)
    hdn = self.conv_in(x)
    skips = []
    for i, block in enumerate(self.down):
      hdn = block(hdn, emb)
      skips.append(hdn)
      if i < len(self.downsample):
        hdn = self.downsample[i](hdn)
    hdn = self.mid(hdn, emb)
    for i, block in enumerate(self.up):
      if i > 0:
        hdn = jnp.repeat(jnp.repeat(hdn, 2, axis=1), 2, axis=2)
      hdn = block(jnp.concatenate([hdn, skips[-1 - i]], axis=-1), emb)
    eps = self.conv_out(nn.silu(self.out_norm(hdn)))
    chex.assert_shape(eps, x.shape)
    return eps


def init(model: UNet, rng: jax.Array, image_size: int):
  x = jnp.zeros((1, image_size, image_size, 3))
  t = jnp.zeros((1,), jnp.int32)
  return model.init(rng, x, t, t, method=UNet.init_all)


def class_conds(model: UNet, params, labels: jax.Array) -> jax.Array:
  return model.apply(params, jnp.asarray(labels, jnp.int32), method=UNet.class_cond)


PREDICTIONS = ("eps", "v")


def _check_prediction(prediction: str):
  if prediction not in PREDICTIONS:
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def target(x0: jax.Array, noise: jax.Array, a: jax.Array, prediction: str = "eps") -> jax.Array:
  """What the network regresses: ``eps``, or ``v = sqrt(a) eps - sqrt(1-a) x0``."""
  _check_prediction(prediction)
  if prediction == "eps":
    return noise
  return jnp.sqrt(a) * noise - jnp.sqrt(1.0 - a) * x0


def eps_of(out: jax.Array, x_t: jax.Array, a: jax.Array, prediction: str = "eps") -> jax.Array:
  """The epsilon a network output means at x_t, alpha_bar a (``v``: sqrt(1-a) x_t + sqrt(a) v)."""
  _check_prediction(prediction)
  if prediction == "eps":
    return out
  return jnp.sqrt(1.0 - a) * x_t + jnp.sqrt(a) * out


def loss(
  model: UNet,
  params,
  images: jax.Array,
  labels: jax.Array,
  rng,
  abar,
  p_uncond=0.1,
  space="linear",
  prediction="eps",
):
  """DDPM MSE on images [B,H,W,3] in [0,1] (``to_model(images, space)``) against ``target``
  (epsilon or v); labels dropped to null w.p. p_uncond."""
  x0 = to_model(images, space)
  b = x0.shape[0]
  k_t, k_n, k_d = jax.random.split(rng, 3)
  t = jax.random.randint(k_t, (b,), 0, abar.shape[0])
  noise = jax.random.normal(k_n, x0.shape)
  a = abar[t][:, None, None, None]
  x_t = jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise
  drop = jax.random.bernoulli(k_d, p_uncond, (b,))
  labels = jnp.where(drop, model.num_classes, labels)
  out = model.apply(params, x_t, t, class_conds(model, params, labels))
  return jnp.mean(jnp.square(out - target(x0, noise, a, prediction)))
