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
  bits, dec = separation.rate_table(images)
  return images, bits, dec


def test_rate_table_monotone_in_quality(table):
  images, bits, dec = table
  # QUALITIES descend 100..1: payload shrinks (weakly) and quality 100 is near-lossless.
  assert np.all(np.diff(bits, axis=1) <= 8)  # allow a byte of jitter between neighbours
  assert bits[:, 0].min() > 4 * bits[:, -1].max()
  err = np.abs(dec[:, 0] - images / 255.0).mean()
  assert err < 0.01


def test_capacity_formula():
  np.testing.assert_allclose(separation.capacity_bits(3072, 1 / 6, 0.0), 512.0)
  np.testing.assert_allclose(separation.capacity_bits(3072, 1 / 6, 10 * np.log10(3.0)), 1024.0)


def test_cliff_and_growth(table):
  images, bits, dec = table
  key = jax.random.key(0)
  rec_lo, q_lo, ok_lo = separation.reconstruct(bits, dec, -20.0, 1 / 6, "awgn", key)
  assert not ok_lo.any() and np.all(q_lo == 0)
  np.testing.assert_array_equal(rec_lo, np.full_like(rec_lo, 0.5))  # nothing fits: grey
  psnr = []
  for snr in (0.0, 10.0, 20.0):
    rec, q, ok = separation.reconstruct(bits, dec, snr, 1 / 6, "awgn", key)
    assert ok.all()
    # Chosen quality is the largest that fits.
    j = [separation.QUALITIES.index(int(x)) for x in q]
    budget = separation.capacity_bits(32 * 32 * 3, 1 / 6, snr)
    assert all(bits[i, jj] <= budget for i, jj in enumerate(j))
    assert all(jj == 0 or bits[i, jj - 1] > budget for i, jj in enumerate(j))
    psnr.append(10 * np.log10(1 / np.mean((rec - images / 255.0) ** 2)))
  assert psnr[0] < psnr[1] < psnr[2]


def test_rayleigh_outage(table):
  _, bits, dec = table
  ok = np.concatenate([separation.reconstruct(bits, dec, 10.0, 1 / 6, "rayleigh",
                                              jax.random.key(i))[2] for i in range(40)])
  # Sender has no CSI: some transmissions are in outage, most are not at 10 dB.
  assert 0.02 < 1 - ok.mean() < 0.6
  with pytest.raises(ValueError, match="unknown channel"):
    separation.reconstruct(bits, dec, 10.0, 1 / 6, "rician", jax.random.key(0))
