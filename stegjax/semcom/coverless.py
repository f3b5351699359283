"""Coverless stego SemCom (survey Sec. IV, Fig. 3; CRoSS): DDIM inversion under keyed conditions.

Sender: secret --DDIM inversion under the private condition--> x_T --DDIM generation under
the public condition--> stego. Receiver: stego (after the channel) --inversion under the
public condition--> x_T --generation under the private condition--> secret.

- ``ddim_generate`` / ``ddim_invert``: deterministic DDIM (Song et al. 2021, eq. 12 with
  sigma = 0) over ``num_steps`` evenly spaced steps, with classifier-free guidance. Plain
  inversion replaces eps(x_t) by eps(x_{t-1}) (the usual approximation); with
  ``fixed_point_iters`` > 0 each inversion step instead solves x_t = step^-1(x_{t-1},
  eps(x_t)) by fixed-point iteration, so it inverts the generation step itself.
- Keys: the private condition is a keyed point of the condition-embedding space,
  ``keyed_direction(secret, cls)`` = HKDF-SHA256(shared secret, info = class) mapped to a
  unit Gaussian direction, added to the class's embedding with a configured strength
  (``private_cond``). The public condition is the cover class's embedding. Guessing the
  class gives the embedding without the keyed direction.
- ``latent_scramble``: an optional second use of the same key: a keyed block permutation and
  sign flip of x_T between the private inversion and the public generation
  (DiffStega-style noise shuffling). It preserves N(0, I) exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from scipy import stats

from stegjax.models import diffusion

# ----------------------------------------------------------------------------- DDIM


def ddim_schedule(abar: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
  """(taus [S], alphas [S+1]): model steps tau_i = i*T/S and alpha_bar per level, alphas[0] = 1."""
  t_max = abar.shape[0]
  if not 1 <= num_steps <= t_max:
    raise ValueError(f"DDIM steps must be in [1, {t_max}], got {num_steps}")
  taus = jnp.asarray(np.arange(num_steps) * (t_max // num_steps), jnp.int32)
  return taus, jnp.concatenate([jnp.ones((1,), jnp.float32), abar[taus]])


EpsFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (x, tau, cond) -> eps


def guided_eps_fn(
  model: diffusion.UNet, params, guidance: float, abar=None, prediction: str = "eps"
) -> EpsFn:
  """eps = eps_null + w (eps_cond - eps_null) (Ho & Salimans 2022); w = 1 is plain conditional.

  A ``v`` model's output becomes epsilon through ``diffusion.eps_of`` at alpha_bar[tau]
  (``abar`` needed); the guidance is linear, so guiding v or epsilon is the same."""
  null = diffusion.class_conds(model, params, jnp.array([model.num_classes]))[0]
  if prediction != "eps" and abar is None:
    raise ValueError("a v-prediction model needs the noise schedule (abar)")

  def eps_fn(x, tau, cond):
    b = x.shape[0]
    t = jnp.full((b,), tau, jnp.int32)
    if guidance == 1.0:
      out = model.apply(params, x, t, cond)
    else:
      both = model.apply(
        params,
        jnp.concatenate([x, x]),
        jnp.concatenate([t, t]),
        jnp.concatenate([cond, jnp.broadcast_to(null, cond.shape)]),
      )
      e_c, e_u = jnp.split(both, 2)
      out = e_u + guidance * (e_c - e_u)
    if prediction == "eps":
      return out
    return diffusion.eps_of(out, x, abar[tau], prediction)

  return eps_fn


def _to_x0(x, eps, a):
  return (x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)


def _from_x0(x0, eps, a):
  return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * eps


def ddim_generate(eps_fn: EpsFn, x_T, cond, abar, num_steps: int, space="linear") -> jax.Array:
  """x_T [B,H,W,3] (noise scale) -> image [B,H,W,3] (``diffusion.to_image``: in [0, 1] only
  by construction in the ``soft`` space; ``linear`` is not clipped)."""
  taus, alphas = ddim_schedule(abar, num_steps)

  def step(x, i):
    eps = eps_fn(x, taus[i], cond)
    return _from_x0(_to_x0(x, eps, alphas[i + 1]), eps, alphas[i]), None

  x, _ = jax.lax.scan(step, x_T, jnp.arange(num_steps - 1, -1, -1))
  return diffusion.to_image(x, space)


def ddim_invert(
  eps_fn: EpsFn, image, cond, abar, num_steps: int, fixed_point_iters: int = 0, space="linear"
) -> jax.Array:
  """Image [B,H,W,3] in [0,1] -> x_T such that ``ddim_generate`` (same cond) returns it."""
  taus, alphas = ddim_schedule(abar, num_steps)

  def step(x_prev, i):
    a_prev, a = alphas[i], alphas[i + 1]
    inv = lambda eps: _from_x0(_to_x0(x_prev, eps, a_prev), eps, a)
    x = inv(eps_fn(x_prev, taus[i], cond))
    x = jax.lax.fori_loop(0, fixed_point_iters, lambda _, x: inv(eps_fn(x, taus[i], cond)), x)
    return x, None

  x, _ = jax.lax.scan(step, diffusion.to_model(image, space), jnp.arange(num_steps))
  return x


# ----------------------------------------------------------------------------- keys


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
  return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def keyed_direction(secret: bytes, cls: int, dim: int) -> np.ndarray:
  """Unit vector [dim] from HKDF(secret, info = 'stegjax coverless condition' | class).

  A pure function of (secret, class): uniforms from the HKDF stream go through the normal
  quantile (an isotropic Gaussian direction), then are normalized.
  """
  if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
    raise ValueError("the shared secret must be at least 16 bytes")
  raw = _hkdf(bytes(secret), b"stegjax coverless condition|%d" % int(cls), 4 * dim)
  u = (np.frombuffer(raw, ">u4").astype(np.float64) + 0.5) / 2.0**32
  g = stats.norm.ppf(u)
  return (g / np.linalg.norm(g)).astype(np.float32)


def embedding_scale(model: diffusion.UNet, params, classes) -> float:
  """Mean norm of the trained classes' embeddings: the scale a keyed direction is added at."""
  e = diffusion.class_conds(model, params, jnp.asarray(classes))
  return float(jnp.mean(jnp.linalg.norm(e, axis=-1)))


def private_cond(model, params, secret: bytes, cls: int, strength: float, scale: float):
  """The private condition [cond_dim]: embedding(cls) + strength * scale * keyed_direction."""
  base = diffusion.class_conds(model, params, jnp.array([cls]))[0]
  return base + strength * scale * jnp.asarray(keyed_direction(secret, cls, model.cond_dim))


@dataclasses.dataclass(frozen=True)
class LatentScramble:
  """Keyed block permutation and sign flip of x_T (an orthogonal map: N(0, I) is preserved)."""

  perm: np.ndarray  # [num_blocks]
  signs: np.ndarray  # [num_blocks] of +-1
  block: int

  @classmethod
  def from_secret(cls, secret: bytes, image_size: int, block: int) -> "LatentScramble":
    if image_size % block:
      raise ValueError(f"image size {image_size} is not a multiple of the latent block {block}")
    n = (image_size // block) ** 2
    raw = _hkdf(bytes(secret), b"stegjax coverless latent", 8 * n)
    words = np.frombuffer(raw, ">u8")
    perm = np.argsort(words[:n] >> np.uint64(1), kind="stable").astype(np.int32)
    signs = np.where(words & np.uint64(1), -1.0, 1.0).astype(np.float32)
    return cls(perm, signs, block)

  def _blocks(self, x):
    b, h, w, c = x.shape
    k = self.block
    return x.reshape(b, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, k, k, c)

  def _image(self, blocks, shape):
    b, h, w, c = shape
    k = self.block
    x = blocks.reshape(b, h // k, w // k, k, k, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(shape)

  def apply(self, x):
    chex.assert_rank(x, 4)
    blocks = self._blocks(x) * jnp.asarray(self.signs)[None, :, None, None, None]
    return self._image(blocks[:, self.perm], x.shape)

  def invert(self, x):
    chex.assert_rank(x, 4)
    blocks = self._blocks(x)[:, np.argsort(self.perm)]
    return self._image(blocks * jnp.asarray(self.signs)[None, :, None, None, None], x.shape)


# ----------------------------------------------------------------------------- the scheme


@dataclasses.dataclass(frozen=True)
class PrivateKey:
  """What the legitimate pair derive from their shared secret: a condition (and a scramble)."""

  cond: jax.Array  # [cond_dim]
  scramble: LatentScramble | None = None


def make_private_key(
  model,
  params,
  secret: bytes,
  cls: int,
  strength: float,
  scale: float,
  latent_block: int = 0,
  image_size: int = 0,
) -> PrivateKey:
  """``private_cond`` plus, when ``latent_block`` > 0, the keyed ``LatentScramble``."""
  cond = private_cond(model, params, secret, cls, strength, scale)
  scr = LatentScramble.from_secret(secret, image_size, latent_block) if latent_block else None
  return PrivateKey(cond, scr)


@dataclasses.dataclass(frozen=True)
class Sampler:
  """DDIM settings shared by sender and receiver."""

  eps_fn: EpsFn
  abar: jax.Array
  steps: int
  fixed_point_iters: int
  space: str = "linear"  # the model's pixel space (``diffusion.to_model``)

  def invert(self, image, cond):
    return ddim_invert(
      self.eps_fn, image, cond, self.abar, self.steps, self.fixed_point_iters, self.space
    )

  def generate(self, z, cond):
    return ddim_generate(self.eps_fn, z, cond, self.abar, self.steps, self.space)


def _bcast(cond, b):
  return jnp.broadcast_to(cond, (b, cond.shape[-1]))


def hide(sampler: Sampler, secret, key: PrivateKey, public_cond) -> jax.Array:
  """Secret images [B,H,W,3] in [0,1] -> stego images (invert private, generate public)."""
  z = sampler.invert(secret, _bcast(key.cond, secret.shape[0]))
  if key.scramble is not None:
    z = key.scramble.apply(z)
  return sampler.generate(z, public_cond)


def public_latent(sampler: Sampler, received, public_cond) -> jax.Array:
  """The receiver's (and any eavesdropper's) first step: invert under the public condition."""
  return sampler.invert(received, public_cond)


def reveal(sampler: Sampler, z, key: PrivateKey) -> jax.Array:
  """x_T from ``public_latent`` -> the secret, with the (legitimate or guessed) private key."""
  if key.scramble is not None:
    z = key.scramble.invert(z)
  return sampler.generate(z, _bcast(key.cond, z.shape[0]))


def reveal_many(generate: Callable, z, keys: list[PrivateKey]) -> jax.Array:
  """``reveal`` of the same x_T [B,...] under many keys in one generation call: [K,B,H,W,3]."""
  zs = [k.scramble.invert(z) if k.scramble is not None else z for k in keys]
  conds = [_bcast(k.cond, z.shape[0]) for k in keys]
  return generate(jnp.concatenate(zs), jnp.concatenate(conds)).reshape(len(keys), *z.shape)


def round_trips(sampler: Sampler, secret, key: PrivateKey, public_cond):
  """Noise-free exactness: (invert + regenerate under the private condition alone, the whole
  scheme hide -> public_latent -> reveal with a lossless channel)."""
  cond = _bcast(key.cond, secret.shape[0])
  same = sampler.generate(sampler.invert(secret, cond), cond)
  stego = hide(sampler, secret, key, public_cond)
  return same, reveal(sampler, public_latent(sampler, stego, public_cond), key)
