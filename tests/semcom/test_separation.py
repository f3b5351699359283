"""JPEG + ideal channel code baseline: rate table, capacity and the cliff."""

import jax
import numpy as np
import pytest
from skimage import data

from stegjax.semcom import separation


@pytest.fixture(scope="module")
def table():
  img = data.astronaut()
  images = np.stack([img[100:132, 200:232], img[300:332, 50:82]])
  return images, separation.rate_table(images)


def test_rate_table_monotone_in_quality(table):
  images, tab = table
  bits, dec = tab.bits, tab.decoded
  # QUALITIES descend 100..1: payload shrinks (weakly) and quality 100 is near-lossless.
  assert np.all(np.diff(bits, axis=1) <= 8)  # allow a byte of jitter between neighbours
  assert bits[:, 0].min() > 4 * bits[:, -1].max()
  err = np.abs(dec[:, 0] - images / 255.0).mean()
  assert err < 0.01
  # The whole file carries the headers (hundreds of bytes) on top of the payload.
  assert np.all(tab.file_bits - bits > 8 * 300)
  np.testing.assert_allclose(
    tab.mse[:, 0], np.mean((dec[:, 0] - images / 255.0) ** 2, axis=(1, 2, 3)), rtol=1e-5
  )


def test_capacity_formula():
  np.testing.assert_allclose(separation.capacity_bits(3072, 1 / 6, 0.0), 512.0)
  np.testing.assert_allclose(separation.capacity_bits(3072, 1 / 6, 10 * np.log10(3.0)), 1024.0)


def test_cliff_and_growth(table):
  images, tab = table
  bits = tab.bits
  key = jax.random.key(0)
  rec_lo, q_lo, ok_lo = separation.reconstruct(tab, -20.0, 1 / 6, "awgn", key)
  assert not ok_lo.any() and np.all(q_lo == 0)
  np.testing.assert_array_equal(rec_lo, np.full_like(rec_lo, 0.5))  # nothing fits: grey
  psnr = []
  for snr in (0.0, 10.0, 20.0):
    rec, q, ok = separation.reconstruct(tab, snr, 1 / 6, "awgn", key)
    assert ok.all()
    # Chosen quality is the largest that fits.
    j = [separation.QUALITIES.index(int(x)) for x in q]
    budget = separation.capacity_bits(32 * 32 * 3, 1 / 6, snr)
    assert all(bits[i, jj] <= budget for i, jj in enumerate(j))
    assert all(jj == 0 or bits[i, jj - 1] > budget for i, jj in enumerate(j))
    psnr.append(10 * np.log10(1 / np.mean((rec - images / 255.0) ** 2)))
  assert psnr[0] < psnr[1] < psnr[2]
  # Counting the headers, a 32x32 image does not fit at 10 dB (1771 bits): the cliff.
  _, q_file, ok_file = separation.reconstruct(tab, 10.0, 1 / 6, "awgn", key, size="file")
  assert not ok_file.any() and np.all(q_file == 0)


def test_rayleigh_outage(table):
  _, tab = table
  snr = 10.0
  ok, q = [], []
  for i in range(200):
    _, qi, oki = separation.reconstruct(tab, snr, 1 / 6, "rayleigh", jax.random.key(i))
    ok.append(oki)
    q.append(qi)
  ok, q = np.concatenate(ok), np.stack(q)
  # The sender has no CSI: its choice does not depend on h, and it backs off from
  # the AWGN rate to limit outage, yet some transmissions are still lost.
  assert np.all(q == q[:1])
  _, q_awgn, _ = separation.reconstruct(tab, snr, 1 / 6, "awgn", jax.random.key(0))
  assert np.all(q[0] <= q_awgn) and np.any(q[0] < q_awgn)
  assert 0.01 < 1 - ok.mean() < 0.5
  # Empirical outage matches the formula for the chosen sizes.
  j = [separation.QUALITIES.index(int(x)) for x in q[0]]
  p = separation.outage_probability(tab.bits[np.arange(len(j)), j], 32 * 32 * 3, 1 / 6, snr)
  np.testing.assert_allclose(1 - ok.mean(), p.mean(), atol=0.06)
  with pytest.raises(ValueError, match="unknown channel"):
    separation.reconstruct(tab, 10.0, 1 / 6, "rician", jax.random.key(0))


def test_rayleigh_ergodic():
  # E[log2(1 + g SNR)] with g ~ Exp(1): below log2(1 + SNR) (Jensen), matches Monte Carlo.
  g = np.random.default_rng(0).exponential(size=400_000)
  for snr_db in (0.0, 10.0, 20.0):
    erg = separation.ergodic_capacity_bits(3072, 1 / 6, snr_db)
    mc = 512 * np.mean(np.log2(1 + g * 10 ** (snr_db / 10)))
    np.testing.assert_allclose(erg, mc, rtol=5e-3)
    assert erg < separation.capacity_bits(3072, 1 / 6, snr_db)


def test_ergodic_always_delivered(table):
  _, tab = table
  _, q, ok = separation.reconstruct(
    tab, 5.0, 1 / 6, "rayleigh", jax.random.key(0), rayleigh="ergodic"
  )
  assert ok.all() and np.all(q > 0)
