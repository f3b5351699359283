r"""Coverless stego SemCom (survey Sec. IV): conditional DDIM stego + DeepJSCC; cost-based RL hider.

  python -m stegjax.main --config=configs/semcom_coverless.py:smoke   # seconds-to-minutes, tests
  python -m stegjax.main --config=configs/semcom_coverless.py         # CPU default, 32x32
  python -m stegjax.main --config=configs/semcom_coverless.py:gpu     # 64x64, 50 DDIM steps

The secret is DDIM-inverted under a private condition (HKDF of the shared secret -> a keyed
direction added to the secret's class embedding; optionally a keyed latent scramble) and
regenerated under a public condition (a cover class) into the stego image, which crosses
DeepJSCC over AWGN/Rayleigh. ``--config.stego_keys.latent_block=0`` turns the scramble off
(condition-only key). The survey used Stable Diffusion 1.5 with 50 DDIM steps each way.
"""

import ml_collections

from stegjax import config_lib
from stegjax import data as data_lib


def _train(size, steps, lr, batch):
  cfg = config_lib.train(size, steps=steps, lr=lr, batch=batch)
  cfg.b2 = 0.999
  return cfg


def get_config(arg=None):
  size = config_lib.parse_size(arg)
  pick = lambda **kw: kw[size if size in kw else "gpu"]
  c = ml_collections.ConfigDict()
  c.experiment = "semcom_coverless"
  c.name = "semcom_coverless" if size == "cpu" else f"semcom_coverless_{size}"
  c.size = size
  c.seed = 0
  c.mesh = config_lib.mesh()

  c.data = data_lib.default_config()
  c.data.patch_size = pick(smoke=16, cpu=32, gpu=64)
  c.data.patches_per_photo = pick(smoke=16, cpu=256, gpu=4096)
  c.data.heldout_patches_per_photo = pick(smoke=8, cpu=64, gpu=512)

  # The UNet: class = source photo; the null class (CFG) is dropped in w.p. p_uncond.
  c.unet = ml_collections.ConfigDict(
    dict(
      features=pick(smoke=(8, 16), cpu=(32, 64), gpu=(64, 128, 256)),
      cond_dim=pick(smoke=16, cpu=64, gpu=128),
      train_steps=1000,  # T of the noise schedule
      p_uncond=0.1,
      # Pixel space (models.diffusion.to_model): "soft" = a bounded bijection, so generations
      # are images in (0, 1) by construction and the receiver inverts exactly what was sent;
      # "linear" = 2y - 1, out-of-range generations are clipped for the channel.
      space="soft",
      # What the UNet regresses: "v" (Salimans & Ho 2022) keeps the x0 estimate bounded at
      # every noise level; "eps" divides the epsilon error by sqrt(alpha_bar) (about 1/160 at
      # the last step of the linear schedule), and a small UNet's generations then diverge.
      prediction="v",
      train=_train(
        size,
        {"smoke": 4, "cpu": 1500, "gpu": 40000, "paper": 100000},
        2e-3,
        {"smoke": 4, "cpu": 32, "gpu": 64, "paper": 64},
      ),
    )
  )
  # DDIM: deterministic, `steps` each way (survey: 50); fixed-point iterations per inversion
  # step (0 = plain inversion, also measured); CFG scale for every generation and inversion.
  c.ddim = ml_collections.ConfigDict(
    dict(
      steps=pick(smoke=4, cpu=20, gpu=50),
      fixed_point_iters=pick(smoke=2, cpu=3, gpu=5),
      guidance=pick(smoke=2.0, cpu=1.0, gpu=2.0),  # cpu: no CFG pass (half the cost)
    )
  )
  # Keys. secret_class: class mixed into the private condition (-1 = the null class: the
  # held-out secrets belong to no training class); strength: keyed direction's length in
  # units of the mean class-embedding norm; latent_block > 0 adds the keyed latent scramble.
  c.stego_keys = ml_collections.ConfigDict(
    dict(
      shared_secret="stegjax coverless demo shared secret",
      secret_class=-1,
      strength=1.0,
      latent_block=pick(smoke=4, cpu=8, gpu=8),
      num_wrong_keys=pick(smoke=2, cpu=2, gpu=8),
    )
  )
  c.jscc = ml_collections.ConfigDict(
    dict(
      arch=pick(smoke="pilot", cpu="pilot", gpu="conv"),
      features=pick(smoke=8, cpu=32, gpu=128),
      ratio=1 / 6,
      train=_train(
        size,
        {"smoke": 3, "cpu": 600, "gpu": 40000, "paper": 100000},
        2e-3,
        {"smoke": 4, "cpu": 32, "gpu": 64, "paper": 64},
      ),
    )
  )
  c.channel = ml_collections.ConfigDict(
    dict(
      train_snr_min=0.0,
      train_snr_max=20.0,
      train_channel="mixed",
      channels=("awgn", "rayleigh"),
      eval_snrs=pick(
        smoke=(0.0, 10.0), cpu=(0.0, 5.0, 10.0, 15.0, 20.0), gpu=(0.0, 5.0, 10.0, 15.0, 20.0)
      ),
    )
  )
  c.steganalyzer = ml_collections.ConfigDict(
    dict(
      name="xunet",
      cfg=dict(features=pick(smoke=(2, 4, 4), cpu=(8, 16, 32, 64), gpu=(8, 16, 32, 64, 128))),
      num_train=pick(smoke=8, cpu=192, gpu=2048),  # stego + as many honest generations
      train=_train(
        size,
        {"smoke": 3, "cpu": 300, "gpu": 5000, "paper": 20000},
        1e-3,
        {"smoke": 4, "cpu": 32, "gpu": 64, "paper": 64},
      ),
    )
  )
  c.eval = ml_collections.ConfigDict(dict(num_secrets=pick(smoke=4, cpu=32, gpu=256), grid=6))

  # Cost-based strategy: an existing CNN stego-JSCC hider (two-stage, no key) and a REINFORCE
  # agent over per-block strengths; the environment's steganalyzer is trained on the
  # uniform strength-1 hider at `snr` dB AWGN.
  c.rl = ml_collections.ConfigDict(
    dict(
      hider=dict(features=pick(smoke=8, cpu=32, gpu=64), depth=pick(smoke=2, cpu=5, gpu=9)),
      hider_loss=dict(
        stego=0.25, secret=1.0, refined=0.0, received=0.1, low_freq=0.0, adversarial=0.0
      ),
      hider_train=_train(
        size,
        {"smoke": 3, "cpu": 400, "gpu": 30000, "paper": 30000},
        1e-3,
        {"smoke": 4, "cpu": 16, "gpu": 32, "paper": 32},
      ),
      detector_train=_train(
        size,
        {"smoke": 3, "cpu": 200, "gpu": 5000, "paper": 5000},
        1e-3,
        {"smoke": 4, "cpu": 32, "gpu": 64, "paper": 64},
      ),
      block=pick(smoke=4, cpu=8, gpu=8),
      levels=(0.25, 0.5, 0.75, 1.0, 1.25),
      weights=dict(cover=0.02, secret=0.05),
      entropy=0.01,
      snr=10.0,
      agent_train=_train(
        size,
        {"smoke": 3, "cpu": 300, "gpu": 5000, "paper": 5000},
        3e-3,
        {"smoke": 4, "cpu": 32, "gpu": 64, "paper": 64},
      ),
    )
  )
  return c
