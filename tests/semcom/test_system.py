"""Stego JSCC system: one real training step per family through the shared trainer,
the GAN's two players updated by one optimizer, channels and run parsing."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from skimage import data

from stegjax.models import jscc as jscc_lib
from stegjax.semcom import keys as keys_lib
from stegjax.semcom import networks
from stegjax.semcom import system
from stegjax.train import sharding
from stegjax.train import trainer

P = 16


def _cfg():
  return ml_collections.ConfigDict(
    dict(
      channel=dict(train_snr_min=0.0, train_snr_max=20.0, train_channel="mixed"),
      loss=dict(stego=1.0, secret=1.0, refined=1.0, received=0.5, low_freq=1.0, adversarial=0.1),
      train=dict(num_steps=2, lr=1e-3, warmup_steps=0, schedule="constant", grad_clip=1.0),
      families=dict(
        cnn=dict(features=4, depth=2),
        gan=dict(features=4, depth=2, disc_features=4),
        inn=dict(num_blocks=1, growth=4, num_convs=3, clamp=2.0),
      ),
    )
  )


@pytest.fixture(scope="module")
def batch():
  img = data.astronaut()
  crops = np.stack(
    [img[y : y + P, x : x + P] for y, x in ((100, 200), (300, 50), (200, 300), (50, 60))]
  )
  return {"cover": crops[:2], "secret": crops[2:]}


@pytest.fixture(scope="module")
def frozen_jscc():
  model = system.make_jscc(4, 1 / 6)
  return model, model.init(jax.random.key(0), jnp.zeros((1, P, P, 3)))


@pytest.mark.parametrize(
  "spec", ["cnn:two_stage+key", "gan:two_stage+key+hf", "inn:end_to_end+key"]
)
def test_one_training_step_per_family(spec, batch, frozen_jscc):
  spec = system.parse_run(spec)
  cfg = _cfg()
  jscc_model, jscc_params = frozen_jscc
  hider = system.Hider(spec.family, cfg.families[spec.family], spec.high_freq)
  disc = networks.Discriminator(4) if spec.adversarial else None
  refine = networks.RefineNet(4, 2) if spec.keyed else None

  def init_fn(r):
    k1, k2, k3, k4 = jax.random.split(r, 4)
    params = {"hider": hider.init(k1, (P, P, 3))}
    if spec.end_to_end:
      params["jscc"] = jscc_model.init(k2, jnp.zeros((1, P, P, 3)))
    if disc is not None:
      params["disc"] = disc.init(k3, jnp.zeros((1, P, P, 3)))
    if refine is not None:
      params["refine"] = refine.init(k4, jnp.zeros((1, P, P, 3)))
    return params, ({} if spec.end_to_end else {"jscc": jscc_params})

  loss_fn = system.stego_loss_fn(spec, hider, jscc_model, cfg.channel, cfg.loss, 4, disc, refine)
  mesh = sharding.make_mesh(None)
  tx = trainer.make_optimizer(cfg.train)
  state = trainer.create_train_state(init_fn, tx, jax.random.key(1), mesh)
  before = jax.tree.map(np.asarray, state.params)
  extra_before = jax.tree.map(np.asarray, state.extra)
  step = trainer.make_train_step(loss_fn, tx, mesh, state)
  state, m = step(state, sharding.put_batch(batch, mesh))
  assert np.isfinite(float(m["loss"])) and not bool(m["nonfinite"])
  assert float(m["secret_mse"]) > 0 and float(m["grad_norm"]) > 0
  # Every trained sub-tree moved; a frozen DeepJSCC (two-stage) did not.
  for name in before:
    moved = jax.tree.leaves(
      jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.params[name], before[name])
    )
    assert max(moved) > 0, name
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), state.extra, extra_before
  )
  assert ("jscc" in state.params) == spec.end_to_end
  assert ("disc" in state.params) == spec.adversarial
  assert ("refined_mse" in m) == spec.keyed


def test_gan_players_are_separated(batch, frozen_jscc):
  """One optimizer, two players: D's gradient is exactly that of its own loss (the
  generator's adversarial term reaches D only through stop_gradient)."""
  spec = system.parse_run("gan:two_stage")
  cfg = _cfg()
  jscc_model, jscc_params = frozen_jscc
  hider = system.Hider("gan", cfg.families.gan)
  disc = networks.Discriminator(4)
  params = {
    "hider": hider.init(jax.random.key(0), (P, P, 3)),
    "disc": disc.init(jax.random.key(1), jnp.zeros((1, P, P, 3))),
  }
  params["hider"] = jax.tree.map(lambda x: x + 0.01, params["hider"])  # non-identity stego
  extra = {"jscc": jscc_params}
  rng = jax.random.key_data(jax.random.key(2))
  gan_loss = system.stego_loss_fn(spec, hider, jscc_model, cfg.channel, cfg.loss, 4, disc)

  g_full = jax.jit(jax.grad(lambda p: gan_loss(p, extra, batch, rng, 0)[0]))(params)
  # D gets a gradient (it is trained)...
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_full["disc"])) > 0

  # ...and D's gradient equals that of its own loss alone (the generator term is stop-gradiented).
  def d_only(pd):
    cover = system.to_float(batch["cover"])
    secret = system.to_float(batch["secret"])
    k_key, k_snr, k_ch = jax.random.split(system.typed_key(rng), 3)
    snr = system.sample_snr(k_snr, 2, 0.0, 20.0)
    _, stego, _, _ = system.stego_forward(
      spec,
      hider,
      jscc_model,
      params["hider"],
      jscc_params,
      cover,
      secret,
      jax.random.split(k_key, 2),
      snr,
      k_ch,
      "mixed",
      4,
    )
    return system.bce_logits(disc.apply(pd, cover), 0.0) + system.bce_logits(
      disc.apply(pd, stego), 1.0
    )

  g_d = jax.jit(jax.grad(d_only))(params["disc"])
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), g_full["disc"], g_d
  )


def test_channels_and_parsing():
  z = jscc_lib.power_normalize(jax.random.normal(jax.random.key(0), (4, 2, 2, 8)))
  k = jax.random.key(1)
  hi = system.apply_channel(z, 60.0, k, "mixed")
  np.testing.assert_allclose(hi, z, atol=2e-2)  # 60 dB: nearly noiseless on both channels
  lo = system.apply_channel(z, 0.0, k, "awgn")
  np.testing.assert_allclose(jnp.mean((lo - z) ** 2), 1.0, rtol=0.3)  # SNR 0 dB: noise power 1
  with pytest.raises(ValueError, match="unknown channel"):
    system.apply_channel(z, 0.0, k, "rician")
  r = system.parse_run("inn:end_to_end+key+hf")
  assert (r.family, r.end_to_end, r.keyed, r.high_freq) == ("inn", True, True, True)
  for bad in ("inn", "mlp:two_stage", "inn:one_stage", "inn:two_stage+foo"):
    with pytest.raises(ValueError):
      system.parse_run(bad)


def test_refine_starts_as_identity_and_needs_the_key(batch):
  """The keyed receiver's post-filter is the identity at init, so the legitimate secret is
  exactly the unscrambled reveal; with a wrong key the same pipeline gives a different image."""
  spec = system.parse_run("inn:two_stage+key")
  x = system.to_float(batch["secret"])
  refine = networks.RefineNet(4, 2)
  p = refine.init(jax.random.key(0), x)
  keys = jax.random.split(jax.random.key(1), 2)
  wrong = jax.random.split(jax.random.key(2), 2)
  hidden = keys_lib.scramble(x, keys, 4)
  np.testing.assert_allclose(
    system.unscramble_secret(spec, hidden, keys, 4, refine, p), x, atol=1e-6
  )
  assert (
    float(jnp.mean(jnp.abs(system.unscramble_secret(spec, hidden, wrong, 4, refine, p) - x))) > 0.05
  )
  # Unkeyed runs pass the revealed image through untouched.
  plain = system.parse_run("inn:two_stage")
  np.testing.assert_array_equal(system.unscramble_secret(plain, x, keys, 4, refine, p), x)
