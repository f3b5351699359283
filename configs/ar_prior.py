r"""Trains the class-conditional AR prior on the tokenizer's tokens (training the tokenizer first if its
checkpoint is not in the workdir) and reports held-out NLL and sample grids.

  python -m stegjax.main --config=configs/ar_prior.py              # CPU default (minutes)
  python -m stegjax.main --config=configs/ar_prior.py:smoke
  python -m stegjax.main --config=configs/ar_prior.py:gpu --config.prior.train.batch_size=512
"""

from stegjax import config_lib


def get_config(arg=None):
  return config_lib.base("ar_prior", config_lib.parse_size(arg), models=("data", "vq", "prior"))
