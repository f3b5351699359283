"""Experiment: train the VQ tokenizer on real-photo patches and report its quality.

Writes workdir/report.md|json, workdir/reconstructions.png; the model is cached
under workdir/tokenizer (a rerun trains nothing).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from stegjax.cmsteg import recipes
from stegjax.metrics import image as image_metrics
from stegjax.metrics import report
from stegjax.train import toolkit


def evaluate_tokenizer(vq: recipes.Trained, arrays, batch_size: int = 256) -> dict:
  """PSNR (dB, [0,1] pixels) of reconstructions and codebook usage over a whole split."""

  @jax.jit
  def rec(x):
    x = recipes.to_model_range(x)
    x_rec, aux = vq.model.apply({"params": vq.params}, x)
    mse = jnp.mean(jnp.square((jnp.clip(x_rec, -1, 1) - x) / 2.0), axis=(1, 2, 3))
    return x_rec, mse, aux["indices"]

  images = np.asarray(arrays["image"])
  mses, indices, recs = [], [], []
  for i in range(0, len(images), batch_size):
    x_rec, mse, idx = rec(images[i : i + batch_size])
    mses.append(np.asarray(mse))
    indices.append(np.asarray(idx))
    if i == 0:
      recs = np.asarray(x_rec)
  mses = np.concatenate(mses)
  idx = np.concatenate(indices).reshape(-1)
  counts = np.bincount(idx, minlength=vq.model.codebook_size)
  probs = counts / counts.sum()
  nz = probs[probs > 0]
  return {
    "psnr_db": float(np.mean(image_metrics.psnr_from_mse(np.maximum(mses, 1e-12)))),
    "psnr_db_of_mean_mse": float(image_metrics.psnr_from_mse(np.mean(mses))),
    "codebook_usage": float(np.mean(counts > 0)),
    "codebook_perplexity": float(np.exp(-np.sum(nz * np.log(nz)))),
    "num_images": int(len(images)),
    "examples": recs,
  }


def run(config, workdir: str):
  timers = toolkit.Timers()
  with timers("train or load"):
    train, heldout, info = recipes.dataset(config, workdir)
    vq = recipes.tokenizer(config, workdir, train)
  train_s = timers.seconds("train or load")
  with timers("evaluate"):
    ev = evaluate_tokenizer(vq, heldout)
    ev_train = evaluate_tokenizer(vq, {"image": train["image"][: len(heldout["image"])]})
  n = min(16, len(heldout["image"]))
  grid = np.concatenate(
    [report.to_uint8(np.asarray(heldout["image"][:n])), report.to_uint8(ev.pop("examples")[:n])]
  )
  report.save_grid(grid, os.path.join(workdir, "reconstructions.png"), ncol=n, scale=4)
  ev_train.pop("examples")
  m = config.vq.model
  h = config.data.patch_size // vq.info["downsample"]
  results = {
    "heldout": ev,
    "train_sample": ev_train,
    "train_seconds": train_s,
    "timing": timers.split(),
    "token_grid": [h, h],
    "codebook_size": m.codebook_size,
    "dataset": {k: info[k] for k in ("num_train", "num_heldout", "heldout_images")},
  }
  path = _write(workdir, config, info, results)
  psnr, usage = ev["psnr_db"], ev["codebook_usage"]
  logging.info("tokenizer: held-out PSNR %.2f dB, codebook usage %.2f; %s", psnr, usage, path)
  return results


def _write(workdir, config, info, results):
  ev, ev_train = results["heldout"], results["train_sample"]
  m, h = config.vq.model, results["token_grid"][0]
  table = report.md_table(
    ["split", "PSNR (dB)", "codebook usage", "perplexity", "images"],
    [
      [
        "held-out photos",
        ev["psnr_db"],
        ev["codebook_usage"],
        ev["codebook_perplexity"],
        ev["num_images"],
      ],
      [
        "train photos (sample)",
        ev_train["psnr_db"],
        ev_train["codebook_usage"],
        ev_train["codebook_perplexity"],
        ev_train["num_images"],
      ],
    ],
  )
  return report.write_report(
    workdir,
    "VQ tokenizer",
    [
      (
        "Setup",
        f"{config.data.patch_size}x{config.data.patch_size} patches -> {h}x{h} tokens, "
        f"codebook {m.codebook_size} x {m.codebook_dim}, {config.vq.train.num_steps} steps "
        f"(batch {config.vq.train.batch_size}); train + load took {results['train_seconds']:.0f} s. "
        f"Held-out photos: {', '.join(info['heldout_images'])}.",
      ),
      (
        "Reconstruction",
        table + "\n\n![](reconstructions.png) (top: input, bottom: reconstruction)",
      ),
    ],
    results,
  )
