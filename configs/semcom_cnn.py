r"""Stego semcom, CNN family (survey Fig. 1b): hiding/revealing CNNs.

python -m stegjax.main --config=configs/semcom_cnn.py:smoke
python -m stegjax.main --config=configs/semcom_cnn.py
python -m stegjax.main --config=configs/semcom_cnn.py:gpu
"""

from stegjax import config_lib


def get_config(arg=None):
  config = config_lib.sibling(__file__, "semcom").get_config(arg)
  config.name = config.name.replace("semcom", "semcom_cnn", 1)
  runs = ("cnn:two_stage+key", "cnn:two_stage+key+hf", "cnn:end_to_end+key")
  config.runs = runs if config.size != "smoke" else runs[:1]
  return config
