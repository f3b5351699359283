"""Deep steganalyzers: SRNet, XuNet and an LWENet-style lightweight detector.

All three take images ``(B, H, W, C)`` in the uint8 range [0, 255] (uint8 or
float), centre them to [-1, 1] and return one logit per image (> 0: stego).
They use BatchNorm, so ``__call__(x, train)`` needs ``mutable=['batch_stats']``
when ``train=True``. Sizes come from the config (``make_steganalyzer``).

* ``SRNet``  (Boroumand, Chen, Fridrich 2018): no fixed preprocessing; layer
  types 1 (conv-BN-ReLU), 2 (residual), 3 (residual with 3x3/2 average-pool
  downsampling and a strided 1x1 shortcut) and 4 (global average pooling).
* ``XuNet``  (Xu, Wu, Shi 2016): a fixed KV high-pass filter, then conv + ABS
  + BN + tanh, conv + BN + tanh, three 1x1 conv + BN + ReLU groups, average
  pooling between groups, global pooling and a linear head.
* ``LWENet`` (after Weng et al. 2022): SRM-initialized (trainable) 5x5
  preprocessing filters, bottleneck residual blocks, and multi-view global
  pooling (average, L1 and L2 norms concatenated); under 400K parameters at
  the default size.
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# The KV ("square 5x5") high-pass kernel used by Qian et al. and Xu et al.
KV = (
  np.array(
    [
      [-1, 2, -2, 2, -1],
      [2, -6, 8, -6, 2],
      [-2, 8, -12, 8, -2],
      [2, -6, 8, -6, 2],
      [-1, 2, -2, 2, -1],
    ],
    np.float32,
  )
  / 12.0
)


def srm_filters() -> np.ndarray:
  """The 30 SRM high-pass residual kernels (Fridrich & Kodovsky 2012), (30, 5, 5).

  1st order (8 directions), 2nd order (4), 3rd order (8), SQUARE 3x3, EDGE 3x3
  (4 rotations), SQUARE 5x5 (= KV), EDGE 5x5 (4 rotations); each scaled to
  max |coefficient| = 1 so all residuals start on a comparable scale.
  """

  def embed3(k3):
    k = np.zeros((5, 5), np.float32)
    k[1:4, 1:4] = k3
    return k

  dirs8 = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
  out = []
  for dy, dx in dirs8:  # 1st order: x[n + d] - x[n]
    k = np.zeros((5, 5), np.float32)
    k[2, 2] = -1
    k[2 + dy, 2 + dx] = 1
    out.append(k)
  for dy, dx in dirs8[:4]:  # 2nd order: x[n - d] - 2 x[n] + x[n + d]
    k = np.zeros((5, 5), np.float32)
    k[2, 2] = -2
    k[2 + dy, 2 + dx] = 1
    k[2 - dy, 2 - dx] = 1
    out.append(k)
  for dy, dx in dirs8:  # 3rd order: -x[n - d] + 3 x[n] - 3 x[n + d] + x[n + 2d]
    k = np.zeros((5, 5), np.float32)
    k[2 - dy, 2 - dx] = -1
    k[2, 2] = 3
    k[2 + dy, 2 + dx] = -3
    k[2 + 2 * dy, 2 + 2 * dx] = 1
    out.append(k)
  kb = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], np.float32)
  out.append(embed3(kb))  # SQUARE 3x3
  edge3 = np.array([[-1, 2, -1], [2, -4, 2], [0, 0, 0]], np.float32)
  for r in range(4):
    out.append(embed3(np.rot90(edge3, r)))
  kv = KV * 12.0
  out.append(kv.copy())  # SQUARE 5x5
  edge5 = kv.copy()
  edge5[3:] = 0
  for r in range(4):
    out.append(np.rot90(edge5, r).copy())
  f = np.stack(out).astype(np.float32)
  return f / np.abs(f).max(axis=(1, 2), keepdims=True)


def _prepare(x: jax.Array, dtype) -> jax.Array:
  if x.ndim != 4:
    raise ValueError(
      f"steganalyzer input must be (batch, height, width, channels), got shape {x.shape}"
    )
  chex.assert_rank(x, 4)
  return (x.astype(jnp.float32) - 127.5) / 127.5  # uint8 range -> [-1, 1]


def _bn(train: bool, dtype, name=None):
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
  )


def _conv(features, kernel, strides=1, dtype=jnp.float32, name=None, use_bias=False, **kw):
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(strides, strides),
    padding="SAME",
    use_bias=use_bias,
    dtype=dtype,
    name=name,
    **kw,
  )


def _head(h: jax.Array, dtype) -> jax.Array:
  logit = nn.Dense(1, dtype=dtype, name="head")(h)
  return logit[:, 0].astype(jnp.float32)


class _SRNetType1(nn.Module):
  features: int
  dtype: Any = jnp.float32
  kernel_init: Any = None  # None: the default (LeCun normal)

  @nn.compact
  def __call__(self, x, train: bool):
    kw = {} if self.kernel_init is None else {"kernel_init": self.kernel_init}
    x = _conv(self.features, 3, dtype=self.dtype, **kw)(x)
    return nn.relu(_bn(train, self.dtype)(x))


class _SRNetType2(nn.Module):
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = _SRNetType1(self.features, self.dtype)(x, train)
    y = _bn(train, self.dtype)(_conv(self.features, 3, dtype=self.dtype)(y))
    return x + y


class _SRNetType3(nn.Module):
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = _SRNetType1(self.features, self.dtype)(x, train)
    y = _bn(train, self.dtype)(_conv(self.features, 3, dtype=self.dtype)(y))
    y = nn.avg_pool(y, (3, 3), strides=(2, 2), padding="SAME")
    s = _bn(train, self.dtype)(_conv(self.features, 1, strides=2, dtype=self.dtype)(x))
    return y + s


def high_pass_3x3() -> np.ndarray:
  """The 17 SRM kernels with 3x3 support (1st and 2nd order, SQUARE and EDGE 3x3), (17, 3, 3)."""
  f = srm_filters()
  return np.concatenate([f[:12], f[20:25]])[:, 1:4, 1:4]


def _high_pass_init(noise: float = 0.1):
  """Initializer for a (3, 3, C, F) kernel: the 3x3 high-pass kernels cycled over the F
  outputs (each summed over the C inputs), plus ``noise`` x LeCun-normal to break ties."""
  hp = high_pass_3x3()

  def init(key, shape, dtype=jnp.float32):
    kh, kw, c, f = shape
    if (kh, kw) != (3, 3):
      raise ValueError(f"high-pass init needs a 3x3 kernel, got {shape}")
    k = np.tile(hp[np.arange(f) % len(hp)].transpose(1, 2, 0)[:, :, None, :], (1, 1, c, 1)) / c
    return jnp.asarray(k, dtype) + noise * nn.initializers.lecun_normal()(key, shape, dtype)

  return init


class SRNet(nn.Module):
  """SRNet; the paper's size is type1=(64, 16), num_type2=5, type3=(16, 64, 128, 256), type4=512.

  ``hp_init``: initialize the first convolution with the 3x3 SRM high-pass kernels
  (still trained; the architecture and parameter count are unchanged). Off in the
  paper's SRNet, which learns its front end from scratch over ~10^5 steps; short CPU
  runs need the head start.
  """

  type1: Sequence[int] = (64, 16)
  num_type2: int = 5
  type3: Sequence[int] = (16, 64, 128, 256)
  type4: int = 512
  hp_init: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _prepare(x, self.dtype).astype(self.dtype)
    for i, f in enumerate(self.type1):
      init = _high_pass_init() if (self.hp_init and i == 0) else None
      x = _SRNetType1(f, self.dtype, init)(x, train)
    for _ in range(self.num_type2):
      x = _SRNetType2(x.shape[-1], self.dtype)(x, train)
    for f in self.type3:
      x = _SRNetType3(f, self.dtype)(x, train)
    # Type 4: conv-BN-ReLU, conv-BN, then global average pooling.
    x = _SRNetType1(self.type4, self.dtype)(x, train)
    x = _bn(train, self.dtype)(_conv(self.type4, 3, dtype=self.dtype)(x))
    return _head(jnp.mean(x, axis=(1, 2)), self.dtype)


def _fixed_depthwise(x: jax.Array, kernels: np.ndarray) -> jax.Array:
  """Applies each of K fixed 5x5 kernels to each input channel: C -> C*K channels."""
  c = x.shape[-1]
  k = kernels.shape[0]
  w = jnp.asarray(
    np.tile(kernels.transpose(1, 2, 0)[:, :, None, :], (1, 1, 1, c)).reshape(5, 5, 1, c * k),
    x.dtype,
  )
  return jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
  )


class XuNet(nn.Module):
  """XuNet: KV high-pass (fixed), ABS + tanh in the first groups, 1x1 convs after."""

  features: Sequence[int] = (8, 16, 32, 64, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if len(self.features) < 3:
      raise ValueError(f"XuNet needs at least 3 conv groups, got features={self.features}")
    x = _prepare(x, self.dtype).astype(self.dtype)
    x = _fixed_depthwise(x, KV[None])  # not a parameter: the filter stays fixed
    f = self.features
    # Group 1: conv 5x5, ABS, BN, tanh (ABS makes the model sign-symmetric).
    x = jnp.abs(_conv(f[0], 5, dtype=self.dtype)(x))
    x = jnp.tanh(_bn(train, self.dtype)(x))
    x = nn.avg_pool(x, (5, 5), strides=(2, 2), padding="SAME")
    # Group 2: conv 5x5, BN, tanh.
    x = jnp.tanh(_bn(train, self.dtype)(_conv(f[1], 5, dtype=self.dtype)(x)))
    x = nn.avg_pool(x, (5, 5), strides=(2, 2), padding="SAME")
    # Groups 3..: conv 1x1, BN, ReLU; pooling between, global pooling at the end.
    for i, width in enumerate(f[2:]):
      x = nn.relu(_bn(train, self.dtype)(_conv(width, 1, dtype=self.dtype)(x)))
      if i < len(f) - 3:
        x = nn.avg_pool(x, (5, 5), strides=(2, 2), padding="SAME")
    return _head(jnp.mean(x, axis=(1, 2)), self.dtype)


class _Bottleneck(nn.Module):
  features: int
  reduction: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    mid = max(1, self.features // self.reduction)
    y = nn.relu(_bn(train, self.dtype)(_conv(mid, 1, dtype=self.dtype)(x)))
    y = nn.relu(_bn(train, self.dtype)(_conv(mid, 3, dtype=self.dtype)(y)))
    y = _bn(train, self.dtype)(_conv(self.features, 1, dtype=self.dtype)(y))
    if x.shape[-1] != self.features:
      x = _bn(train, self.dtype)(_conv(self.features, 1, dtype=self.dtype)(x))
    return nn.relu(x + y)


def _srm_init(num_channels: int):
  """Initializer for the (5, 5, C, 30) preprocessing kernel: SRM filters, per channel / C."""
  f = srm_filters().transpose(1, 2, 0)  # (5, 5, 30)

  def init(key, shape, dtype=jnp.float32):
    del key
    if shape != (5, 5, num_channels, 30):
      raise ValueError(f"unexpected SRM kernel shape {shape}")
    return jnp.asarray(np.tile(f[:, :, None, :], (1, 1, num_channels, 1)) / num_channels, dtype)

  return init


class LWENet(nn.Module):
  """LWENet-style: trainable SRM preprocessing, bottleneck residual stages, multi-view pooling."""

  stem: int = 32
  stages: Sequence[int] = (32, 64, 128, 256)
  blocks_per_stage: int = 2
  reduction: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _prepare(x, self.dtype).astype(self.dtype)
    c = x.shape[-1]
    # SRM-initialized 5x5 filters, trained with the rest (30 residual maps).
    x = nn.Conv(
      30,
      (5, 5),
      padding="SAME",
      use_bias=False,
      dtype=self.dtype,
      kernel_init=_srm_init(c),
      name="srm",
    )(x)
    x = nn.relu(_bn(train, self.dtype)(x))
    x = nn.relu(_bn(train, self.dtype)(_conv(self.stem, 3, dtype=self.dtype)(x)))
    for i, width in enumerate(self.stages):
      for _ in range(self.blocks_per_stage):
        x = _Bottleneck(width, self.reduction, self.dtype)(x, train)
      if i < len(self.stages) - 1:
        x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    # Multi-view global pooling: mean, L1 and L2 norms of each feature map.
    xf = x.astype(jnp.float32)
    gap = jnp.mean(xf, axis=(1, 2))
    l1 = jnp.mean(jnp.abs(xf), axis=(1, 2))
    l2 = jnp.sqrt(jnp.mean(xf * xf, axis=(1, 2)) + 1e-8)
    return _head(jnp.concatenate([gap, l1, l2], axis=-1).astype(self.dtype), self.dtype)


NAMES = ("srnet", "xunet", "lwenet")


def make_steganalyzer(name: str, cfg=None, dtype=jnp.float32) -> nn.Module:
  """Builds a detector by name with sizes from ``cfg`` (a dict/ConfigDict of its fields)."""
  kwargs = dict(cfg or {})
  kwargs["dtype"] = dtype
  if name == "srnet":
    return SRNet(**kwargs)
  if name == "xunet":
    return XuNet(**kwargs)
  if name == "lwenet":
    return LWENet(**kwargs)
  raise ValueError(f"unknown steganalyzer {name!r}; valid: {NAMES}")


def init_steganalyzer(model: nn.Module, rng, image_shape: Sequence[int]):
  """(params, {'batch_stats': ...}) for images of shape (H, W, C)."""
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (H, W, C), got {tuple(image_shape)}")
  # Jitted: op-by-op init of a deep conv net is many times slower on CPU.
  init = jax.jit(lambda r, x: model.init(r, x, train=False))
  variables = init(rng, jnp.zeros((1, *image_shape), jnp.uint8))
  return variables["params"], {"batch_stats": variables["batch_stats"]}
