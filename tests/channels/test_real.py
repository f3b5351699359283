"""The real channels do what their names say, on real photographs."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from stegjax import errors
from stegjax.channels import jpeg, real


def _psnr(a, b):
  return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def test_default_channels_parse():
  assert real.CHANNELS == ("png", "jpeg95", "jpeg85", "jpeg75", "gauss0.01", "scale0.5", "scale2.0")
  parsed = [real.parse(n) for n in real.CHANNELS]
  assert parsed == [
    real.Png(),
    real.Jpeg(95),
    real.Jpeg(85),
    real.Jpeg(75),
    real.Gauss(0.01),
    real.Scale(0.5),
    real.Scale(2.0),
  ]
  assert [c.name for c in parsed] == list(real.CHANNELS)  # the defaults are canonical
  assert [c.stochastic for c in parsed] == [False] * 4 + [True] + [False] * 2
  assert real.parse("jpeg7").quality == 7 and real.parse("gauss.05").std == 0.05
  assert real.parse("scale1.25").factor == 1.25 and real.parse("gauss1e-3").std == 1e-3


@pytest.mark.parametrize(
  "bad",
  [
    "jpeg",
    "jpeg0",
    "jpeg101",
    "jpg75",
    "scale0",
    "scale-1",
    "gauss",
    "gauss-0.1",
    "blur",
    "",
    "png2",
  ],
)
def test_unknown_names_list_the_valid_forms(bad):
  with pytest.raises(errors.ConfigError, match=r"valid forms: png, jpegNN"):
    real.parse(bad)
  with pytest.raises(ValueError, match="unknown channel"):
    real.apply(bad, np.zeros((8, 8, 3), np.uint8))


def test_png_is_lossless(crops64):
  _, x = crops64
  np.testing.assert_array_equal(real.apply("png", x), x)


@pytest.mark.parametrize("q", [95, 85, 75])
def test_jpeg_equals_pil_bytes_decoded(q, crops64):
  _, x = crops64
  out = real.apply(f"jpeg{q}", x)
  for im, o in zip(x, out):
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="JPEG", quality=q, subsampling="4:2:0")
    with Image.open(io.BytesIO(buf.getvalue())) as ref:
      np.testing.assert_array_equal(o, np.asarray(ref.convert("RGB")))
  # The file really is 4:2:0 with the libjpeg tables for that quality.
  with Image.open(io.BytesIO(real.jpeg_bytes(x[0], q))) as im:
    assert [s[1:3] for s in im.layer] == [(2, 2), (1, 1), (1, 1)]
    np.testing.assert_array_equal(
      np.array(im.quantization[0]).reshape(8, 8), np.asarray(jpeg.quality_tables(q)[0])
    )
  assert not np.array_equal(out, x)  # lossy
  assert _psnr(out / 255.0, x / 255.0) > 25.0


def test_gauss_noise_std_and_keys(crops256):
  _, x = crops256
  x = x[:2]
  key = jax.random.key(0)
  y = real.apply("gauss0.01", x, key)
  assert y.dtype == np.uint8 and y.shape == x.shape
  np.testing.assert_array_equal(real.apply("gauss0.01", x, key), y)  # keyed, deterministic
  assert not np.array_equal(real.apply("gauss0.01", x, jax.random.key(1)), y)
  # Residual std on unclipped pixels: sqrt((0.01*255)^2 + 1/12) = 2.566 grey levels.
  inside = (x > 10) & (x < 245)
  r = (y.astype(np.float64) - x)[inside]
  assert abs(np.std(r) - 2.566) < 0.03, np.std(r)
  assert abs(np.mean(r)) < 0.02
  big = real.apply("gauss0.1", x, key).astype(np.float64) - x
  mid = (x > 90) & (x < 165)  # > 3.5 sigma from clipping
  assert abs(np.std(big[mid]) - 25.5) < 0.3, np.std(big[mid])
  with pytest.raises(errors.InputError, match="key"):
    real.apply("gauss0.01", x)


def test_scale_sizes_and_resize_back(crops64):
  _, x = crops64
  small = real.apply_unresized("scale0.5", x)
  assert small.shape == (7, 32, 32, 3)
  assert real.apply_unresized("scale2.0", x).shape == (7, 128, 128, 3)
  odd = real.apply_unresized("scale0.5", x[0, :33, :47])
  assert odd.shape == (16, 24, 3)  # round(33/2)=16 (half to even), round(47/2)=24
  back = real.apply("scale0.5", x)
  assert back.shape == x.shape
  ref = Image.fromarray(x[0]).resize((32, 32), Image.Resampling.BICUBIC)
  np.testing.assert_array_equal(small[0], np.asarray(ref))
  np.testing.assert_array_equal(back[0], np.asarray(ref.resize((64, 64), Image.Resampling.BICUBIC)))
  # Halving loses detail that doubling keeps.
  assert _psnr(back / 255.0, x / 255.0) < _psnr(real.apply("scale2.0", x) / 255.0, x / 255.0)


def test_single_image_equals_batch(crops64):
  _, x = crops64
  for name in ("png", "jpeg75", "scale0.5"):
    np.testing.assert_array_equal(real.apply(name, x[3]), real.apply(name, x)[3])


def test_bad_images():
  with pytest.raises(errors.InputError, match="uint8"):
    real.apply("png", np.zeros((8, 8, 3), np.float32))
  with pytest.raises(ValueError, match="shape"):
    real.apply("png", np.zeros((8, 8), np.uint8))
  with pytest.raises(ValueError, match="RGB"):
    real.apply("png", np.zeros((8, 8, 4), np.uint8))


def test_differentiable_stand_ins_track_the_real_channels(crops256):
  _, x = crops256
  x = x[:3]
  xf = jnp.asarray(x, jnp.float32) / 255.0
  key = jax.random.key(2)
  for name in ("png", "gauss0.01"):
    np.testing.assert_array_equal(np.asarray(real.differentiable(name)(xf, key)), np.asarray(xf))
  # scaleF: jax.image.resize bicubic (antialiased) vs PIL bicubic; measured 54.5-56.3 dB.
  for name in ("scale0.5", "scale2.0"):
    fn = jax.jit(real.differentiable(name))
    out = fn(xf, key)
    assert out.shape == xf.shape
    assert _psnr(out, real.apply(name, x) / 255.0) > 50.0, name
  # jpegNN: JPEG-SS (>= 33 dB, see test_jpeg) and the exact-forward "ste" variant.
  ss = jax.jit(real.differentiable("jpeg75"))(xf, key)
  ste = jax.jit(real.differentiable("jpeg75", jpeg_mode="ste"))(xf, key)
  ref = real.apply("jpeg75", x) / 255.0
  assert 33.0 < _psnr(ss, ref) < _psnr(ste, ref)
  noisy = real.differentiable("gauss0.01", simulate_noise=True)(xf, key)
  assert abs(float(jnp.std(noisy - xf)) - 0.01) < 1e-3
  g = jax.jit(jax.grad(lambda v: jnp.sum(real.differentiable("scale0.5")(v, key) ** 2)))(xf)
  assert np.all(np.isfinite(np.asarray(g))) and float(jnp.max(jnp.abs(g))) > 0
  with pytest.raises(errors.ConfigError, match="jpeg_mode"):
    real.differentiable("jpeg75", jpeg_mode="exact")
