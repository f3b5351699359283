r"""Stego semcom, INN family (survey Fig. 1d): HiNet-style couplings; `:paper` is HiNet size (4,050,240 params).

python -m stegjax.main --config=configs/semcom_inn.py:smoke
python -m stegjax.main --config=configs/semcom_inn.py
python -m stegjax.main --config=configs/semcom_inn.py:gpu
"""

from stegjax import config_lib


def get_config(arg=None):
  config = config_lib.sibling(__file__, "semcom").get_config(arg)
  config.name = config.name.replace("semcom", "semcom_inn", 1)
  runs = ("inn:two_stage+key", "inn:two_stage", "inn:end_to_end+key", "inn:two_stage+key+hf")
  config.runs = runs if config.size != "smoke" else runs[:1]
  return config
