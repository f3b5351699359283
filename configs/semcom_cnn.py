r"""Stego semcom, CNN family (survey Fig. 1b): hiding/revealing CNNs.

python -m stegjax.main --config=configs/semcom_cnn.py:smoke
python -m stegjax.main --config=configs/semcom_cnn.py
python -m stegjax.main --config=configs/semcom_cnn.py:gpu
"""

import importlib.util
import os


def _base():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "semcom.py")
  spec = importlib.util.spec_from_file_location("stegjax_configs_semcom", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  config = _base().get_config(arg)
  config.name = config.name.replace("semcom", "semcom_cnn", 1)
  runs = ("cnn:two_stage+key", "cnn:two_stage+key+hf", "cnn:end_to_end+key")
  config.runs = runs if config.size != "smoke" else runs[:1]
  return config
