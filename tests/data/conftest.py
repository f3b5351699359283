"""Tiny prepared datasets shared by the data tests (built once per session)."""

import numpy as np
import pytest

from stegjax import data

TINY = dict(
  patch_size=8,
  patches_per_photo=6,
  heldout_patches_per_photo=4,
  scales=(1.0, 0.5),
  flip=True,
  seed=3,
)


def tiny_config(**overrides):
  c = data.default_config()
  for k, v in {**TINY, **overrides}.items():
    c[k] = v
  return c


@pytest.fixture(scope="session")
def tiny_photos(tmp_path_factory):
  """(train, heldout, info, config, data_dir) of a tiny bundled-photo patch dataset."""
  data_dir = str(tmp_path_factory.mktemp("photos_ds"))
  config = tiny_config()
  train, heldout, info = data.get_dataset(config, data_dir)
  return train, heldout, info, config, data_dir


@pytest.fixture(scope="session")
def photo_arrays():
  return dict(data.load_photos())


def write_png(path, array):
  from PIL import Image

  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.asarray(array)).save(path)


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
  """``tiny_config(**overrides)``: the tiny ``config.data`` with overrides."""
  return tiny_config


@pytest.fixture(name="write_png")
def write_png_fixture():
  return write_png


@pytest.fixture(name="tiny")
def tiny_fixture():
  return dict(TINY)
