"""Every config file builds at every size, names its experiment, and rejects an unknown size."""

import glob
import os

import pytest

from stegjax import config_lib, errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


def _load(path):
  return config_lib.sibling(path, os.path.splitext(os.path.basename(path))[0])


def test_every_config_file_is_found():
  assert len(FILES) >= 9


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_builds_at_every_size(path):
  module = _load(path)
  names = set()
  for size in config_lib.SIZES:
    config = module.get_config(size)
    assert config.experiment and config.name, (path, size)
    names.add(config.name)
  assert module.get_config(None).name == module.get_config("cpu").name
  # one workdir per size: sizes never share a results folder
  assert len(names) == len(config_lib.SIZES), names
  with pytest.raises(errors.ConfigError, match="unknown config size"):
    module.get_config("huge")
