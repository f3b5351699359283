"""Patch datasets: contents, labels, held-out split, reuse, folders, user errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from stegjax import data, errors
from stegjax.data import dataset, patches, photos


def _reference_patch(image, crop, flipped, patch_size):
  """Independent re-implementation: crop, PIL bicubic resize, flip."""
  y0, x0, side = (int(v) for v in crop)
  assert 0 <= y0 and y0 + side <= image.shape[0] and 0 <= x0 and x0 + side <= image.shape[1]
  patch = image[y0 : y0 + side, x0 : x0 + side]
  if side != patch_size:
    patch = np.asarray(
      Image.fromarray(patch).resize((patch_size, patch_size), Image.Resampling.BICUBIC)
    )
  return patch[:, ::-1] if flipped else patch


def test_writes_npy_memmaps_and_reads_back(tiny_photos, tiny):
  train, heldout, info, _, _ = tiny_photos
  d = info["dataset_dir"]
  assert sorted(os.listdir(d)) == sorted(
    [dataset.INFO] + [f"{s}.{k}.npy" for s in patches.SPLITS for k in dataset.FIELDS]
  )
  n_train, n_held = 9 * tiny["patches_per_photo"], 2 * tiny["heldout_patches_per_photo"]
  assert (info["num_train"], info["num_heldout"]) == (n_train, n_held)
  assert train["image"].shape == (n_train, 8, 8, 3) and train["image"].dtype == np.uint8
  assert isinstance(train["image"], np.memmap) and not train["image"].flags.writeable
  assert train["label"].dtype == np.int32 and heldout["label"].shape == (n_held,)
  assert train["crop"].shape == (n_train, 3) and train["flipped"].dtype == np.bool_
  assert info["class_names"] == list(photos.PHOTO_NAMES) and info["num_classes"] == 11
  assert info["patch_size"] == 8
  with open(os.path.join(d, dataset.INFO)) as f:
    assert json.load(f)["counts"] == {"train": n_train, "heldout": n_held}
  # Photos interleave (not one photo's patches after another's): batches mix classes.
  assert len(set(train["label"][: 2 * tiny["patches_per_photo"]].tolist())) > 2
  with pytest.raises(ValueError, match="split 'test'"):
    data.load_arrays(d, "test")
  with pytest.raises(errors.MissingFileError):
    data.load_arrays(os.path.dirname(d), "train")


def test_every_patch_is_a_crop_of_the_photo_its_label_names(tiny_photos, photo_arrays):
  train, heldout, info, _, _ = tiny_photos
  sides = set()
  for arrays in (train, heldout):
    for img, label, source, crop, fl in zip(
      arrays["image"], arrays["label"], arrays["source"], arrays["crop"], arrays["flipped"]
    ):
      photo = photo_arrays[photos.PHOTO_NAMES[label]]
      assert source == label
      np.testing.assert_array_equal(img, _reference_patch(photo, crop, fl, 8))
      sides.add(int(crop[2]))
      if crop[2] == 8:  # scale 1: an exact crop, which another photo cannot supply
        other = photo_arrays[photos.PHOTO_NAMES[(label + 1) % 11]]
        y, x = min(crop[0], other.shape[0] - 8), min(crop[1], other.shape[1] - 8)
        assert not np.array_equal(img, _reference_patch(other, (y, x, 8), fl, 8))
  assert sides == {8, 16}  # both scales (1 and 1/2) occur
  flips = np.concatenate([train["flipped"], heldout["flipped"]])
  assert 0 < flips.mean() < 1  # both flipped and unflipped patches occur


def test_scale_one_without_flips_gives_exact_unflipped_crops(tmp_path, photo_arrays, tiny_config):
  cfg = tiny_config(scales=(1.0,), flip=False, patches_per_photo=3, heldout_patches_per_photo=2)
  train, heldout, _ = data.get_dataset(cfg, str(tmp_path))
  assert not train["flipped"].any() and (train["crop"][:, 2] == 8).all()
  for img, label, crop in zip(train["image"], train["label"], train["crop"]):
    y, x, _ = crop
    np.testing.assert_array_equal(
      img, photo_arrays[photos.PHOTO_NAMES[label]][y : y + 8, x : x + 8]
    )


def test_heldout_photos_never_appear_in_train(tiny_photos, tiny):
  train, heldout, info, _, _ = tiny_photos
  held = {photos.PHOTO_NAMES.index(n) for n in photos.DEFAULT_HELDOUT}
  assert info["heldout_images"] == list(photos.DEFAULT_HELDOUT)
  assert set(np.unique(heldout["label"]).tolist()) == held
  assert set(np.unique(train["label"]).tolist()) == set(range(11)) - held
  assert info["train_labels"] == sorted(set(range(11)) - held)
  # Balanced classes: every training photo gives the same number of patches.
  assert (
    np.bincount(train["label"], minlength=11)[sorted(set(range(11)) - held)]
    == tiny["patches_per_photo"]
  ).all()


def test_custom_heldout_photos(tmp_path, tiny_config):
  cfg = tiny_config(heldout=("astronaut",), patches_per_photo=2, heldout_patches_per_photo=2)
  train, heldout, info = data.get_dataset(cfg, str(tmp_path))
  assert set(heldout["label"].tolist()) == {0} and 0 not in set(train["label"].tolist())
  assert info["num_train"] == 10 * 2


def test_deterministic_from_seed_and_prepared_once(tiny_photos, tmp_path, monkeypatch, tiny_config):
  train, _, info, config, data_dir = tiny_photos
  record = os.path.join(info["dataset_dir"], "train.image.npy")
  mtime = os.stat(record).st_mtime_ns

  def no_rebuild(*a, **k):
    raise AssertionError("the dataset was generated again")

  monkeypatch.setattr(patches, "split_arrays", no_rebuild)
  train2, _, info2 = data.get_dataset(config, data_dir)
  assert info2["dataset_dir"] == info["dataset_dir"] and os.stat(record).st_mtime_ns == mtime
  np.testing.assert_array_equal(train2["image"], train["image"])
  monkeypatch.undo()
  # Same config elsewhere: identical bytes. Another seed: a different dataset directory
  # with different crops.
  again, _, _ = data.get_dataset(config, str(tmp_path / "a"))
  for k in train:
    np.testing.assert_array_equal(again[k], train[k])
  other, _, info3 = data.get_dataset(tiny_config(seed=4), str(tmp_path / "a"))
  assert info3["dataset_dir"] != data.prepare(config, str(tmp_path / "a"))
  assert (other["crop"] != train["crop"]).any(axis=1).mean() > 0.8


@pytest.mark.parametrize(
  "overrides,match",
  [
    (dict(scales=(1.0, 0.0)), "scales"),
    (dict(patch_size=0), "patch_size"),
    (dict(heldout=("coffee", "lena")), "lena"),
    (dict(patches_per_photo=-1), "patches_per_photo"),
  ],
)
def test_bad_config_raises(tmp_path, overrides, match, tiny_config):
  with pytest.raises(errors.ConfigError, match=match):
    data.prepare(tiny_config(**overrides), str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing half-built


def test_unknown_config_field_raises(tmp_path, tiny_config):
  cfg = tiny_config()
  cfg.patchsize = 4
  with pytest.raises(errors.ConfigError, match="patchsize"):
    data.prepare(cfg, str(tmp_path))


# ----------------------------------------------------------------------------- folders


def _random_image(rng, h, w):
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_folder_dataset_labels_by_subfolder_and_holds_out_whole_files(
  tmp_path, tiny_config, write_png
):
  rng = np.random.default_rng(0)
  folder = tmp_path / "imgs"
  images = {}
  for cls in ("cats", "dogs"):
    for j in range(3):
      rel = os.path.join(cls, f"im{j}.png")
      images[rel] = _random_image(rng, 12 + j, 14)
      write_png(folder / rel, images[rel])
  # Greyscale and RGBA files are read as RGB.
  grey = rng.integers(0, 256, (10, 11), dtype=np.uint8)
  write_png(folder / "dogs" / "sub" / "grey.png", grey)
  images[os.path.join("dogs", "sub", "grey.png")] = np.repeat(grey[..., None], 3, -1)
  (folder / "cats" / "notes.txt").write_text("not an image")
  cfg = tiny_config(
    folder=str(folder),
    scales=(1.0,),
    flip=False,
    patches_per_photo=4,
    heldout_patches_per_photo=3,
    heldout=(os.path.join("cats", "im1.png"),),
  )
  train, heldout, info = data.get_dataset(cfg, str(tmp_path / "ds"))
  files = sorted(images)
  assert info["class_names"] == ["cats", "dogs"]
  assert info["heldout_images"] == [os.path.join("cats", "im1.png")]
  assert info["num_train"] == 6 * 4 and info["num_heldout"] == 3
  held_idx = files.index(os.path.join("cats", "im1.png"))
  assert set(heldout["source"].tolist()) == {held_idx}
  assert held_idx not in set(train["source"].tolist())
  assert set(train["source"].tolist()) == set(range(7)) - {held_idx}
  for arrays in (train, heldout):
    for img, label, source, crop in zip(
      arrays["image"], arrays["label"], arrays["source"], arrays["crop"]
    ):
      rel = files[source]
      assert label == ["cats", "dogs"].index(rel.split(os.sep)[0])
      y, x, _ = crop
      np.testing.assert_array_equal(img, images[rel][y : y + 8, x : x + 8])


def test_folder_without_subfolders_has_label_zero_and_fraction_heldout(
  tmp_path, tiny_config, write_png
):
  rng = np.random.default_rng(1)
  for j in range(10):
    write_png(tmp_path / "flat" / f"{j}.png", _random_image(rng, 9, 9))
  cfg = tiny_config(
    folder=str(tmp_path / "flat"),
    patches_per_photo=2,
    heldout_patches_per_photo=1,
    folder_heldout_fraction=0.2,
  )
  train, heldout, info = data.get_dataset(cfg, str(tmp_path / "ds"))
  assert info["class_names"] == ["0"] and info["num_classes"] == 1
  assert (train["label"] == 0).all() and (heldout["label"] == 0).all()
  assert len(set(heldout["source"].tolist())) == 2
  assert not set(heldout["source"].tolist()) & set(train["source"].tolist())
  assert info["num_train"] == 8 * 2


def test_folder_content_change_builds_a_new_dataset(tmp_path, tiny_config, write_png):
  rng = np.random.default_rng(2)
  folder = tmp_path / "f"
  for j in range(2):
    write_png(folder / f"{j}.png", _random_image(rng, 9, 9))
  cfg = tiny_config(folder=str(folder), patches_per_photo=1, heldout_patches_per_photo=1)
  first = data.prepare(cfg, str(tmp_path / "ds"))
  write_png(folder / "2.png", _random_image(rng, 9, 9))
  assert data.prepare(cfg, str(tmp_path / "ds")) != first


def test_folder_errors_are_user_errors(tmp_path, tiny_config, write_png):
  out = str(tmp_path / "ds")
  with pytest.raises(errors.MissingFileError, match="does not exist"):
    data.prepare(tiny_config(folder=str(tmp_path / "missing")), out)
  (tmp_path / "empty").mkdir()
  with pytest.raises(errors.InputError, match="no image files"):
    data.prepare(tiny_config(folder=str(tmp_path / "empty")), out)
  rng = np.random.default_rng(3)
  write_png(tmp_path / "mixed" / "a.png", _random_image(rng, 9, 9))
  write_png(tmp_path / "mixed" / "cls" / "b.png", _random_image(rng, 9, 9))
  with pytest.raises(errors.InputError, match="mixes images"):
    data.prepare(tiny_config(folder=str(tmp_path / "mixed")), out)
  write_png(tmp_path / "one" / "a.png", _random_image(rng, 9, 9))
  with pytest.raises(errors.ConfigError, match="held-out file|heldout file"):
    data.prepare(tiny_config(folder=str(tmp_path / "one"), heldout=("b.png",)), out)
  with pytest.raises(errors.ConfigError, match="folder_heldout_fraction"):
    data.prepare(tiny_config(folder=str(tmp_path / "one"), folder_heldout_fraction=1.0), out)
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
  (tmp_path / "bad" / "y.png").write_bytes(b"not a png")
  with pytest.raises(errors.InputError, match="cannot read image"):
    data.get_dataset(tiny_config(folder=str(tmp_path / "bad")), out)


def test_load_images_reads_a_folder_in_sorted_order(tmp_path, write_png):
  rng = np.random.default_rng(4)
  want = {}
  for rel in ("b/2.png", "a/1.png", "b/1.png"):
    want[rel] = _random_image(rng, 5, 6)
    write_png(tmp_path / rel, want[rel])
  got = list(data.load_images(str(tmp_path)))
  assert [r for r, _, _ in got] == ["a/1.png", "b/1.png", "b/2.png"]
  assert [label for _, _, label in got] == [0, 1, 1]
  for rel, image, _ in got:
    np.testing.assert_array_equal(image, want[rel])
