"""The bundled photos: all present, real colour, distinct; clear errors."""

import numpy as np
import pytest

from stegjax.data import photos


def test_all_eleven_photos_load_as_distinct_colour_images(photo_arrays):
  assert len(photos.PHOTO_NAMES) == 11 and len(set(photos.PHOTO_NAMES)) == 11
  assert list(photo_arrays) == list(photos.PHOTO_NAMES)
  means = []
  for name, img in photo_arrays.items():
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
    assert min(img.shape[:2]) >= 256, name  # big enough for multi-scale 32px patches
    # Real colour: the channels are not all equal (not a grey image stored as RGB).
    assert np.abs(img[..., 0].astype(int) - img[..., 2]).mean() > 2, name
    means.append(img.reshape(-1, 3).mean(0))
  means = np.array(means)
  dist = np.abs(means[:, None] - means[None]).sum(-1) + np.eye(11) * 1e9
  assert dist.min() > 1.0  # no photo is loaded twice under two names


def test_stereo_motorcycle_is_the_left_view(photo_arrays):
  import skimage.data

  left, right, _ = skimage.data.stereo_motorcycle()
  np.testing.assert_array_equal(photo_arrays["stereo_motorcycle"], left)
  assert not np.array_equal(left, right)


def test_sklearn_photos_match_load_sample_images(photo_arrays):
  from sklearn.datasets import load_sample_images

  s = load_sample_images()
  for path, img in zip(s.filenames, s.images):
    name = "china" if path.endswith("china.jpg") else "flower"
    np.testing.assert_array_equal(photo_arrays[name], img)


def test_default_heldout_and_split():
  train, held = photos.split_names()
  assert held == photos.DEFAULT_HELDOUT and len(held) == 2
  assert set(train) | set(held) == set(photos.PHOTO_NAMES) and not set(train) & set(held)


@pytest.mark.parametrize(
  "heldout,match",
  [
    (("coffee", "nope"), "nope"),
    (("coffee", "coffee"), "duplicates"),
    (photos.PHOTO_NAMES, "nothing is left"),
  ],
)
def test_split_names_rejects_bad_heldout(heldout, match):
  with pytest.raises(ValueError, match=match):
    photos.split_names(heldout)


def test_unknown_and_missing_photos_raise_clearly(monkeypatch):
  with pytest.raises(ValueError, match="unknown photo 'lena'"):
    photos.load_photo("lena")

  def broken():
    raise OSError("file gone")

  monkeypatch.setitem(photos._LOADERS, "rocket", broken)
  with pytest.raises(FileNotFoundError, match="'rocket'.*file gone"):
    photos.load_photos(["astronaut", "rocket"])
