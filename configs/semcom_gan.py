r"""Stego semcom, GAN family (survey Fig. 1c): the CNN hider plus a discriminator (adversarial strategy).

python -m stegjax.main --config=configs/semcom_gan.py:smoke
python -m stegjax.main --config=configs/semcom_gan.py
python -m stegjax.main --config=configs/semcom_gan.py:gpu
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
  config.name = config.name.replace("semcom", "semcom_gan", 1)
  runs = ("gan:two_stage+key", "gan:end_to_end+key")
  config.runs = runs if config.size != "smoke" else runs[:1]
  return config
