"""The semcom experiment end to end at the smoke size: report, table, plots, and the cache."""

import importlib.util
import json
import os

import pytest

from stegjax.experiments import semcom


def _config(arg):
  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "semcom.py")
  spec = importlib.util.spec_from_file_location("semcom_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _check_run_and_cache(config, tmp_path):
  workdir = str(tmp_path / "semcom")
  semcom.run(config, workdir)
  for f in ("report.md", "report.json", "psnr_vs_snr_jscc.png", "psnr_vs_snr_secret.png"):
    assert os.path.getsize(os.path.join(workdir, f)) > 0, f
  with open(os.path.join(workdir, "report.json")) as f:
    rep = json.load(f)
  snrs = list(config.channel.eval_snrs)
  # Every (run, channel, SNR) cell is filled with finite figures.
  cells = {(r["run"], r["channel"], r["snr"]) for r in rep["table"]}
  runs = {r.replace(":", "_").replace("+", "_") for r in config.runs}
  assert cells == {(r, c, s) for r in runs for c in ("awgn", "rayleigh") for s in snrs}
  for row in rep["table"]:
    for k in (
      "stego_psnr",
      "legit_psnr",
      "eve_naive_psnr",
      "eve_inverse_psnr",
      "steganalyzer_pe_fixed",
    ):
      assert row[k] == row[k] and abs(row[k]) < 1e3, (k, row)
    assert 0.0 <= row["steganalyzer_pe_min"] <= 0.5
  assert len(rep["jscc"]) == 2 * len(config.channel.jscc_eval_snrs) * len(config.jscc.ratios)
  for row in rep["jscc"]:
    # The baselines are all there; counting the JPEG headers, a 16x16 image never fits.
    for k in ("jscc_psnr", "sep_psnr", "sep_ergodic_psnr", "sep_file_psnr"):
      assert row[k] == row[k] and 5.0 < row[k] < 100.0, (k, row)
    assert row["sep_file_delivered"] == 0.0
    assert row["sep_best_psnr"] >= row["sep_psnr"]
  # One verdict per target named in the config, stated as measured.
  met = "\n".join(rep["targets"])
  for start in ("DeepJSCC beats the separation", "Graceful degradation", "Key-conditioned INN"):
    assert start in met, start
  assert "Closed-box inverse" in met
  assert met.count("**met**") + met.count("**not met**") >= 5
  assert f"{config.targets.keyed_inn_margin_db:g} dB" in met
  # The survey's Table II beside the measured ordering, one row per column of the table.
  paper = rep["paper_vs_stegjax"]
  assert [r["quantity"] for r in paper][0] == "model size (params)" and len(paper) == 5
  for r in paper:
    assert set(r["stegjax"]) == {s.split(":")[0] for s in config.runs} >= set(r["survey"])
  md = open(os.path.join(workdir, "report.md")).read()
  assert "Targets (config.targets), measured" in md and "eve inverse PSNR" in md
  assert "Paper vs stegjax (survey Table II)" in md and "issue" not in md.lower()
  # The INN hides only in the high bands here, so its LL band is the cover's: high PSNR.
  inn = [r for r in rep["table"] if r["family"] == "inn"]
  assert not inn or min(r["stego_psnr"] for r in inn) > 25.0
  for info in rep["runs"].values():
    assert info["n_params"]["hider"] > 0 and info["train_seconds"]["hider"] > 0

  # Second run: every model is restored from workdir/models, nothing trains again.
  models = os.path.join(workdir, "models")
  stamp = {d: sorted(os.listdir(os.path.join(models, d))) for d in os.listdir(models)}
  logs = {d: open(os.path.join(models, d, "metrics.jsonl")).read() for d in os.listdir(models)}
  semcom.run(config, workdir)
  assert {d: sorted(os.listdir(os.path.join(models, d))) for d in os.listdir(models)} == stamp
  assert {
    d: open(os.path.join(models, d, "metrics.jsonl")).read() for d in os.listdir(models)
  } == logs
  with open(os.path.join(workdir, "report.json")) as f:
    rep2 = json.load(f)
  assert rep2["runs"] == rep["runs"]  # same (cached) training times and sizes
  # Same models, same keys: the same table.
  for a, b in zip(rep["table"], rep2["table"]):
    assert a["legit_psnr"] == pytest.approx(b["legit_psnr"], abs=1e-3)


def test_smoke_one_run_fills_table_and_reuses_cache(tmp_path):
  config = _config("smoke")
  with config.unlocked():
    config.runs = ("inn:end_to_end+key+hf",)  # one run keeps the default suite fast
    config.channel.eval_snrs = (0.0, 20.0)
    config.channel.jscc_eval_snrs = (-5.0, 0.0, 20.0)
  _check_run_and_cache(config, tmp_path)


@pytest.mark.slow
def test_smoke_config_as_shipped(tmp_path):
  _check_run_and_cache(_config("smoke"), tmp_path)


def test_bad_run_spec_is_a_clear_error(tmp_path):
  config = _config("smoke")
  with config.unlocked():
    config.runs = ("mlp:two_stage",)
  with pytest.raises(ValueError, match="unknown stego family"):
    semcom.run(config, str(tmp_path))
