"""One registry of channels: names parse to channels, canonical names round trip, clear errors."""

import jax
import numpy as np
import pytest

from stegjax import channels, errors
from stegjax.channels import real, wireless


@pytest.mark.parametrize(
  "name, canonical",
  [
    ("png", "png"),
    (" JPEG75 ", "jpeg75"),
    ("gauss.05", "gauss0.05"),
    ("gauss1e-3", "gauss0.001"),
    ("scale2", "scale2.0"),
    ("scale0.5", "scale0.5"),
    ("awgn", "awgn"),
    ("Rayleigh", "rayleigh"),
    ("mixed", "mixed"),
  ],
)
def test_canonical_names_round_trip(name, canonical):
  ch = channels.get(name)
  assert ch.name == canonical
  assert channels.get(ch.name) == ch
  assert isinstance(ch, channels.Channel)


def test_kinds_are_checked():
  assert isinstance(channels.image_channel("jpeg75"), channels.ImageChannel)
  assert isinstance(channels.wireless_channel("awgn"), channels.WirelessChannel)
  with pytest.raises(errors.ConfigError, match=r"'awgn' \(kind wireless, expected kind image\)"):
    channels.image_channel("awgn")
  with pytest.raises(errors.ConfigError, match=r"valid forms: awgn, rayleigh"):
    channels.wireless_channel("jpeg75")
  with pytest.raises(errors.ConfigError, match="not a string"):
    channels.get(75)


def test_error_lists_every_registered_form():
  with pytest.raises(errors.ConfigError) as err:
    channels.get("fax")
  for form in channels.forms():
    assert form in str(err.value)
  assert set(channels.forms(channels.WirelessChannel)) < set(channels.forms())


def test_stochastic_flags():
  assert channels.image_channel("gauss0.01").stochastic
  assert not any(channels.image_channel(n).stochastic for n in ("png", "jpeg75", "scale0.5"))
  assert all(channels.wireless_channel(n).stochastic for n in ("awgn", "rayleigh", "mixed"))
  fading = [channels.wireless_channel(n).fading for n in ("awgn", "rayleigh", "mixed")]
  assert fading == [False, True, None]


def test_stand_ins_share_a_compiled_form_where_only_a_parameter_differs():
  a, b = channels.image_channel("jpeg75").stand_in(), channels.image_channel("jpeg30").stand_in()
  assert a.form == b.form and hash(a.form) == hash(b.form) and (a.param, b.param) == (75.0, 30.0)
  assert channels.image_channel("png").stand_in() == channels.image_channel("gauss0.1").stand_in()
  s1, s2 = (channels.image_channel(n).stand_in().form for n in ("scale0.5", "scale2.0"))
  assert s1 != s2  # a factor changes shapes: it stays static
  assert channels.image_channel("jpeg75").stand_in(jpeg_mode="ste").form == real.DiffJpeg("ste")


def test_wireless_channels_apply_the_wireless_functions():
  z = wireless.power_normalize(jax.random.normal(jax.random.key(0), (4, 6, 6, 2)))
  k = jax.random.key(1)
  np.testing.assert_array_equal(
    channels.wireless_channel("awgn").apply(z, 3.0, k), wireless.awgn(z, 3.0, k)
  )
  np.testing.assert_array_equal(
    jax.jit(channels.wireless_channel("rayleigh").apply)(z, 3.0, k),
    jax.jit(lambda z, s, k: wireless.rayleigh(z, s, k, equalize=True))(z, 3.0, k),
  )
  # mixed: each example is exactly one of the two channels' outputs, and both occur.
  z = wireless.power_normalize(jax.random.normal(jax.random.key(2), (16, 4, 4, 2)))
  y = np.asarray(channels.wireless_channel("mixed").apply(z, 5.0, k))
  k_a, k_r, _ = jax.random.split(k, 3)
  ya, yr = np.asarray(wireless.awgn(z, 5.0, k_a)), np.asarray(wireless.rayleigh(z, 5.0, k_r))
  is_a = np.all(y == ya, axis=(1, 2, 3))
  is_r = np.all(y == yr, axis=(1, 2, 3))
  assert np.all(is_a ^ is_r) and is_a.any() and is_r.any()
