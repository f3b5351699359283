r"""Stego semcom, GAN family (survey Fig. 1c): the CNN hider plus a discriminator (adversarial strategy).

python -m stegjax.main --config=configs/semcom_gan.py:smoke
python -m stegjax.main --config=configs/semcom_gan.py
python -m stegjax.main --config=configs/semcom_gan.py:gpu
"""

from stegjax import config_lib


def get_config(arg=None):
  config = config_lib.sibling(__file__, "semcom").get_config(arg)
  config.name = config.name.replace("semcom", "semcom_gan", 1)
  runs = ("gan:two_stage+key", "gan:end_to_end+key")
  config.runs = runs if config.size != "smoke" else runs[:1]
  return config
