r"""Trains the VQ tokenizer on real-photo patches and reports reconstruction quality.

python -m stegjax.main --config=configs/vq_tokenizer.py          # CPU default (minutes)
python -m stegjax.main --config=configs/vq_tokenizer.py:smoke    # seconds
python -m stegjax.main --config=configs/vq_tokenizer.py:gpu --config.vq.train.num_steps=1000
"""

from stegjax import config_lib


def get_config(arg=None):
  size = config_lib.parse_size(arg)
  import ml_collections

  config = ml_collections.ConfigDict()
  config.experiment = "tokenizer"
  config.name = "tokenizer" if size == "cpu" else f"tokenizer_{size}"
  config.size = size
  config.seed = 0
  config.mesh = config_lib.mesh()
  config.model_dir = config_lib.model_dir(size)  # trained models, shared across experiments
  config.data = config_lib.data(size)
  config.vq = config_lib.vq(size)
  return config
