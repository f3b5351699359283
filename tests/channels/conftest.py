"""Real photographs for the channel tests (they ship inside skimage and sklearn)."""

import numpy as np
import pytest


def _center_crop(x, h, w):
  top, left = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
  return np.ascontiguousarray(x[top : top + h, left : left + w])


def load_photos():
  """{name: uint8 [H, W, 3]} full-size colour photographs."""
  import skimage.data
  from sklearn.datasets import load_sample_images

  photos = {
    n: getattr(skimage.data, n)()
    for n in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
  }
  china, flower = load_sample_images().images
  photos["china"], photos["flower"] = china, flower
  return photos


@pytest.fixture(scope="session")
def photos():
  return load_photos()


@pytest.fixture(scope="session")
def crops256(photos):
  """(names, uint8 [7, 256, 256, 3]) centre crops of every test photograph."""
  names = sorted(photos)
  return names, np.stack([_center_crop(photos[n], 256, 256) for n in names])


@pytest.fixture(scope="session")
def crops64(photos):
  names = sorted(photos)
  return names, np.stack([_center_crop(photos[n], 64, 64) for n in names])
