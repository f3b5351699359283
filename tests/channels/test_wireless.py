"""AWGN and Rayleigh block fading: SNRs, gains, equalization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.channels import wireless

_awgn = jax.jit(wireless.awgn)
_rayleigh = jax.jit(wireless.rayleigh, static_argnames=("equalize", "return_gain"))


def _snr_db(x, y):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  axes = tuple(range(1, x.ndim))
  return 10 * np.log10(np.mean(x**2, axis=axes) / np.mean((y - x) ** 2, axis=axes))


def test_power_normalize_per_example():
  x = (
    jax.random.normal(jax.random.key(0), (4, 3, 5, 6))
    * jnp.array([0.1, 1.0, 7.0, 300.0])[:, None, None, None]
  )
  z = jax.jit(wireless.power_normalize)(x)
  np.testing.assert_allclose(np.mean(np.asarray(z) ** 2, axis=(1, 2, 3)), 1.0, rtol=1e-5)
  # A positive rescaling of each example, nothing else.
  ratio = np.asarray(z / x).reshape(4, -1)
  np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-5)
  np.testing.assert_allclose(
    np.mean(np.asarray(wireless.power_normalize(x, power=2.0)) ** 2, axis=(1, 2, 3)), 2.0, rtol=1e-5
  )


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0])
def test_awgn_measured_snr(snr):
  x = wireless.power_normalize(jax.random.normal(jax.random.key(1), (1, 10**6)))
  y = _awgn(x, jnp.float32(snr), jax.random.key(2))
  assert abs(_snr_db(x, y)[0] - snr) < 0.1  # stderr ~0.006 dB at 10^6 symbols


def test_awgn_per_example_snr_and_keys():
  snr = jnp.array([-5.0, 0.0, 10.0, 25.0])
  x = wireless.power_normalize(jax.random.normal(jax.random.key(3), (4, 500, 500)))
  y = _awgn(x, snr, jax.random.key(4))
  np.testing.assert_allclose(_snr_db(x, y), np.asarray(snr), atol=0.1)
  np.testing.assert_array_equal(np.asarray(_awgn(x, snr, jax.random.key(4))), np.asarray(y))
  assert not np.array_equal(np.asarray(_awgn(x, snr, jax.random.key(5))), np.asarray(y))
  with pytest.raises(ValueError, match="snr_db"):
    wireless.awgn(x, jnp.zeros(3), jax.random.key(0))


def test_rayleigh_gain_unit_power():
  h = np.asarray(wireless.rayleigh_gain(jax.random.key(6), 200_000))
  p = np.abs(h) ** 2
  assert abs(np.mean(p) - 1.0) < 0.01  # stderr 0.0022
  assert abs(np.mean(p > 1.0) - np.exp(-1.0)) < 0.005  # |h|^2 ~ Exp(1)
  assert abs(np.mean(h.real)) < 0.01 and abs(np.mean(h.imag)) < 0.01
  # The gains the channel actually uses, one per example.
  x = wireless.power_normalize(jax.random.normal(jax.random.key(7), (50_000, 4)))
  _, hh = _rayleigh(x, 10.0, jax.random.key(8), return_gain=True)
  assert hh.shape == (50_000,)
  assert abs(float(jnp.mean(jnp.abs(hh) ** 2)) - 1.0) < 0.02


def test_rayleigh_received_snr_and_pairing():
  # Unequalized: y = h z + n with complex pairs z = x[2i] + j x[2i+1]; mean SNR equals the request.
  x = wireless.power_normalize(jax.random.normal(jax.random.key(9), (20_000, 2, 25)))
  y, h = _rayleigh(x, 5.0, jax.random.key(10), equalize=False, return_gain=True)
  xc = np.asarray(x).reshape(20_000, 25, 2)
  z = xc[..., 0] + 1j * xc[..., 1]
  yr = np.asarray(y).reshape(20_000, 25, 2)
  yc = yr[..., 0] + 1j * yr[..., 1]
  hz = np.asarray(h)[:, None] * z
  snr = 10 * np.log10(np.mean(np.abs(hz) ** 2) / np.mean(np.abs(yc - hz) ** 2))
  assert abs(snr - 5.0) < 0.1, snr
  # Noise is the same per real part as AWGN at this SNR.
  assert abs(np.var(np.real(yc - hz)) - 10**-0.5) < 0.01


def test_equalized_rayleigh_at_high_snr_returns_input():
  x = wireless.power_normalize(jax.random.normal(jax.random.key(11), (16, 8, 8, 4)))
  y = _rayleigh(x, 100.0, jax.random.key(12))
  np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-3)
  y_raw = _rayleigh(x, 100.0, jax.random.key(12), equalize=False)
  assert np.max(np.abs(np.asarray(y_raw - x))) > 0.1  # fading really happened
  # At moderate SNR the equalized error scales as sigma^2 / |h|^2 per example.
  y10, h = _rayleigh(x, jnp.full((16,), 10.0), jax.random.key(13), return_gain=True)
  err = np.mean(np.asarray(y10 - x) ** 2, axis=(1, 2, 3)) * np.abs(np.asarray(h)) ** 2
  assert abs(np.mean(err) - 0.1) < 0.02


def test_gradients_and_errors():
  x = jax.random.normal(jax.random.key(14), (2, 6))
  for fn in (
    lambda v: wireless.awgn(wireless.power_normalize(v), 3.0, jax.random.key(0)),
    lambda v: wireless.rayleigh(wireless.power_normalize(v), 3.0, jax.random.key(0)),
  ):
    g = jax.jit(jax.grad(lambda v: jnp.sum(fn(v) ** 2)))(x)
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.max(jnp.abs(g))) > 0
  with pytest.raises(ValueError, match="even"):
    wireless.rayleigh(jnp.zeros((2, 3)), 10.0, jax.random.key(0))
  with pytest.raises(ValueError, match=r"\[B, ...\]"):
    wireless.awgn(jnp.zeros((5,)), 10.0, jax.random.key(0))
