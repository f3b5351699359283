"""The CMSTEG report: the config's plain targets give the right verdicts; tables render."""

import importlib.util
import os

from stegjax.cmsteg import report

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _targets():
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", "cmsteg.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config("smoke").targets


def _res():
  rq = lambda m1, m2, m3: {
    "M1": {"R_q": {"mean": m1, "std": 0.0}, "Cap": {"mean": 1.0, "std": 0.0}},
    "M1+M2": {"R_q": {"mean": m2, "std": 0.0}, "Cap": {"mean": 2.0, "std": 0.0}},
    "M1+M2+M3": {"R_q": {"mean": m3, "std": 0.0}, "Cap": {"mean": 3.0, "std": 0.0}},
  }
  res = {
    "channels": {
      "png": {"stages": rq(0.8, 0.9, 0.995)},
      "jpeg95": {"stages": rq(0.8, 0.9, 0.985)},
      "jpeg75": {"stages": rq(0.7, 0.7, 0.98)},
    }
  }
  for name, ok in (("png", 1.0), ("jpeg95", 0.875), ("jpeg75", 1.0)):
    r = res["channels"][name]
    r["stages"]["M1+M2+M3"]["message_ok"] = ok
    r.update(
      corrections={"mean": 1.0},
      caption_bits={"mean": 100.0},
      caption_authenticated=1.0,
      topic_disagreements=0,
      topic_fallback_saved=0,
    )
  return res


def test_target_verdicts():
  got = {c: ok for c, _, ok in report.targets(_res(), _targets())}
  assert got["R_q after M1+M2+M3 >= 99% on png"]
  assert not got["R_q after M1+M2+M3 >= 99% on jpeg95"]
  assert got["R_q after M1+M2+M3 >= 97% on jpeg75"]
  assert got["message extracted and authenticated on >= 90% of images on png"]
  assert not got["message extracted and authenticated on >= 90% of images on jpeg95"]
  assert not got["M2 raises R_q on every lossy channel"]  # jpeg75: 0.7 -> 0.7
  assert got["M3 raises R_q on every lossy channel"]
  assert not any("scale0.5" in c for c in got)  # not measured: no verdict


def test_paper_figures_sit_beside_ours():
  table = report.paper_vs_stegjax(_res())
  assert "99.98 / 99.50" in table  # png after M1+M2+M3: paper / this run
  assert "4285 / 3" in table
  assert report.parse_targets("png:0.99,scale0.5:0.97") == {"png": 0.99, "scale0.5": 0.97}


def test_table4_reports_a_caption_too_short_instead_of_failing():
  row = dict(length=16, bits_per_char=3.0, caption_bits=48.0, tau_eq16_paper=1.0, tau_exact=1.0)
  row.update(corrections_made=1.0, errors=2.0, R_q=0.5, Cap=10.0, message_ok=0.0)
  table = report.table4({"caption_lengths": [{"length": 8, "too_short": "22 bits"}, row]})
  lines = table.splitlines()
  assert "too short" in lines[2] and lines[2].count("|") == lines[3].count("|")
  assert "50.00%" in lines[3]
