"""Cost-based stego strategy (survey Fig. 2a): a REINFORCE agent picks per-block embedding strengths.

An existing stego-JSCC hider (``system.Hider``) proposes a stego image; the agent scales its
residual block by block, ``stego_s = cover + s_b * (stego - cover)``, with ``s_b`` one of
``levels``. The environment sends ``stego_s`` through the frozen DeepJSCC, asks a frozen
steganalyzer for its logit and the frozen revealing network for the secret, and pays

    reward = P(miss) - w_cover * MSE(stego_s, cover) / ref - w_secret * MSE(secret', secret) / ref

(P(miss) = sigmoid(-logit), the steganalyzer's probability of calling the image a cover;
``ref`` = 1e-3, i.e. 30 dB). The policy is trained with REINFORCE (Williams 1992) and a
batch-mean baseline plus an entropy bonus. The uniform-strength hider is the baseline the
experiment compares it with.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stegjax.metrics import detection
from stegjax.metrics import image as image_metrics
from stegjax.semcom import system

REF_MSE = 1e-3


def steganalyzer_loss_fn(detector) -> Callable:
  """Trainer loss: BCE of a BatchNorm steganalyzer on {'image' in [0,255], 'label' 0/1}."""

  def loss_fn(params, extra, batch, rng, step):
    del rng, step
    logits, upd = detector.apply(
      {"params": params["det"], **extra["det_state"]},
      jnp.asarray(batch["image"], jnp.float32),
      train=True,
      mutable=["batch_stats"],
    )
    labels = jnp.asarray(batch["label"], jnp.float32)
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits.reshape(-1), labels))
    acc = jnp.mean((logits.reshape(-1) > 0) == (labels > 0.5))
    return loss, (
      {"bce": loss, "acc": acc},
      dict(extra, det_state={"batch_stats": upd["batch_stats"]}),
    )

  return loss_fn


def strength_map(actions: jax.Array, levels: Sequence[float], block: int) -> jax.Array:
  """Actions [B, h, w] (level indices) -> per-pixel strengths [B, h*block, w*block, 1]."""
  s = jnp.asarray(levels, jnp.float32)[actions]
  return jnp.repeat(jnp.repeat(s, block, axis=1), block, axis=2)[..., None]


def apply_strengths(cover, stego, smap):
  return jnp.clip(cover + smap * (stego - cover), 0.0, 1.0)


class Policy(nn.Module):
  """Cover (and the hider's residual) -> logits over strength levels per block [B, h, w, L]."""

  num_levels: int
  block: int
  features: int = 16

  @nn.compact
  def __call__(self, cover, residual):
    x = jnp.concatenate([2.0 * cover - 1.0, residual * 10.0], axis=-1)
    x = nn.relu(nn.Conv(self.features, (3, 3))(x))
    x = nn.relu(nn.Conv(self.features, (3, 3))(x))
    x = nn.avg_pool(x, (self.block, self.block), strides=(self.block, self.block))
    x = nn.relu(nn.Conv(self.features, (1, 1))(x))
    return nn.Conv(self.num_levels, (1, 1), kernel_init=nn.initializers.zeros)(x)


def make_env(hider, p_hider, jscc_model, p_jscc, detector, det_vars, snr_db: float, weights):
  """env(cover, secret, smap, key) -> (reward [B], metrics) with every network frozen."""

  def env(cover, secret, smap, key):
    stego = apply_strengths(cover, hider.hide(p_hider, cover, secret), smap)
    received = system.transmit(jscc_model, p_jscc, stego, snr_db, key, "awgn")
    revealed = hider.reveal(p_hider, received)
    logit = detector.apply(det_vars, received * 255.0, train=False).reshape(-1)
    miss = jax.nn.sigmoid(-logit)
    cover_mse = jnp.mean(jnp.square(stego - cover), axis=(1, 2, 3))
    secret_mse = jnp.mean(jnp.square(revealed - secret), axis=(1, 2, 3))
    reward = (
      miss - weights["cover"] * cover_mse / REF_MSE - weights["secret"] * secret_mse / REF_MSE
    )
    return reward, dict(
      logit=logit,
      miss=miss,
      cover_mse=cover_mse,
      secret_mse=secret_mse,
      stego=stego,
      received=received,
    )

  return env


def policy_logits(policy, params, hider, p_hider, cover, secret):
  residual = jax.lax.stop_gradient(hider.hide(p_hider, cover, secret) - cover)
  return policy.apply(params, cover, residual)


def reinforce_loss_fn(policy: Policy, hider, env, levels, entropy: float) -> Callable:
  """Trainer loss for the agent; ``extra['p_hider']`` holds the frozen hider."""

  def loss_fn(params, extra, batch, rng, step):
    del step
    cover, secret = system.to_float(batch["cover"]), system.to_float(batch["secret"])
    k_a, k_ch = jax.random.split(system.typed_key(rng))
    logits = policy_logits(policy, params["policy"], hider, extra["p_hider"], cover, secret)
    actions = jax.random.categorical(k_a, logits)
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.sum(jnp.take_along_axis(logp_all, actions[..., None], -1), axis=(1, 2, 3))
    reward, m = env(cover, secret, strength_map(actions, levels, policy.block), k_ch)
    reward = jax.lax.stop_gradient(reward)
    adv = (reward - jnp.mean(reward)) / (jnp.std(reward) + 1e-6)
    ent = -jnp.mean(jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1))
    loss = -jnp.mean(adv * logp) - entropy * ent
    metrics = dict(
      reward=jnp.mean(reward),
      miss=jnp.mean(m["miss"]),
      secret_mse=jnp.mean(m["secret_mse"]),
      cover_mse=jnp.mean(m["cover_mse"]),
      entropy=ent,
    )
    return loss, (metrics, extra)

  return loss_fn


def greedy_actions(policy, params, hider, p_hider, cover, secret):
  return jnp.argmax(policy_logits(policy, params, hider, p_hider, cover, secret), axis=-1)


def _pe(cover_logits, stego_logits):
  scores = np.concatenate([cover_logits, stego_logits])
  labels = np.concatenate([np.zeros(len(cover_logits)), np.ones(len(stego_logits))])
  return detection.min_pe(scores, labels)[0]


def evaluate(policy, p_policy, hider, p_hider, env, levels, covers, secrets, key) -> dict:
  """Uniform-strength hiders (every level) and the agent's greedy strengths on held-out pairs.

  P_E is the environment steganalyzer's minimum error on received cover vs received stego;
  the agent is compared with the uniform curve interpolated at the agent's secret PSNR.
  """
  n, p = covers.shape[0], covers.shape[1]
  k_c, k_s = jax.random.split(key)
  ones = jnp.ones((n, p, p, 1))
  # The cover through the same channel: what a warden sees when nothing is hidden.
  _, m_cover = env(covers, secrets, 0.0 * ones, k_c)
  s_cover = np.asarray(m_cover["logit"])

  def measure(smap):
    _, m = env(covers, secrets, smap, k_s)
    s_stego = np.asarray(m["logit"])
    return dict(
      secret_psnr=float(np.mean(image_metrics.psnr_from_mse(m["secret_mse"]))),
      cover_psnr=float(np.mean(image_metrics.psnr_from_mse(jnp.maximum(m["cover_mse"], 1e-12)))),
      pe=float(_pe(s_cover, s_stego)),
      miss=float(np.mean(np.asarray(m["miss"]))),
    )

  uniform = [dict(level=float(s), **measure(s * ones)) for s in levels]
  acts = greedy_actions(policy, p_policy, hider, p_hider, covers, secrets)
  agent = measure(strength_map(acts, levels, policy.block))
  agent["mean_strength"] = float(np.mean(np.asarray(levels)[np.asarray(acts)]))
  order = sorted(uniform, key=lambda r: r["secret_psnr"])
  xs = [r["secret_psnr"] for r in order]
  at = lambda k: float(np.interp(agent["secret_psnr"], xs, [r[k] for r in order]))
  matched = dict(
    pe=at("pe"), cover_psnr=at("cover_psnr"), inside=xs[0] <= agent["secret_psnr"] <= xs[-1]
  )
  return dict(uniform=uniform, agent=agent, uniform_at_agent_secret_psnr=matched, n=n)
