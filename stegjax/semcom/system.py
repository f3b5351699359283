"""Stego JSCC as pure functions: channel, hiders of the three families, losses, evaluation.

The transmitter hides a (key-scrambled) secret in a cover, sends the stego image
through DeepJSCC over AWGN/Rayleigh at a per-example SNR, and the receiver
reveals the secret from the decoded image (DESIGN.md "Stego semantic
communication"). Strategies (survey Sec. III):

- two-stage ("pre-trained model-based"): DeepJSCC trained first and frozen
  (its params live in the trainer's ``extra``), then only the hider trains;
- end-to-end: DeepJSCC and hider train jointly from scratch;
- high-frequency: the stego differs from the cover only in the Haar high bands
  (INN: masked coupling; CNN/GAN: masked residual);
- adversarial (GAN family): a discriminator on stego vs cover;
- key-conditioned: the secret is scrambled with a per-transmission key
  (``keys.scramble``) before hiding; only the keyed receiver unscrambles, then a
  public post-filter (``networks.RefineNet``) restores what the scramble hid from
  every network upstream: the secret's smoothness across blocks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from stegjax import channels
from stegjax import errors
from stegjax.models import inn as inn_lib
from stegjax.models import jscc as jscc_lib
from stegjax.semcom import keys as keys_lib
from stegjax.semcom import networks

FAMILIES = ("cnn", "gan", "inn")
CHANNELS = ("awgn", "rayleigh")


# ----------------------------------------------------------------------------- channel


def apply_channel(z: jax.Array, snr_db, key: jax.Array, channel: str) -> jax.Array:
  """The registered wireless channel ``channel`` (awgn, rayleigh, mixed) applied to symbols z."""
  return channels.wireless_channel(channel).apply(z, snr_db, key)


def sample_snr(key: jax.Array, batch: int, lo: float, hi: float) -> jax.Array:
  """Per-example training SNR in dB, uniform on [lo, hi]."""
  if hi < lo:
    raise errors.ConfigError(f"SNR range [{lo}, {hi}] dB is empty")
  return jax.random.uniform(key, (batch,), minval=lo, maxval=hi)


def make_jscc(features: int, ratio: float, arch: str = "conv"):
  """DeepJSCC at bandwidth ratio k/n = ``ratio`` (1/6 -> 16 latent channels).

  ``arch``: 'conv' (``jscc.DeepJSCC``, Bourtsoulatze et al.) or 'pilot' (``jscc.PilotJSCC``:
  analog linear path + conv residual + pilot; trains far faster on a CPU budget).
  """
  c = jscc_lib.latent_channels_for_ratio(ratio)
  if arch == "conv":
    return jscc_lib.DeepJSCC(features=int(features), latent_channels=c)
  if arch == "pilot":
    return jscc_lib.PilotJSCC(features=int(features), latent_channels=c)
  raise errors.ConfigError(f"unknown JSCC arch {arch!r}; valid: 'conv', 'pilot'")


def init_jscc(model, rng, image_size: int, images=None):
  """Initial JSCC params; ``PilotJSCC`` gets its PCA init from ``images`` when given."""
  params = model.init(rng, jnp.zeros((1, image_size, image_size, 3)))
  if isinstance(model, jscc_lib.PilotJSCC) and images is not None:
    params = jscc_lib.pca_init(params, images, model.latent_channels)
  return params


def transmit(model: jscc_lib.DeepJSCC, params, x, snr_db, key, channel: str) -> jax.Array:
  """encode -> power-normalize -> channel -> decode."""
  z = model.apply(params, x, method=model.encode)
  return model.apply(params, apply_channel(z, snr_db, key, channel), method=model.decode)


# ----------------------------------------------------------------------------- hiders


def _mask_low_band(r: jax.Array) -> jax.Array:
  """Zero a residual's Haar LL band (high-frequency hiding for the CNN/GAN hiders)."""
  y = inn_lib.haar_dwt(r)
  c = r.shape[-1]
  return inn_lib.haar_iwt(y.at[..., :c].set(0.0))


@dataclasses.dataclass(frozen=True)
class Hider:
  """One family's hide/reveal pair with a uniform interface over its params."""

  family: str
  cfg: Any
  high_freq: bool = False

  def _nets(self):
    c = self.cfg
    if self.family in ("cnn", "gan"):
      return (
        networks.HideNet(int(c.features), int(c.depth)),
        networks.RevealNet(int(c.features), int(c.depth)),
      )
    if self.family == "inn":
      return inn_lib.HidingINN(
        num_blocks=int(c.num_blocks),
        growth=int(c.growth),
        num_convs=int(c.get("num_convs", 5)),
        clamp=float(c.clamp),
        high_freq_only=self.high_freq,
      )
    raise ValueError(f"unknown stego family {self.family!r}; valid: {FAMILIES}")

  def init(self, rng, image_shape):
    x = jnp.zeros((1, *image_shape), jnp.float32)
    if self.family == "inn":
      return self._nets().init(rng, x, x)
    hide, reveal = self._nets()
    k1, k2 = jax.random.split(rng)
    return {"hide": hide.init(k1, x, x), "reveal": reveal.init(k2, x)}

  def hide(self, params, cover, secret):
    if self.family == "inn":
      m = self._nets()
      stego, _ = m.apply(params, cover, secret, method=m.hide)
      return stego
    hide, _ = self._nets()
    stego = hide.apply(params["hide"], cover, secret)
    if self.high_freq:
      stego = cover + _mask_low_band(stego - cover)
    return stego

  def reveal(self, params, received):
    if self.family == "inn":
      m = self._nets()
      _, secret = m.apply(params, received, jnp.zeros_like(received), method=m.reveal)
      return secret
    _, reveal = self._nets()
    return reveal.apply(params["reveal"], received)


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One row family of the table: a family and its strategies."""

  name: str
  family: str
  end_to_end: bool = False
  high_freq: bool = False
  keyed: bool = True

  @property
  def adversarial(self) -> bool:
    return self.family == "gan"


def parse_run(spec: str) -> RunSpec:
  """'inn:two_stage+key+hf' -> RunSpec. Tokens: two_stage | end_to_end, key, hf."""
  if ":" not in spec:
    raise errors.ConfigError(f"run spec {spec!r} must look like 'family:strategy[+key][+hf]'")
  family, rest = spec.split(":", 1)
  if family not in FAMILIES:
    raise errors.ConfigError(f"unknown stego family {family!r} in run {spec!r}; valid: {FAMILIES}")
  toks = rest.split("+")
  if toks[0] not in ("two_stage", "end_to_end"):
    raise errors.ConfigError(
      f"run {spec!r}: strategy must be 'two_stage' or 'end_to_end', got {toks[0]!r}"
    )
  extra = set(toks[1:])
  unknown = extra - {"key", "hf"}
  if unknown:
    raise errors.ConfigError(f"run {spec!r}: unknown option(s) {sorted(unknown)}; valid: key, hf")
  name = spec.replace(":", "_").replace("+", "_")
  return RunSpec(name, family, toks[0] == "end_to_end", "hf" in extra, "key" in extra)


# ----------------------------------------------------------------------------- losses


def typed_key(rng: jax.Array) -> jax.Array:
  """The trainer hands loss functions raw uint32 key data; keys.scramble wants typed keys."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  return jax.random.wrap_key_data(rng)


def mse(a, b):
  return jnp.mean(jnp.square(a - b))


def to_float(x):
  return jnp.asarray(x, jnp.float32) / 255.0


def bce_logits(logits, label: float):
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))


def jscc_loss_fn(model, chan_cfg) -> Callable:
  """DeepJSCC pretraining: MSE of the reconstruction at a random SNR on a random channel."""

  def loss_fn(params, extra, batch, rng, step):
    del step
    x = to_float(batch["image"])
    k_snr, k_ch = jax.random.split(typed_key(rng))
    snr = sample_snr(k_snr, x.shape[0], chan_cfg.train_snr_min, chan_cfg.train_snr_max)
    y = transmit(model, params["jscc"], x, snr, k_ch, chan_cfg.train_channel)
    loss = mse(y, x)
    return loss, ({"mse": loss}, extra)

  return loss_fn


def stego_forward(
  spec: RunSpec,
  hider: Hider,
  jscc_model,
  p_hider,
  p_jscc,
  cover,
  secret,
  scramble_keys,
  snr,
  k_ch,
  channel: str,
  block: int,
):
  """cover, secret in [0,1] -> (secret as hidden, stego, received, revealed as hidden)."""
  hidden = keys_lib.scramble(secret, scramble_keys, block) if spec.keyed else secret
  stego = hider.hide(p_hider, cover, hidden)
  sent = jnp.clip(stego, 0.0, 1.0)  # an image: what the JSCC encoder sees
  received = transmit(jscc_model, p_jscc, sent, snr, k_ch, channel)
  revealed = hider.reveal(p_hider, received)
  return hidden, stego, received, revealed


def unscramble_secret(
  spec: RunSpec, revealed, scramble_keys, block: int, refine: nn.Module | None = None, p_refine=None
) -> jax.Array:
  """The receiver's secret from the revealed (scrambled) image: unscramble with its key,
  then the public post-filter (``networks.RefineNet``) when the run has one. With a
  wrong key this is the naive eavesdropper's guess."""
  if not spec.keyed:
    return revealed
  secret = keys_lib.unscramble(revealed, scramble_keys, block)
  return secret if refine is None else refine.apply(p_refine, secret)


def stego_loss_fn(
  spec: RunSpec,
  hider: Hider,
  jscc_model,
  chan_cfg,
  w,
  block: int,
  disc: nn.Module | None = None,
  refine: nn.Module | None = None,
) -> Callable:
  """Loss of one stego run. params = {'hider', ['jscc' if end-to-end], ['disc' if GAN],
  ['refine' if keyed with a post-filter]}.

  Two-stage runs read the frozen DeepJSCC from ``extra['jscc']``. The secret term is
  computed in the scrambled domain, which equals the unscrambled MSE (keys.py); a
  post-filter adds the MSE of the refined secret (weight ``w.refined``).
  """

  def loss_fn(params, extra, batch, rng, step):
    del step
    cover, secret = to_float(batch["cover"]), to_float(batch["secret"])
    b = cover.shape[0]
    k_key, k_snr, k_ch = jax.random.split(typed_key(rng), 3)
    p_jscc = params["jscc"] if spec.end_to_end else extra["jscc"]
    snr = sample_snr(k_snr, b, chan_cfg.train_snr_min, chan_cfg.train_snr_max)
    scramble_keys = jax.random.split(k_key, b)
    hidden, stego, received, revealed = stego_forward(
      spec,
      hider,
      jscc_model,
      params["hider"],
      p_jscc,
      cover,
      secret,
      scramble_keys,
      snr,
      k_ch,
      chan_cfg.train_channel,
      block,
    )
    l_stego = mse(stego, cover)
    l_secret = mse(revealed, hidden)
    l_rx = mse(received, cover)
    c = cover.shape[-1]
    l_low = mse(inn_lib.haar_dwt(stego)[..., :c], inn_lib.haar_dwt(cover)[..., :c])
    loss = w.stego * l_stego + w.secret * l_secret + w.received * l_rx + w.low_freq * l_low
    metrics = {"stego_mse": l_stego, "secret_mse": l_secret, "received_mse": l_rx}
    if refine is not None and spec.keyed:
      refined = unscramble_secret(spec, revealed, scramble_keys, block, refine, params["refine"])
      l_refined = mse(refined, secret)
      loss = loss + w.refined * l_refined
      metrics["refined_mse"] = l_refined
    if disc is not None:
      # One optimizer trains both players: the generator sees a frozen copy of D,
      # D sees a frozen stego (stop_gradient both ways).
      p_d = params["disc"]
      d_loss = bce_logits(disc.apply(p_d, cover), 0.0) + bce_logits(
        disc.apply(p_d, jax.lax.stop_gradient(stego)), 1.0
      )
      # D labels: cover 0, stego 1; the generator wants its stego called cover (label 0).
      g_adv = bce_logits(disc.apply(jax.lax.stop_gradient(p_d), stego), 0.0)
      loss = loss + w.adversarial * g_adv + d_loss
      metrics.update(adv_g=g_adv, adv_d=d_loss)
    return loss, (metrics, extra)

  return loss_fn


def eve_input(hider: Hider, p_hider, received: jax.Array) -> jax.Array:
  """What the closed-box eavesdropper's network sees: the received image and the public
  revealing network's output on it (for keyed runs, the secret still scrambled)."""
  return jnp.concatenate([received, hider.reveal(p_hider, received)], axis=-1)


def inverse_eve_loss_fn(
  spec: RunSpec, hider: Hider, jscc_model, eve_net, chan_cfg, block: int
) -> Callable:
  """Closed-box inverse (model-inversion) eavesdropper: learns received stego -> secret.

  It trains on intercepted (received stego, secret) pairs produced with keys the
  legitimate pair never uses (a fresh random key per pair), with the trained hider
  and DeepJSCC frozen in ``extra``; its input also carries the public revealing
  network's output (``eve_input``), so it is at least as informed as the naive one.
  """

  def loss_fn(params, extra, batch, rng, step):
    del step
    cover, secret = to_float(batch["cover"]), to_float(batch["secret"])
    b = cover.shape[0]
    k_key, k_snr, k_ch = jax.random.split(typed_key(rng), 3)
    snr = sample_snr(k_snr, b, chan_cfg.train_snr_min, chan_cfg.train_snr_max)
    _, _, received, _ = stego_forward(
      spec,
      hider,
      jscc_model,
      extra["hider"],
      extra["jscc"],
      cover,
      secret,
      jax.random.split(k_key, b),
      snr,
      k_ch,
      chan_cfg.train_channel,
      block,
    )
    guess = eve_net.apply(
      params["eve"], jax.lax.stop_gradient(eve_input(hider, extra["hider"], received))
    )
    loss = mse(guess, secret)
    return loss, ({"mse": loss}, extra)

  return loss_fn


def steganalyzer_loss_fn(
  spec: RunSpec, hider: Hider, jscc_model, detector, chan_cfg, block: int
) -> Callable:
  """Steganalyzer on received images: JSCC(cover) labelled 0 vs JSCC(stego) labelled 1."""

  def loss_fn(params, extra, batch, rng, step):
    del step
    cover, secret = to_float(batch["cover"]), to_float(batch["secret"])
    b = cover.shape[0]
    k_key, k_snr, k_ch, k_ch2 = jax.random.split(typed_key(rng), 4)
    snr = sample_snr(k_snr, b, chan_cfg.train_snr_min, chan_cfg.train_snr_max)
    _, _, received, _ = stego_forward(
      spec,
      hider,
      jscc_model,
      extra["hider"],
      extra["jscc"],
      cover,
      secret,
      jax.random.split(k_key, b),
      snr,
      k_ch,
      chan_cfg.train_channel,
      block,
    )
    rx_cover = transmit(jscc_model, extra["jscc"], cover, snr, k_ch2, chan_cfg.train_channel)
    x = jax.lax.stop_gradient(jnp.concatenate([rx_cover, received]) * 255.0)
    labels = jnp.concatenate([jnp.zeros(b), jnp.ones(b)])
    logits, upd = detector.apply(
      {"params": params["det"], **extra["det_state"]}, x, train=True, mutable=["batch_stats"]
    )
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits.reshape(-1), labels))
    acc = jnp.mean((logits.reshape(-1) > 0) == (labels > 0.5))
    new_extra = dict(extra, det_state={"batch_stats": upd["batch_stats"]})
    return loss, ({"bce": loss, "acc": acc}, new_extra)

  return loss_fn
