"""``benchmarks/device_suite.py --size=tiny``: every figure of the device run, in seconds on CPU.

The GPU run is only ever as good as this check: each part must produce its figures (not a
skip or a failure), the JSON must hold them all and the markdown table must show them.
The receiver's replay in the sender's batch geometry must extract every message.
"""

import importlib.util
import json
import math
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _suite():
  path = os.path.join(REPO, "benchmarks", "device_suite.py")
  spec = importlib.util.spec_from_file_location("device_suite", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _number(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_tiny_suite_has_every_figure(tmp_path):
  suite = _suite()
  out = str(tmp_path / "suite.json")
  suite.main(["--size=tiny", "--budget_s=1e9", "--cache_dir=", f"--out={out}"])
  with open(out) as f:
    r = json.load(f)
  cfg = suite.SIZES["tiny"]
  for part in suite.PART_NAMES:
    assert "skipped" not in r[part] and "failed" not in r[part], (part, r[part])

  ident = r["identity"]
  assert ident["extract_ok_same_batch"] and ident["extract_ok_rows_same_batch"] == ident["batch"]
  assert ident["bits_embedded_mean"] > 0
  for k in ("logits_bit_identical", "logits_max_abs_diff", "extract_ok_batch1"):
    assert k in ident, k
  for part, batches in (("sampling", cfg["batches"]), ("sampling_3b", (1,))):
    assert _number(r[part]["hbm_bound_ms_per_step"])
    assert [row["batch"] for row in r[part]["rows"]] == list(batches)
    for row in r[part]["rows"]:
      for k in ("plain_ms_per_step", "stego_ms_per_step", "stego_x_plain", "plain_x_hbm_bound"):
        assert _number(row[k]), (part, k, row)
  d = r["discop_step"]
  assert _number(d["discop_ms_per_step"]) and _number(d["discop_x_ar_step"])
  assert [row["batch"] for row in r["m2"]["rows"]] == list(cfg["m2_batches"])
  for row in r["m2"]["rows"]:
    assert _number(row["ms_per_adam_step"]) and _number(row["s_per_image_at_10k"]), row
  assert _number(r["jpeg"]["diff_fwd_bwd_ms"]) and _number(r["jpeg"]["pil_encode_decode_ms"])
  assert _number(r["train"]["tokens_per_s"]) and "mfu" in r["train"]
  assert r["peers"]["gpt_b_ms_per_step_b1"] == 1.44 and r["peers"]["m2_s_per_image_10k"] == 243.0

  with open(os.path.splitext(out)[0] + ".md") as f:
    table = f.read()
  for label in (
    "tiny GPT 16 tok plain",
    "tiny GPT (3B slot) 16 tok stego",
    "Discop step",
    "M2 tiny VQ 16 px",
    "diff-JPEG",
    "train tiny GPT",
    "logits row alone",
    "Discop extraction",
  ):
    assert label in table, label
