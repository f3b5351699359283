"""The main command end to end (:smoke): evaluate, then embed/extract a real file, and errors.

The smoke models are barely trained, so M1/M2 recover few tokens; the smoke caption is long
enough for M3 to correct every token of a deterministic channel, so the AEAD-verified
message must come back exactly: a failure anywhere in M1 -> channel -> M2 -> M3 ->
extraction breaks it.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stegjax.channels import real

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _main(args, workdir, check=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "stegjax.main",
      "--config=configs/cmsteg.py:smoke",
      f"--workdir={workdir}",
    ]
    + args,
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=1200,
  )
  if check and proc.returncode != 0:
    raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
  return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  wd = tmp_path_factory.mktemp("cmsteg")
  _main([], wd)
  return wd


def test_evaluate_writes_report_and_round_trips(workdir):
  rep = json.load(open(workdir / "report.json"))
  assert os.path.exists(workdir / "report.md") and os.path.exists(workdir / "stego_grid.png")
  assert rep["message_fits"] == 1.0
  for name in ("png", "jpeg85"):
    st = rep["channels"][name]["stages"]
    assert st["M1+M2+M3"]["R_q"]["min"] == 1.0, (name, st["M1+M2+M3"]["R_q"])
    assert st["M1+M2+M3"]["message_ok"] == 1.0
    assert st["M1+M2+M3"]["R_q"]["mean"] >= st["M1+M2"]["R_q"]["mean"]
    # Cap counts bits up to the first error: with every token right, all embedded bits.
    assert st["M1+M2+M3"]["Cap"]["min"] >= rep["framed_bits"]


def _embed(workdir, tmp_path, key, channel, message=b"hi!"):
  msg = tmp_path / f"msg_{channel}.txt"
  msg.write_bytes(message)
  out = tmp_path / f"out_{channel}"
  p = _main(
    [
      "--config.mode=embed",
      f"--config.message_file={msg}",
      f"--config.key_file={key}",
      f"--config.out={out}",
      f"--config.cmsteg.channel={channel}",
    ],
    workdir,
  )
  assert f"hid {len(message)} bytes" in p.stdout
  return out


def _extract(workdir, image, key, channel, out, check=True):
  return _main(
    [
      "--config.mode=extract",
      f"--config.image={image}",
      f"--config.key_file={key}",
      f"--config.cmsteg.channel={channel}",
      f"--config.out={out}",
    ],
    workdir,
    check=check,
  )


def _one_line_error(p, text):
  last = p.stderr.strip().splitlines()[-1]
  assert p.returncode == 2 and last.startswith("stegjax: error:") and text in last, p.stderr[-800:]
  assert "Traceback" not in p.stderr


def test_embed_extract_every_prepared_channel_then_reject_the_replay(workdir, tmp_path):
  key, their = tmp_path / "k.json", tmp_path / "their.json"
  for i, channel in enumerate(("png", "jpeg85")):  # the :smoke channels
    out = _embed(workdir, tmp_path, key, channel, f"hi {channel}!".encode())
    assert json.load(open(key))["counter"] == i + 1  # spent
    if i == 0:
      _main(["--config.mode=share", f"--config.key_file={key}", f"--config.out={their}"], workdir)
    names = sorted(n for n in os.listdir(out) if n.endswith(".png"))
    assert names[0] == "stego_000.png" and len(names) >= 2  # 3-byte chunks of a 29-byte frame
    assert all(os.path.exists(out / n.replace(".png", ".txt")) for n in names)
    received = out
    if channel != "png":  # what the channel the sender prepared for does: PIL JPEG at QF 85
      received = tmp_path / "received"
      received.mkdir()
      for n in names:
        stego = np.asarray(Image.open(out / n).convert("RGB"))
        (received / n.replace(".png", ".jpg")).write_bytes(real.jpeg_bytes(stego, 85))
        shutil.copy(out / n.replace(".png", ".txt"), received / n.replace(".png", ".txt"))
    p = _extract(workdir, received, their, channel, tmp_path / "got")
    assert (tmp_path / "got" / "message.bin").read_bytes() == f"hi {channel}!".encode()
    assert f"of {len(names)} images" in p.stderr
  # The same images again: they authenticate, but their counter was accepted already.
  p = _extract(workdir, received, their, channel, tmp_path / "g2", False)
  _one_line_error(p, "ReplayError: replayed image rejected")

  # A wrong key: one clear line, non-zero exit, nothing written.
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"secret": "00" * 32, "counter": 1}))
  os.chmod(bad, 0o600)
  p = _extract(workdir, out, bad, "png", tmp_path / "g3", False)
  assert not (tmp_path / "g3" / "message.bin").exists()
  _one_line_error(p, "authenticates under this key")


def test_a_message_too_long_still_spends_its_counter(workdir, tmp_path):
  key = tmp_path / "k.json"
  msg = tmp_path / "long.bin"
  msg.write_bytes(b"x" * 70000)  # more shares of 16-byte chunks than zfec's 256 x 16 parts
  p = _main(
    [
      "--config.mode=embed",
      f"--config.message_file={msg}",
      f"--config.key_file={key}",
      f"--config.out={tmp_path}/o",
    ],
    workdir,
    check=False,
  )
  _one_line_error(p, "MessageTooLongError")
  assert json.load(open(key))["counter"] == 1  # reserved before generating


def test_bad_inputs_are_one_line_without_traceback(workdir, tmp_path):
  key = tmp_path / "k.json"
  key.write_text(json.dumps({"secret": "11" * 32, "counter": 0}))
  os.chmod(key, 0o600)
  not_image = tmp_path / "notes.png"
  not_image.write_text("not an image")
  base = ["--config.mode=extract", f"--config.key_file={key}"]
  p = _main(base + [f"--config.image={not_image}"], workdir, check=False)
  _one_line_error(p, "InputError: ")  # was a PIL UnidentifiedImageError traceback
  os.chmod(key, 0o644)
  _one_line_error(_main(base, workdir, check=False), "chmod 600")


def _smoke_config(**fields):
  import importlib.util

  spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", "cmsteg.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config("smoke")
  config.unlock()
  config.update(fields)
  return config


def test_bad_inputs_raise_stegjax_errors_before_any_model_loads(tmp_path):
  from stegjax import errors
  from stegjax.experiments import cmsteg

  key = tmp_path / "k.json"
  key.write_text(json.dumps({"secret": "11" * 32, "counter": 0}))
  os.chmod(key, 0o600)
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  wd = str(tmp_path / "wd")  # no models there: each case must fail before training any
  cases = [
    (dict(mode="sideways"), errors.ConfigError, "unknown --config.mode"),
    (dict(mode="extract", key_file=str(tmp_path / "none")), errors.KeyFileError, "not found"),
    (dict(mode="extract", key_file=str(key), image="/none.png"), errors.MissingFileError, "image"),
    (dict(mode="embed", message_file="/none.txt"), errors.MissingFileError, "message file"),
    (
      dict(mode="embed", message_file=str(a_file), key_file=str(key), out=str(a_file)),
      errors.InputError,
      "must be a folder",
    ),
    (
      dict(mode="extract", key_file=str(key), image=str(a_file)),
      errors.InputError,
      "not an image",
    ),
  ]
  for fields, cls, text in cases:
    with pytest.raises(cls, match=text):
      cmsteg.run(_smoke_config(**fields), wd)
  assert not any(n.startswith("tokenizer") for n in os.listdir(wd))  # nothing trained


def test_extract_inputs_and_caption_fallbacks(tmp_path):
  from stegjax import errors
  from stegjax.cmsteg import caption as caption_lib
  from stegjax.cmsteg import commands
  from stegjax.experiments import cmsteg

  img = tmp_path / "x.png"
  cap = tmp_path / "x.txt"  # a caption travels beside its image
  cap.write_bytes(b"cat: a small\r\ndog: an animal.")
  ids, _ = commands.read_caption(str(img))  # CRLF folds back
  np.testing.assert_array_equal(ids, caption_lib.encode_text("cat: a small\ndog: an animal."))
  for bad in ("Cat: a small", "a caf\u00e9!", "cat:  a small"):  # edited text: extract without it
    cap.write_bytes(bad.encode())
    ids, note = commands.read_caption(str(img))
    assert ids is None and "ignored" in note
  assert commands.read_caption(str(tmp_path / "y.png"))[0] is None  # no caption at all
  img.write_bytes(b"\x89PNG not really")
  with pytest.raises(errors.InputError, match="not an image"):
    commands.read_image(str(img))
  a_file = tmp_path / "out"
  a_file.write_text("")
  with pytest.raises(errors.InputError, match="must be a folder"):
    cmsteg._out_folder(str(a_file))
