"""The coverless SemCom experiment at the smoke size: report, every cell, verdicts, the cache."""

import importlib.util
import json
import os

import pytest

from stegjax.experiments import semcom_coverless


def _config(arg):
  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "semcom_coverless.py")
  spec = importlib.util.spec_from_file_location("semcom_coverless_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _run_and_check(config, workdir):
  semcom_coverless.run(config, workdir)
  for f in ("report.md", "report.json", "psnr_vs_snr_secret.png", "grid_none.png"):
    assert os.path.getsize(os.path.join(workdir, f)) > 0, f
  for ch in config.channel.channels:
    for snr in config.channel.eval_snrs:
      assert os.path.exists(os.path.join(workdir, f"grid_{ch}_{snr:g}dB.png"))
  with open(os.path.join(workdir, "report.json")) as f:
    rep = json.load(f)
  cells = {(r["channel"], r["snr"]) for r in rep["rows"]}
  want = {("none", None), ("uint8", None)}
  want |= {(c, s) for c in config.channel.channels for s in config.channel.eval_snrs}
  assert cells == want
  for r in rep["rows"]:
    for k in ("legit_psnr", "public_only_psnr", "wrong_key_psnr", "every_class_psnr"):
      assert 0.0 < r[k] < 100.0, (k, r)
    assert r["best_eve_psnr"] == max(
      r[k] for k in ("public_only_psnr", "wrong_key_psnr", "every_class_psnr")
    )
  det = rep["detection"]
  assert det["n_cover"] == det["n_stego"] == config.eval.num_secrets
  assert det["pe_ci95"][0] <= det["pe"] <= det["pe_ci95"][1]
  assert len(rep["rl"]["uniform"]) == len(config.rl.levels)
  checks = "\n".join(rep["checks"])
  assert checks.count("MET") >= 3 and "P_E" in checks and "uniform" in checks
  md = open(os.path.join(workdir, "report.md")).read()
  assert "Survey vs stegjax" in md and "Acceptance, measured" in md


# Slow (minutes of UNet, JSCC, detector and agent training); the fast suite keeps the
# inversion, key and one-step training tests of models/diffusion, coverless and cost_rl.
@pytest.mark.slow
def test_smoke_run_writes_its_report(tmp_path):
  _run_and_check(_config("smoke"), str(tmp_path / "coverless"))


@pytest.mark.slow
def test_second_run_reuses_every_model(tmp_path):
  config, workdir = _config("smoke"), str(tmp_path / "coverless")
  _run_and_check(config, workdir)
  semcom_coverless.run(config, workdir)
  with open(os.path.join(workdir, "report.json")) as f:
    fits = json.load(f)["run"]["fits"]
  assert all(f["cached"] for f in fits.values()), fits
