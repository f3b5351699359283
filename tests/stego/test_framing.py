import numpy as np
import pytest

from stegjax.stego import framing, prf


def test_round_trip_with_carrier_padding():
  for msg in (b"", b"x", bytes(range(256)) * 3):
    bits = framing.pack(msg, b"s3cret", 42)
    assert bits.dtype == np.uint8 and bits.size == framing.framed_bits(len(msg))
    padded = np.concatenate([bits, np.random.default_rng(0).integers(0, 2, 77).astype(np.uint8)])
    assert framing.unpack(padded, b"s3cret", 42) == msg


def test_bits_look_random_and_depend_on_counter():
  a = framing.pack(b"\x00" * 512, b"k", 1)
  b = framing.pack(b"\x00" * 512, b"k", 2)
  assert not np.array_equal(a, b)
  assert abs(a.mean() - 0.5) < 0.03  # 4k bits of an all-zero message
  # the header is encrypted too: two different lengths do not share a readable header
  c = framing.pack(b"\x00" * 3, b"k", 1)
  assert not np.array_equal(a[: framing.HEADER_BITS], c[: framing.HEADER_BITS])


def test_errors():
  bits = framing.pack(b"hello stego", b"key", 7)
  with pytest.raises(framing.WrongKeyError):
    framing.unpack(bits, b"other key", 7)
  with pytest.raises(framing.WrongKeyError):
    framing.unpack(bits, b"key", 8)  # wrong counter
  for i in (framing.HEADER_BITS + 3, bits.size - 1):  # body and tag bit flips
    flipped = bits.copy()
    flipped[i] ^= 1
    with pytest.raises(framing.CorruptedError):
      framing.unpack(flipped, b"key", 7)
  with pytest.raises(framing.TooShortError) as e:
    framing.unpack(bits[:-20], b"key", 7)
  assert e.value.missing == 20 and "20 bits missing" in str(e.value)
  with pytest.raises(framing.TooShortError):
    framing.unpack(bits[:10], b"key", 7)
  assert issubclass(framing.CorruptedError, framing.FramingError)
  with pytest.raises(ValueError, match="counter"):
    framing.pack(b"x", b"key", 2**32)
  with pytest.raises(ValueError, match="0 and 1"):
    framing.unpack(bits * 2, b"key", 7)


def test_sampling_key_is_prf_key_and_distinct_from_encryption():
  k = framing.sampling_key(b"abc")
  np.testing.assert_array_equal(k, prf.make_key(b"abc"))
  aead, header = framing._keys(b"abc")
  assert prf.words_to_bytes(k) not in (aead, header) and aead != header
