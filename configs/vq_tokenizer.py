r"""Trains the VQ tokenizer on real-photo patches and reports reconstruction quality.

python -m stegjax.main --config=configs/vq_tokenizer.py          # CPU default (minutes)
python -m stegjax.main --config=configs/vq_tokenizer.py:smoke    # seconds
python -m stegjax.main --config=configs/vq_tokenizer.py:gpu --config.vq.train.num_steps=1000
"""

from stegjax import config_lib


def get_config(arg=None):
  return config_lib.base("tokenizer", config_lib.parse_size(arg), models=("data", "vq"))
