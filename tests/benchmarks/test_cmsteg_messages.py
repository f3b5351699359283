"""``benchmarks/cmsteg_messages.py``: a variant's overrides reach the config they name."""

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench():
  path = os.path.join(REPO, "benchmarks", "cmsteg_messages.py")
  spec = importlib.util.spec_from_file_location("cmsteg_messages", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_variant_overrides_reach_the_config():
  bench = _bench()
  config = bench._config("smoke")
  changes = bench.overrides("cmsteg.prepare_channels=();cmsteg.list_budget=7; cmsteg.channel=png")
  assert changes == {
    "cmsteg.prepare_channels": (),
    "cmsteg.list_budget": 7,
    "cmsteg.channel": "png",
  }
  bench._apply(config, changes)
  assert tuple(config.cmsteg.prepare_channels) == ()
  assert config.cmsteg.list_budget == 7 and config.cmsteg.channel == "png"
  assert bench.overrides("") == {}


def test_unknown_field_or_bad_spec_is_refused():
  bench = _bench()
  with pytest.raises(SystemExit, match="no field 'cmsteg.nope'"):
    bench._apply(bench._config("smoke"), {"cmsteg.nope": 1})
  with pytest.raises(SystemExit, match="not field=value"):
    bench.overrides("cmsteg.list_budget")
