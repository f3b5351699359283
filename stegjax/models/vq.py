"""VQ image tokenizer in the LlamaGen VQ-16 form (CMSTEG's tokenizer), scaled by config.

Images are float NHWC in [-1, 1]. The layout mirrors LlamaGen's
``tokenizer/tokenizer_image/vq_model.py`` so that published PyTorch checkpoints map
one-to-one. Parameter paths, torch key -> flax path (``.N`` -> ``_N``;
conv ``weight`` OIHW -> ``kernel`` HWIO; GroupNorm ``weight`` -> ``scale``):

    encoder.conv_in.{weight,bias}                    encoder/conv_in/{kernel,bias}
    encoder.conv_blocks.L.res.J.{norm1,conv1,norm2,conv2,nin_shortcut}
                                                     encoder/conv_blocks_L/res_J/...
    encoder.conv_blocks.L.attn.J.{norm,q,k,v,proj_out}  encoder/conv_blocks_L/attn_J/...
    encoder.conv_blocks.L.downsample.conv            encoder/conv_blocks_L/downsample/conv
    encoder.mid.{0,1,2}                              encoder/mid_{0,1,2}
    encoder.norm_out / encoder.conv_out              encoder/norm_out, encoder/conv_out
    decoder.* (same, with conv_blocks.L.upsample.conv)  decoder/...
    quant_conv / post_quant_conv                     quant_conv / post_quant_conv
    quantize.embedding.weight  [N, d]                quantizer/embedding  [N, d]
    quantize.codebook_used (buffer)                  dropped

(The quantizer sub-module is ``quantizer`` because ``quantize`` is the public method.)
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  # torch.nn.functional.normalize: x / max(||x||, eps)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def _conv(
  features: int,
  kernel: int,
  dtype: Dtype,
  name: str | None = None,
  stride: int = 1,
  padding: Any = None,
) -> nn.Conv:
  if padding is None:
    padding = ((kernel // 2, kernel // 2),) * 2
  return nn.Conv(
    features, (kernel, kernel), strides=(stride, stride), padding=padding, dtype=dtype, name=name
  )


def _check_groups(channels: int, groups: int, where: str) -> None:
  if channels % groups:
    raise ValueError(f"{where}: {channels} channels are not divisible by norm_groups={groups}")


class ResnetBlock(nn.Module):
  out_channels: int
  dropout: float = 0.0
  norm_groups: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_ch = x.shape[-1]
    _check_groups(in_ch, self.norm_groups, "ResnetBlock input")
    _check_groups(self.out_channels, self.norm_groups, "ResnetBlock output")
    gn = lambda name: nn.GroupNorm(
      self.norm_groups, epsilon=1e-6, use_fast_variance=False, dtype=self.dtype, name=name
    )
    h = nn.swish(gn("norm1")(x))
    h = _conv(self.out_channels, 3, self.dtype, "conv1")(h)
    h = nn.swish(gn("norm2")(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = _conv(self.out_channels, 3, self.dtype, "conv2")(h)
    if in_ch != self.out_channels:
      x = _conv(self.out_channels, 1, self.dtype, "nin_shortcut")(x)
    return x + h


class AttnBlock(nn.Module):
  """Single-head self-attention over all h*w positions (lowest resolution only)."""

  norm_groups: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, hh, ww, c = x.shape
    h = nn.GroupNorm(
      self.norm_groups, epsilon=1e-6, use_fast_variance=False, dtype=self.dtype, name="norm"
    )(x)
    q = _conv(c, 1, self.dtype, "q")(h).reshape(b, hh * ww, c)
    k = _conv(c, 1, self.dtype, "k")(h).reshape(b, hh * ww, c)
    v = _conv(c, 1, self.dtype, "v")(h).reshape(b, hh * ww, c)
    w = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32) * (c**-0.5)
    w = jax.nn.softmax(w, axis=-1).astype(v.dtype)
    h = jnp.einsum("bqk,bkc->bqc", w, v).reshape(b, hh, ww, c)
    return x + _conv(c, 1, self.dtype, "proj_out")(h)


class Downsample(nn.Module):
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # LlamaGen pads right/bottom by one, then a 3x3 stride-2 conv without padding.
    return _conv(x.shape[-1], 3, self.dtype, "conv", stride=2, padding=((0, 1), (0, 1)))(x)


class Upsample(nn.Module):
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest x2
    return _conv(x.shape[-1], 3, self.dtype, "conv")(x)


class ConvBlock(nn.Module):
  """One resolution level: res blocks (+ attention at the lowest level) and a resampler."""

  out_channels: int
  num_res: int
  with_attn: bool
  resample: str | None  # 'down', 'up' or None
  dropout: float = 0.0
  norm_groups: int = 32
  dtype: Dtype = jnp.float32

  def setup(self):
    self.res = [
      ResnetBlock(self.out_channels, self.dropout, self.norm_groups, self.dtype)
      for _ in range(self.num_res)
    ]
    if self.with_attn:
      self.attn = [AttnBlock(self.norm_groups, self.dtype) for _ in range(self.num_res)]
    if self.resample == "down":
      self.downsample = Downsample(self.dtype)
    elif self.resample == "up":
      self.upsample = Upsample(self.dtype)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for j in range(self.num_res):
      x = self.res[j](x, train)
      if self.with_attn:
        x = self.attn[j](x)
    if self.resample == "down":
      x = self.downsample(x)
    elif self.resample == "up":
      x = self.upsample(x)
    return x


class Encoder(nn.Module):
  ch: int = 128
  ch_mult: Sequence[int] = (1, 1, 2, 2, 4)
  num_res_blocks: int = 2
  z_channels: int = 256
  dropout: float = 0.0
  norm_groups: int = 32
  dtype: Dtype = jnp.float32

  def setup(self):
    n = len(self.ch_mult)
    self.conv_in = _conv(self.ch, 3, self.dtype)
    self.conv_blocks = [
      ConvBlock(
        self.ch * m,
        self.num_res_blocks,
        with_attn=(i == n - 1),
        resample=None if i == n - 1 else "down",
        dropout=self.dropout,
        norm_groups=self.norm_groups,
        dtype=self.dtype,
      )
      for i, m in enumerate(self.ch_mult)
    ]
    c = self.ch * self.ch_mult[-1]
    self.mid = [
      ResnetBlock(c, self.dropout, self.norm_groups, self.dtype),
      AttnBlock(self.norm_groups, self.dtype),
      ResnetBlock(c, self.dropout, self.norm_groups, self.dtype),
    ]
    self.norm_out = nn.GroupNorm(
      self.norm_groups, epsilon=1e-6, use_fast_variance=False, dtype=self.dtype
    )
    self.conv_out = _conv(self.z_channels, 3, self.dtype)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = self.conv_in(x)
    for block in self.conv_blocks:
      h = block(h, train)
    h = self.mid[0](h, train)
    h = self.mid[1](h)
    h = self.mid[2](h, train)
    return self.conv_out(nn.swish(self.norm_out(h)))


class Decoder(nn.Module):
  ch: int = 128
  ch_mult: Sequence[int] = (1, 1, 2, 2, 4)
  num_res_blocks: int = 2
  out_channels: int = 3
  dropout: float = 0.0
  norm_groups: int = 32
  dtype: Dtype = jnp.float32

  def setup(self):
    n = len(self.ch_mult)
    c = self.ch * self.ch_mult[-1]
    self.conv_in = _conv(c, 3, self.dtype)
    self.mid = [
      ResnetBlock(c, self.dropout, self.norm_groups, self.dtype),
      AttnBlock(self.norm_groups, self.dtype),
      ResnetBlock(c, self.dropout, self.norm_groups, self.dtype),
    ]
    # conv_blocks_0 is the lowest resolution (LlamaGen iterates reversed(range(n))).
    self.conv_blocks = [
      ConvBlock(
        self.ch * self.ch_mult[i],
        self.num_res_blocks + 1,
        with_attn=(i == n - 1),
        resample="up" if i != 0 else None,
        dropout=self.dropout,
        norm_groups=self.norm_groups,
        dtype=self.dtype,
      )
      for i in reversed(range(n))
    ]
    self.norm_out = nn.GroupNorm(
      self.norm_groups, epsilon=1e-6, use_fast_variance=False, dtype=self.dtype
    )
    self.conv_out = _conv(self.out_channels, 3, self.dtype)

  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    h = self.conv_in(z)
    h = self.mid[0](h, train)
    h = self.mid[1](h)
    h = self.mid[2](h, train)
    for block in self.conv_blocks:
      h = block(h, train)
    return self.conv_out(nn.swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
  codebook_size: int
  codebook_dim: int
  l2_norm: bool = True

  def setup(self):
    n = self.codebook_size

    def init(key, shape, dtype=jnp.float32):
      # LlamaGen: uniform(-1/N, 1/N), then l2-normalized rows.
      e = jax.random.uniform(key, shape, dtype, -1.0 / n, 1.0 / n)
      return _l2_normalize(e) if self.l2_norm else e

    self.embedding = self.param("embedding", init, (n, self.codebook_dim))

  def codebook(self) -> jax.Array:
    """The codebook as used for lookup (l2-normalized rows when l2_norm)."""
    return _l2_normalize(self.embedding) if self.l2_norm else self.embedding

  def distances(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(z in codebook space [..., d], squared distances [..., N]) as in LlamaGen."""
    e = self.codebook()
    z = _l2_normalize(z) if self.l2_norm else z
    zf = z.astype(jnp.float32)
    d = (
      jnp.sum(zf**2, axis=-1, keepdims=True)
      + jnp.sum(e**2, axis=-1)
      - 2.0 * jnp.einsum("...d,nd->...n", zf, e)
    )
    return z, d

  def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns (indices int32[...], z_q straight-through, z normalized)."""
    z, d = self.distances(z)
    idx = jnp.argmin(d, axis=-1).astype(jnp.int32)
    z_q = jnp.take(self.codebook(), idx, axis=0).astype(z.dtype)
    z_st = z + jax.lax.stop_gradient(z_q - z)  # straight-through estimator
    return idx, z_st, z

  def lookup(self, idx: jax.Array) -> jax.Array:
    return jnp.take(self.codebook(), idx, axis=0)


class VQModel(nn.Module):
  """LlamaGen VQ tokenizer. Downsampling factor is 2**(len(ch_mult)-1).

  VQ-16 (the paper's tokenizer): ch=128, ch_mult=(1,1,2,2,4), num_res_blocks=2,
  z_channels=256, codebook_size=16384, codebook_dim=8.
  """

  ch: int = 128
  ch_mult: Sequence[int] = (1, 1, 2, 2, 4)
  num_res_blocks: int = 2
  z_channels: int = 256
  codebook_size: int = 16384
  codebook_dim: int = 8
  beta: float = 0.25
  l2_norm: bool = True
  dropout: float = 0.0
  entropy_loss_ratio: float = 0.0
  norm_groups: int = 32
  dtype: Dtype = jnp.float32

  def setup(self):
    if not self.ch_mult:
      raise ValueError("VQModel.ch_mult must be non-empty")
    if self.codebook_size < 1 or self.codebook_dim < 1:
      raise ValueError(f"bad codebook shape {self.codebook_size} x {self.codebook_dim}")
    common = dict(
      ch=self.ch,
      ch_mult=tuple(self.ch_mult),
      num_res_blocks=self.num_res_blocks,
      dropout=self.dropout,
      norm_groups=self.norm_groups,
      dtype=self.dtype,
    )
    self.encoder = Encoder(z_channels=self.z_channels, **common)
    self.decoder = Decoder(out_channels=3, **common)
    self.quantizer = VectorQuantizer(self.codebook_size, self.codebook_dim, self.l2_norm)
    self.quant_conv = _conv(self.codebook_dim, 1, self.dtype)
    self.post_quant_conv = _conv(self.z_channels, 1, self.dtype)

  @property
  def downsample_factor(self) -> int:
    return 2 ** (len(self.ch_mult) - 1)

  def _check_image(self, x: jax.Array) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"VQModel expects NHWC RGB images [B,H,W,3], got shape {x.shape}")
    f = self.downsample_factor
    if x.shape[1] % f or x.shape[2] % f:
      raise ValueError(
        f"image size {x.shape[1]}x{x.shape[2]} is not a multiple of the downsampling factor {f}"
      )

  def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Image [B,H,W,3] in [-1,1] -> z float[B,h,w,codebook_dim] (after quant_conv)."""
    self._check_image(x)
    z = self.quant_conv(self.encoder(x, train))
    f = self.downsample_factor
    chex.assert_shape(z, (x.shape[0], x.shape[1] // f, x.shape[2] // f, self.codebook_dim))
    return z

  def quantize(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """z [B,h,w,d] -> (indices int32[B,h,w], straight-through z_q [B,h,w,d])."""
    if z.ndim != 4 or z.shape[-1] != self.codebook_dim:
      raise ValueError(f"quantize expects [B,h,w,{self.codebook_dim}], got {z.shape}")
    idx, z_q, _ = self.quantizer(z)
    return idx, z_q

  def decode(self, z_q: jax.Array, train: bool = False) -> jax.Array:
    """Quantized latents [B,h,w,d] -> image [B,H,W,3]."""
    if z_q.ndim != 4 or z_q.shape[-1] != self.codebook_dim:
      raise ValueError(f"decode expects [B,h,w,{self.codebook_dim}], got {z_q.shape}")
    return self.decoder(self.post_quant_conv(z_q.astype(self.dtype)), train)

  def decode_indices(self, indices: jax.Array) -> jax.Array:
    """Token grid int[B,h,w] -> image [B,H,W,3]."""
    if indices.ndim != 3:
      raise ValueError(f"decode_indices expects int[B,h,w], got shape {indices.shape}")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
      raise ValueError(f"decode_indices expects integer indices, got {indices.dtype}")
    return self.decode(self.quantizer.lookup(indices))

  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict]:
    """Reconstruct x; aux holds the VQ losses and codebook statistics of this batch."""
    z = self.encode(x, train)
    idx, z_st, z_n = self.quantizer(z)
    z_q = jax.lax.stop_gradient(z_st)  # the value of the chosen entries
    # Losses on the codebook entries themselves (gradient reaches the codebook).
    e_q = self.quantizer.lookup(idx)
    codebook_loss = jnp.mean(jnp.square(e_q - jax.lax.stop_gradient(z_n)))
    commit_loss = self.beta * jnp.mean(jnp.square(z_q - z_n))
    counts = jnp.zeros((self.codebook_size,), jnp.float32).at[idx.reshape(-1)].add(1.0)
    probs = counts / idx.size
    perplexity = jnp.exp(-jnp.sum(jnp.where(probs > 0, probs * jnp.log(probs), 0.0)))
    usage = jnp.mean((counts > 0).astype(jnp.float32))
    aux = dict(
      codebook_loss=codebook_loss,
      commit_loss=commit_loss,
      indices=idx,
      perplexity=perplexity,
      usage=usage,
    )
    if self.entropy_loss_ratio > 0:
      _, d = self.quantizer.distances(z)
      aux["entropy_loss"] = self.entropy_loss_ratio * _entropy_loss(-d)
    x_rec = self.decode(z_st, train)
    chex.assert_equal_shape([x_rec, x])
    return x_rec, aux


def _entropy_loss(affinity: jax.Array, temperature: float = 0.01) -> jax.Array:
  # Per-sample entropy minus batch-average entropy (LlamaGen / MaskGIT), encourages usage.
  a = affinity.reshape(-1, affinity.shape[-1]) / temperature
  probs = jax.nn.softmax(a, axis=-1)
  log_probs = jax.nn.log_softmax(a + 1e-5, axis=-1)
  avg = jnp.mean(probs, axis=0)
  avg_entropy = -jnp.sum(avg * jnp.log(avg + 1e-5))
  sample_entropy = -jnp.mean(jnp.sum(probs * log_probs, axis=-1))
  return sample_entropy - avg_entropy


class PatchDiscriminator(nn.Module):
  """PatchGAN discriminator (pix2pix / taming NLayerDiscriminator shape).

  GroupNorm replaces BatchNorm so the module stays stateless. Returns patch logits
  [B, h', w', 1] for images [B, H, W, 3] in [-1, 1].
  """

  ndf: int = 64
  n_layers: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"PatchDiscriminator expects [B,H,W,3], got {x.shape}")
    pad = ((1, 1), (1, 1))
    h = nn.Conv(self.ndf, (4, 4), strides=(2, 2), padding=pad, dtype=self.dtype)(x)
    h = nn.leaky_relu(h, 0.2)
    c = self.ndf
    for i in range(1, self.n_layers + 1):
      c = self.ndf * min(2**i, 8)
      stride = 2 if i < self.n_layers else 1
      h = nn.Conv(
        c, (4, 4), strides=(stride, stride), padding=pad, use_bias=False, dtype=self.dtype
      )(h)
      h = nn.GroupNorm(min(32, c), dtype=self.dtype)(h)
      h = nn.leaky_relu(h, 0.2)
    return nn.Conv(1, (4, 4), padding=pad, dtype=self.dtype)(h).astype(jnp.float32)


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Discriminator hinge loss: 0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])."""
  return 0.5 * (jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits)))


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
  """Generator hinge loss: -E[D(G(z))]."""
  return -jnp.mean(fake_logits)
