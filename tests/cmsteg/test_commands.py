"""The command helpers: image folders and lists, captions beside images, M2's stand-in from files."""

import numpy as np
import pytest
from PIL import Image

from stegjax import errors
from stegjax.channels import real
from stegjax.cmsteg import commands


def test_stand_in_from_the_files(tmp_path):
  x = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
  for q in (70, 75, 85, 95):
    p = tmp_path / f"a{q}.jpg"
    p.write_bytes(real.jpeg_bytes(x, q))
    assert commands.channel_of_files([str(p)], "jpeg85") == f"jpeg{q}"
  Image.fromarray(x).save(tmp_path / "b.png")
  assert commands.channel_of_files([str(tmp_path / "b.png")], "jpeg85") == "png"
  other = tmp_path / "c.jpg"
  Image.fromarray(x).save(other, quality=90, qtables="web_high")  # tables PIL's scale never writes
  assert commands.channel_of_files([str(other)], "jpeg85") == "jpeg85"


def test_image_folders_and_lists(tmp_path):
  x = np.zeros((8, 8, 3), np.uint8)
  for n in ("stego_001.png", "stego_000.png"):
    Image.fromarray(x).save(tmp_path / n)
  (tmp_path / "stego_000.txt").write_text("a caption is not an image")
  got = commands.image_paths(str(tmp_path))
  assert [p.rsplit("/", 1)[1] for p in got] == ["stego_000.png", "stego_001.png"]
  assert commands.image_paths(f"{got[1]},{got[0]}") == [got[1], got[0]]
  with pytest.raises(errors.MissingFileError):
    commands.image_paths(str(tmp_path / "none.png"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(errors.MissingFileError, match="no images"):
    commands.image_paths(str(tmp_path / "empty"))
