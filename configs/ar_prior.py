r"""Trains the class-conditional AR prior on the tokenizer's tokens (training the tokenizer first if its
checkpoint is not in the workdir) and reports held-out NLL and sample grids.

  python -m stegjax.main --config=configs/ar_prior.py              # CPU default (minutes)
  python -m stegjax.main --config=configs/ar_prior.py:smoke
  python -m stegjax.main --config=configs/ar_prior.py:gpu --config.prior.train.batch_size=512
"""

from stegjax import config_lib


def get_config(arg=None):
  size = config_lib.parse_size(arg)
  import ml_collections

  config = ml_collections.ConfigDict()
  config.experiment = "ar_prior"
  config.name = "ar_prior" if size == "cpu" else f"ar_prior_{size}"
  config.size = size
  config.seed = 0
  config.mesh = config_lib.mesh()
  config.model_dir = config_lib.model_dir(size)  # trained models, shared across experiments
  config.data = config_lib.data(size)
  config.vq = config_lib.vq(size)
  config.prior = config_lib.prior(size)
  return config
