"""Experiment: train the class-conditional AR prior on tokenizer tokens and report it.

Reports held-out NLL per token (null class, since held-out photos are unseen
classes; and train-photo classes on a train sample) against the unigram entropy
of the tokens, and a grid of samples per class. Models cached in the workdir.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from stegjax.cmsteg import recipes
from stegjax.metrics import report
from stegjax.models import transformer
from stegjax.train import toolkit


def mean_nll(model, params, tokens, labels, batch_size: int = 256) -> float:
  """Mean NLL (bits/token) of flat token sequences under the prior."""
  fn = jax.jit(lambda t, l: recipes.token_nll(model, params, t, l))
  total, count = 0.0, 0
  for i in range(0, len(tokens), batch_size):
    t, l = tokens[i : i + batch_size], labels[i : i + batch_size]
    total += float(fn(t, l)) * len(t)
    count += len(t)
  return total / count / np.log(2)


def unigram_bits(train_tokens, eval_tokens, vocab: int) -> float:
  """Cross-entropy (bits/token) of eval tokens under the train unigram (add-one smoothed)."""
  counts = np.bincount(train_tokens.reshape(-1), minlength=vocab) + 1.0
  p = counts / counts.sum()
  return float(-np.mean(np.log2(p[eval_tokens.reshape(-1)])))


def run(config, workdir: str):
  timers = toolkit.Timers()
  with timers("train or load"):
    vq, prior = recipes.prior(config, workdir)
  train, heldout, info = recipes.dataset(config, workdir)
  tok_tr = recipes.cached_tokens(config, workdir, vq, train, "train")
  tok_ho = recipes.cached_tokens(config, workdir, vq, heldout, "heldout")
  nll, uni = _likelihoods(config, prior, tok_tr, tok_ho, np.asarray(train["label"]))
  with timers("sample"):
    _samples(config, vq, prior, info, tok_tr.shape[1:], workdir)
  results = {
    "bits_per_token": nll,
    "unigram_bits_per_token": uni,
    "train_seconds": timers.seconds("train or load"),
    "timing": timers.split(),
    "grid": list(tok_tr.shape[1:]),
    "vocab": int(config.vq.model.codebook_size),
    "num_classes": prior.model.num_classes,
    "sample": config.prior.sample.to_dict(),
  }
  path = _write(workdir, config, results)
  bits, unigram = nll["heldout_null_class"], uni["heldout"]
  logging.info("ar_prior: held-out %.3f bits/token (unigram %.3f); %s", bits, unigram, path)
  return results


def _likelihoods(config, prior, tok_tr, tok_ho, train_labels):
  """Prior bits/token on held-out and a train sample, and the unigram baseline beside them."""
  n, h, w = tok_tr.shape
  vocab = int(config.vq.model.codebook_size)
  null = prior.model.num_classes
  flat_ho = tok_ho.reshape(len(tok_ho), h * w)
  rs = np.random.RandomState(0)
  sample = rs.choice(n, min(n, len(flat_ho) or 256), replace=False)
  flat_tr = tok_tr.reshape(n, h * w)[sample]
  lab_tr = train_labels[sample].astype(np.int32)
  nll = {
    "heldout_null_class": mean_nll(
      prior.model, prior.params, flat_ho, np.full(len(flat_ho), null, np.int32)
    ),
    "train_sample_own_class": mean_nll(prior.model, prior.params, flat_tr, lab_tr),
    "train_sample_null_class": mean_nll(
      prior.model, prior.params, flat_tr, np.full(len(flat_tr), null, np.int32)
    ),
  }
  uni = {
    "heldout": unigram_bits(tok_tr, tok_ho, vocab),
    "train_sample": unigram_bits(tok_tr, tok_tr.reshape(n, -1)[sample], vocab),
  }
  return nll, uni


def _samples(config, vq, prior, info, grid, workdir):
  """8 samples per training class with the configured CFG / top-k, as samples.png."""
  h, w = grid
  labels = np.repeat(np.asarray(info["train_labels"], np.int32), 8)
  s = config.prior.sample
  toks, _ = transformer.generate(
    prior.model,
    {"params": prior.params},
    jnp.asarray(labels),
    jax.random.PRNGKey(config.seed + 7),
    cfg_scale=s.cfg_scale,
    top_k=s.top_k,
    temperature=s.temperature,
  )
  imgs = vq.model.apply({"params": vq.params}, toks.reshape(-1, h, w), method="decode_indices")
  report.save_grid(
    np.clip(np.asarray(imgs), -1, 1), os.path.join(workdir, "samples.png"), ncol=8, scale=3
  )


def _write(workdir, config, results):
  nll, uni, (h, w) = results["bits_per_token"], results["unigram_bits_per_token"], results["grid"]
  s, m = config.prior.sample, config.prior.model
  table = report.md_table(
    ["tokens", "prior (bits/token)", "unigram (bits/token)"],
    [
      ["held-out photos (null class)", nll["heldout_null_class"], uni["heldout"]],
      ["train photos, own class", nll["train_sample_own_class"], uni["train_sample"]],
      ["train photos, null class", nll["train_sample_null_class"], uni["train_sample"]],
    ],
  )
  return report.write_report(
    workdir,
    "AR prior",
    [
      (
        "Setup",
        f"Llama-style prior, {m.n_layer} layers x {m.dim} wide, {h}x{w} tokens, vocab "
        f"{results['vocab']}, {results['num_classes']} classes (+ null); "
        f"{config.prior.train.num_steps} steps, batch {config.prior.train.batch_size}; "
        f"tokenizer + prior train/load took {results['train_seconds']:.0f} s.",
      ),
      ("Negative log-likelihood", table),
      ("Samples", f"8 per training class, CFG {s.cfg_scale}, top-k {s.top_k}.\n\n![](samples.png)"),
    ],
    results,
  )
