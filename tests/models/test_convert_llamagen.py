"""LlamaGen checkpoint conversion: published key layout, error messages, parameter counts,
and (with torch) numerical equality with a PyTorch reference of the published layers."""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from stegjax.models import convert_llamagen as cv
from stegjax.models import presets
from stegjax.models import transformer as tr
from stegjax.models import vq as vq_lib

# Tiny shapes with the published structure (GroupNorm(32) needs multiples of 32 channels).
VQ_TINY = dict(
  ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, z_channels=32, codebook_size=64, codebook_dim=8
)
GPT_TINY = dict(
  vocab_size=64, num_classes=10, dim=64, n_layer=2, n_head=4, multiple_of=32, grid=(4, 4)
)


# ------------------------------------------------------------------ LlamaGen key layout, written out
# from LlamaGen's module constructors (vq_model.py / gpt.py), independent of the converter.


def llamagen_vq_keys(
  ch=128,
  ch_mult=(1, 1, 2, 2, 4),
  num_res_blocks=2,
  z_channels=256,
  codebook_size=16384,
  codebook_dim=8,
):
  keys = {}

  def conv(name, cin, cout, k):
    keys[f"{name}.weight"] = (cout, cin, k, k)
    keys[f"{name}.bias"] = (cout,)

  def norm(name, c):
    keys[f"{name}.weight"] = (c,)
    keys[f"{name}.bias"] = (c,)

  def res(name, cin, cout):
    norm(f"{name}.norm1", cin)
    conv(f"{name}.conv1", cin, cout, 3)
    norm(f"{name}.norm2", cout)
    conv(f"{name}.conv2", cout, cout, 3)
    if cin != cout:
      conv(f"{name}.nin_shortcut", cin, cout, 1)

  def attn(name, c):
    norm(f"{name}.norm", c)
    for p in ("q", "k", "v", "proj_out"):
      conv(f"{name}.{p}", c, c, 1)

  n = len(ch_mult)
  conv("encoder.conv_in", 3, ch, 3)
  cin = ch
  for i in range(n):
    cout = ch * ch_mult[i]
    for j in range(num_res_blocks):
      res(f"encoder.conv_blocks.{i}.res.{j}", cin, cout)
      cin = cout
      if i == n - 1:
        attn(f"encoder.conv_blocks.{i}.attn.{j}", cin)
    if i != n - 1:
      conv(f"encoder.conv_blocks.{i}.downsample.conv", cin, cin, 3)
  res("encoder.mid.0", cin, cin)
  attn("encoder.mid.1", cin)
  res("encoder.mid.2", cin, cin)
  norm("encoder.norm_out", cin)
  conv("encoder.conv_out", cin, z_channels, 3)

  cin = ch * ch_mult[-1]
  conv("decoder.conv_in", z_channels, cin, 3)
  res("decoder.mid.0", cin, cin)
  attn("decoder.mid.1", cin)
  res("decoder.mid.2", cin, cin)
  for b, i in enumerate(reversed(range(n))):
    cout = ch * ch_mult[i]
    for j in range(num_res_blocks + 1):
      res(f"decoder.conv_blocks.{b}.res.{j}", cin, cout)
      cin = cout
      if i == n - 1:
        attn(f"decoder.conv_blocks.{b}.attn.{j}", cin)
    if i != 0:
      conv(f"decoder.conv_blocks.{b}.upsample.conv", cin, cin, 3)
  norm("decoder.norm_out", cin)
  conv("decoder.conv_out", cin, 3, 3)
  conv("quant_conv", z_channels, codebook_dim, 1)
  conv("post_quant_conv", codebook_dim, z_channels, 1)
  keys["quantize.embedding.weight"] = (codebook_size, codebook_dim)
  return keys


def llamagen_gpt_keys(
  vocab_size, num_classes, dim, n_layer, n_head, n_kv_head=None, multiple_of=256
):
  hd = dim // n_head
  kv = n_kv_head or n_head
  hidden = int(2 * 4 * dim / 3)
  hidden = hidden if hidden % multiple_of == 0 else hidden + multiple_of - hidden % multiple_of
  keys = {
    "cls_embedding.embedding_table.weight": (num_classes + 1, dim),
    "tok_embeddings.weight": (vocab_size, dim),
    "norm.weight": (dim,),
    "output.weight": (vocab_size, dim),
  }
  for i in range(n_layer):
    keys[f"layers.{i}.attention.wqkv.weight"] = ((n_head + 2 * kv) * hd, dim)
    keys[f"layers.{i}.attention.wo.weight"] = (dim, dim)
    keys[f"layers.{i}.feed_forward.w1.weight"] = (hidden, dim)
    keys[f"layers.{i}.feed_forward.w3.weight"] = (hidden, dim)
    keys[f"layers.{i}.feed_forward.w2.weight"] = (dim, hidden)
    keys[f"layers.{i}.attention_norm.weight"] = (dim,)
    keys[f"layers.{i}.ffn_norm.weight"] = (dim,)
  return keys


def _random_sd(keys, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.standard_normal(s).astype(np.float32) for k, s in keys.items()}


def _expected_shapes(model):
  return {k: s for k, (_, s) in cv.expected_keys(model).items()}


# ------------------------------------------------------------------ without torch


def test_vq16_keys_are_the_published_layout():
  got = _expected_shapes(presets.vq_model("VQ-16"))
  want = llamagen_vq_keys()
  assert set(got) - set(want) == set() and set(want) - set(got) == set()
  assert got == want
  # spot checks of the LlamaGen names
  assert got["decoder.conv_blocks.0.attn.2.proj_out.weight"] == (512, 512, 1, 1)
  assert got["encoder.conv_blocks.3.downsample.conv.weight"] == (256, 256, 3, 3)
  assert "decoder.conv_blocks.4.upsample.conv.weight" not in got


@pytest.mark.parametrize("name", ["GPT-B", "GPT-3B"])
def test_gpt_keys_are_the_published_layout(name):
  model = presets.gpt_model(name)
  p = presets.GPT_PRESETS[name]
  assert _expected_shapes(model) == llamagen_gpt_keys(
    16384, 1000, p["dim"], p["n_layer"], p["n_head"]
  )
  if name == "GPT-3B":
    assert model.hd == 100 and model.grid == (24, 24) and model.num_tokens == 576


def test_param_counts_of_published_configs():
  # Exact counts from jax.eval_shape (no allocation); LlamaGen rounds them to 111M ... 3.1B.
  exact = {
    "VQ-16": 71_883_403,
    "GPT-B": 110_888_448,
    "GPT-L": 342_910_976,
    "GPT-XL": 774_699_520,
    "GPT-XXL": 1_410_972_672,
    "GPT-3B": 3_096_659_200,
  }
  for name, n in exact.items():
    model = presets.vq_model(name) if name.startswith("VQ") else presets.gpt_model(name)
    got = presets.param_count(model)
    assert got == n, (name, got)
    published = presets.PUBLISHED_PARAMS[name]  # e.g. "111M", "1.4B": equal at the stated precision
    number, unit = published[:-1], {"M": 1e6, "B": 1e9}[published[-1]]
    decimals = len(number.split(".")[1]) if "." in number else 0
    assert round(got / unit, decimals) == float(number), (name, got, published)
  # the count is the closed form of the published layout (independent of the modules)
  for name, p in presets.GPT_PRESETS.items():
    keys = llamagen_gpt_keys(16384, 1000, p["dim"], p["n_layer"], p["n_head"])
    assert sum(int(np.prod(s)) for s in keys.values()) == exact[name]


def test_grid_follows_image_size():
  assert presets.gpt_model("GPT-B", image_size=256).grid == (16, 16)
  with pytest.raises(ValueError, match="multiple of downsample"):
    presets.gpt_config("GPT-B", image_size=390)
  with pytest.raises(ValueError, match="unknown preset 'GPT-Q'"):
    presets.gpt_model("GPT-Q")


def test_numpy_state_dict_maps_with_layouts():
  model = vq_lib.VQModel(**VQ_TINY)
  sd = _random_sd(llamagen_vq_keys(**VQ_TINY))
  params = cv.to_flax_params(sd, model)
  w = sd["encoder.conv_blocks.2.res.0.conv1.weight"]  # OIHW
  k = params["encoder"]["conv_blocks_2"]["res_0"]["conv1"]["kernel"]  # HWIO
  assert k.shape == (3, 3, 32, 64)
  assert k[0, 2, 5, 7] == w[7, 5, 0, 2] and k[2, 1, 31, 63] == w[63, 31, 2, 1]
  np.testing.assert_array_equal(
    params["decoder"]["mid_1"]["norm"]["scale"], sd["decoder.mid.1.norm.weight"]
  )
  np.testing.assert_array_equal(params["quantizer"]["embedding"], sd["quantize.embedding.weight"])
  # and back: the inverse reproduces the state dict exactly
  back = cv.to_torch_state_dict(params)
  assert set(back) == set(sd)
  for key in sd:
    np.testing.assert_array_equal(back[key], sd[key])

  gmodel = tr.Transformer(**GPT_TINY)
  gsd = _random_sd(llamagen_gpt_keys(64, 10, 64, 2, 4, multiple_of=32), seed=1)
  gp = cv.to_flax_params(gsd, gmodel)
  np.testing.assert_array_equal(gp["output"]["kernel"], gsd["output.weight"].T)
  np.testing.assert_array_equal(
    gp["layers_1"]["attention"]["wqkv"]["kernel"], gsd["layers.1.attention.wqkv.weight"].T
  )
  np.testing.assert_array_equal(gp["tok_embeddings"]["embedding"], gsd["tok_embeddings.weight"])
  np.testing.assert_array_equal(
    gp["layers_0"]["ffn_norm"]["weight"], gsd["layers.0.ffn_norm.weight"]
  )


def test_buffers_dropped_and_wrappers_unwrapped():
  gmodel = tr.Transformer(**GPT_TINY)
  sd = _random_sd(llamagen_gpt_keys(64, 10, 64, 2, 4, multiple_of=32))
  extra = {
    "freqs_cis": np.zeros((17, 8, 2), np.float32),
    "causal_mask": np.ones((17, 17), bool),
    "layers.0.attention.kv_cache.k_cache": np.zeros((2, 4, 17, 16), np.float32),
  }
  ckpt = {
    "model": {f"module.{k}": v for k, v in {**sd, **extra}.items()},
    "steps": 7,
    "args": argparse.Namespace(gpt_model="GPT-B"),
  }
  flat = cv.unwrap_state_dict(ckpt)
  assert "tok_embeddings.weight" in flat and "freqs_cis" in flat
  params = cv.to_flax_params(flat, gmodel)
  np.testing.assert_array_equal(params["norm"]["weight"], sd["norm.weight"])
  vq_sd = _random_sd(llamagen_vq_keys(**VQ_TINY))
  vq_sd["quantize.codebook_used"] = np.zeros((65536,), np.int64)
  cv.to_flax_params(vq_sd, vq_lib.VQModel(**VQ_TINY))


def test_mismatch_names_every_bad_key():
  model = tr.Transformer(**GPT_TINY)
  sd = _random_sd(llamagen_gpt_keys(64, 10, 64, 2, 4, multiple_of=32))
  del sd["layers.1.feed_forward.w3.weight"]
  sd["layers.0.attention.wo.weight"] = np.zeros((64, 48), np.float32)
  sd["layers.0.attention.bias"] = np.zeros((3,), np.float32)
  with pytest.raises(cv.CheckpointMismatchError) as e:
    cv.to_flax_params(sd, model, "GPT")
  msg = str(e.value)
  assert "1 missing, 1 unexpected, 1 mis-shaped" in msg
  assert "missing keys: layers.1.feed_forward.w3.weight" in msg
  assert "unexpected keys: layers.0.attention.bias" in msg
  assert "layers.0.attention.wo.weight: expected shape (64, 64), got (64, 48)" in msg
  # a VQ checkpoint for the wrong codebook
  vq_sd = _random_sd(llamagen_vq_keys(**VQ_TINY))
  with pytest.raises(
    cv.CheckpointMismatchError,
    match=r"quantize.embedding.weight: expected shape \(128, 8\), got \(64, 8\)",
  ):
    cv.to_flax_params(vq_sd, vq_lib.VQModel(**dict(VQ_TINY, codebook_size=128)))
  # a GPT checkpoint given as the VQ
  with pytest.raises(cv.CheckpointMismatchError, match="missing keys: decoder.conv_blocks"):
    cv.convert_vq(sd)


def test_infer_configs_from_shapes():
  def abstract(keys):
    return {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in keys.items()}

  name, cfg = cv.infer_gpt_config(
    abstract(llamagen_gpt_keys(16384, 1000, 3200, 24, 32)), image_size=384
  )
  assert (
    name == "GPT-3B"
    and cfg["n_head"] == 32
    and cfg["grid"] == (24, 24)
    and cfg["num_classes"] == 1000
  )
  gqa = abstract(llamagen_gpt_keys(64, 10, 64, 2, 4, n_kv_head=2, multiple_of=32))
  _, cfg = cv.infer_gpt_config(gqa, image_size=64, downsample=16, n_head=4)
  assert (
    cfg["n_kv_head"] == 2 and cfg["dim"] == 64 and cfg["n_layer"] == 2 and cfg["vocab_size"] == 64
  )
  assert cfg["grid"] == (4, 4)
  # the inferred config reproduces every shape of the checkpoint (SwiGLU width included)
  model = tr.Transformer(**cfg)
  assert _expected_shapes(model) == {k: v.shape for k, v in gqa.items()}
  with pytest.raises(ValueError, match="no published GPT has dim=64 and n_layer=2; pass --n_head"):
    cv.infer_gpt_config(gqa)
  vq_cfg = cv.infer_vq_config(abstract(llamagen_vq_keys(**VQ_TINY)))
  for k, v in VQ_TINY.items():
    assert vq_cfg[k] == v, k
  assert cv.infer_vq_config(abstract(llamagen_vq_keys(ch_mult=(1, 2, 2, 4))))["ch_mult"] == (
    1,
    2,
    2,
    4,
  )


def _write_safetensors(path, tensors):
  """A .safetensors file from {name: (dtype tag, array)}; the tag must match the array."""
  tags = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "I64": np.int64}
  for name, (tag, arr) in tensors.items():
    assert arr.dtype == tags[tag], (name, tag, arr.dtype)
  safetensors.numpy.save_file({name: arr for name, (_, arr) in tensors.items()}, path)


def test_safetensors_reader(tmp_path):
  a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
  b = np.asarray([1.5, -2.25, 3.0], ml_dtypes.bfloat16)
  p = str(tmp_path / "x.safetensors")
  _write_safetensors(
    p, {"a": ("F32", a), "b": ("BF16", b), "c": ("I64", np.arange(3, dtype=np.int64))}
  )
  sd = cv.read_state_dict(p)
  np.testing.assert_array_equal(sd["a"], a)
  assert sd["b"].dtype == np.float32 and sd["b"].tolist() == [1.5, -2.25, 3.0]
  assert sd["c"].dtype == np.int64
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes(b"\xff" * 7)
  with pytest.raises(ValueError, match="not a safetensors file"):
    cv.read_state_dict(str(bad))
  npz = tmp_path / "a.npz"
  npz.write_bytes(b"")
  with pytest.raises(ValueError, match="unknown checkpoint format"):
    cv.read_state_dict(str(npz))
  with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
    cv.read_state_dict(str(tmp_path / "none.pt"))


def test_cli_safetensors_to_orbax_and_back(tmp_path, capsys):
  vq_sd = _random_sd(llamagen_vq_keys(**VQ_TINY), seed=3)
  gpt_sd = _random_sd(llamagen_gpt_keys(64, 10, 64, 2, 4, multiple_of=32), seed=4)
  vq_path, gpt_path = str(tmp_path / "vq.safetensors"), str(tmp_path / "gpt.safetensors")
  _write_safetensors(vq_path, {k: ("F32", v) for k, v in vq_sd.items()})
  _write_safetensors(gpt_path, {k: ("F32", v) for k, v in gpt_sd.items()})
  out = str(tmp_path / "out")
  # the tiny GPT is no published shape, so its head count is given; 16 px / 4 (VQ_TINY) = 4 x 4
  rc = cv.main(
    [f"--vq={vq_path}", f"--gpt={gpt_path}", f"--out={out}", "--image_size=16", "--n_head=4"]
  )
  assert rc == 0, capsys.readouterr()
  vq_model, vq_params, gpt_model, gpt_params = cv.load_converted(out)
  assert vq_model.ch_mult == (1, 1, 2) and vq_model.codebook_size == 64
  assert gpt_model.grid == (4, 4) and gpt_model.n_head == 4 and gpt_model.num_classes == 10
  back = cv.to_torch_state_dict(vq_params) | cv.to_torch_state_dict(gpt_params)
  for k, v in (vq_sd | gpt_sd).items():
    np.testing.assert_array_equal(np.asarray(back[k]), v)
  meta = json.load(open(os.path.join(out, "config.json")))
  assert (
    meta["gpt"]["params"] == sum(v.size for v in gpt_sd.values())
    and meta["gpt"]["image_size"] == 16
  )
  # only the GPT, and a checkpoint with a missing key: exit code 1 and the key named on stderr
  del gpt_sd["layers.0.ffn_norm.weight"]
  _write_safetensors(gpt_path, {k: ("F32", v) for k, v in gpt_sd.items()})
  capsys.readouterr()
  rc = cv.main([f"--gpt={gpt_path}", f"--out={tmp_path / 'out2'}", "--n_head=4"])
  err = capsys.readouterr().err
  assert rc == 1 and "missing keys: layers.0.ffn_norm.weight" in err
  with pytest.raises(FileNotFoundError, match="no config.json"):
    cv.load_converted(str(tmp_path))


# ------------------------------------------------------------------ with torch: a PyTorch reference
# of LlamaGen's published layers (its module/attribute names, so state_dict() gives its keys).


def _torch_reference():
  torch = pytest.importorskip("torch")
  nn, F = torch.nn, torch.nn.functional

  def gn(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)

  class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
      super().__init__()
      self.norm1, self.conv1 = gn(cin), nn.Conv2d(cin, cout, 3, 1, 1)
      self.norm2, self.dropout, self.conv2 = (
        gn(cout),
        nn.Dropout(0.0),
        nn.Conv2d(cout, cout, 3, 1, 1),
      )
      if cin != cout:
        self.nin_shortcut = nn.Conv2d(cin, cout, 1)
      self.cin, self.cout = cin, cout

    def forward(self, x):
      h = self.conv1(F.silu(self.norm1(x)))
      h = self.conv2(self.dropout(F.silu(self.norm2(h))))
      return (self.nin_shortcut(x) if self.cin != self.cout else x) + h

  class AttnBlock(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.norm = gn(c)
      self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
      h = self.norm(x)
      q, k, v = self.q(h), self.k(h), self.v(h)
      b, c, hh, ww = q.shape
      w = torch.bmm(q.reshape(b, c, hh * ww).permute(0, 2, 1), k.reshape(b, c, hh * ww)) * c**-0.5
      w = F.softmax(w, dim=2)
      h = torch.bmm(v.reshape(b, c, hh * ww), w.permute(0, 2, 1)).reshape(b, c, hh, ww)
      return x + self.proj_out(h)

  class Downsample(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
      return self.conv(F.pad(x, (0, 1, 0, 1)))

  class Upsample(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
      return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

  class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, nres, z):
      super().__init__()
      n = len(ch_mult)
      self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
      self.conv_blocks = nn.ModuleList()
      cin = ch
      for i in range(n):
        blk = nn.Module()
        blk.res, blk.attn = nn.ModuleList(), nn.ModuleList()
        for _ in range(nres):
          blk.res.append(ResnetBlock(cin, ch * ch_mult[i]))
          cin = ch * ch_mult[i]
          if i == n - 1:
            blk.attn.append(AttnBlock(cin))
        if i != n - 1:
          blk.downsample = Downsample(cin)
        self.conv_blocks.append(blk)
      self.mid = nn.ModuleList([ResnetBlock(cin, cin), AttnBlock(cin), ResnetBlock(cin, cin)])
      self.norm_out, self.conv_out = gn(cin), nn.Conv2d(cin, z, 3, 1, 1)
      self.n = n

    def forward(self, x):
      h = self.conv_in(x)
      for i, blk in enumerate(self.conv_blocks):
        for j, r in enumerate(blk.res):
          h = r(h)
          if len(blk.attn):
            h = blk.attn[j](h)
        if i != self.n - 1:
          h = blk.downsample(h)
      for m in self.mid:
        h = m(h)
      return self.conv_out(F.silu(self.norm_out(h)))

  class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, nres, z):
      super().__init__()
      n = len(ch_mult)
      cin = ch * ch_mult[-1]
      self.conv_in = nn.Conv2d(z, cin, 3, 1, 1)
      self.mid = nn.ModuleList([ResnetBlock(cin, cin), AttnBlock(cin), ResnetBlock(cin, cin)])
      self.conv_blocks = nn.ModuleList()
      for i in reversed(range(n)):
        blk = nn.Module()
        blk.res, blk.attn = nn.ModuleList(), nn.ModuleList()
        for _ in range(nres + 1):
          blk.res.append(ResnetBlock(cin, ch * ch_mult[i]))
          cin = ch * ch_mult[i]
          if i == n - 1:
            blk.attn.append(AttnBlock(cin))
        if i != 0:
          blk.upsample = Upsample(cin)
        self.conv_blocks.append(blk)
      self.norm_out, self.conv_out = gn(cin), nn.Conv2d(cin, 3, 3, 1, 1)
      self.n = n

    def forward(self, h):
      h = self.conv_in(h)
      for m in self.mid:
        h = m(h)
      for i, blk in enumerate(self.conv_blocks):
        for j, r in enumerate(blk.res):
          h = r(h)
          if len(blk.attn):
            h = blk.attn[j](h)
        if i != self.n - 1:
          h = blk.upsample(h)
      return self.conv_out(F.silu(self.norm_out(h)))

  class VectorQuantizer(nn.Module):
    def __init__(self, n, d):
      super().__init__()
      self.embedding = nn.Embedding(n, d)
      self.register_buffer("codebook_used", torch.zeros(65536))

  class VQModel(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, codebook_size, codebook_dim):
      super().__init__()
      self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels)
      self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels)
      self.quantize = VectorQuantizer(codebook_size, codebook_dim)
      self.quant_conv = nn.Conv2d(z_channels, codebook_dim, 1)
      self.post_quant_conv = nn.Conv2d(codebook_dim, z_channels, 1)

    def encode_indices(self, x):  # l2-normalized nearest entry, as LlamaGen's VectorQuantizer
      z = F.normalize(self.quant_conv(self.encoder(x)).permute(0, 2, 3, 1), dim=-1)
      e = F.normalize(self.quantize.embedding.weight, dim=-1)
      d = (z**2).sum(-1, keepdim=True) + (e**2).sum(-1) - 2 * torch.einsum("bhwd,nd->bhwn", z, e)
      return z, torch.argmin(d, dim=-1)

    def decode_code(self, idx):
      e = F.normalize(self.quantize.embedding.weight, dim=-1)
      return self.decoder(self.post_quant_conv(e[idx].permute(0, 3, 1, 2)))

  # ---- GPT
  def find_multiple(n, k):
    return n if n % k == 0 else n + k - n % k

  def freqs_2d(grid, n_elem, base=10000):
    half = n_elem // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    f = torch.outer(torch.arange(grid), freqs)
    g = torch.cat([f[:, None, :].expand(-1, grid, -1), f[None, :, :].expand(grid, -1, -1)], dim=-1)
    cache = torch.stack([torch.cos(g), torch.sin(g)], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(1, half, 2), cache])  # class token row: cos = sin = 0

  def rope(x, fc):
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    fc = fc.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack(
      [
        xs[..., 0] * fc[..., 0] - xs[..., 1] * fc[..., 1],
        xs[..., 1] * fc[..., 0] + xs[..., 0] * fc[..., 1],
      ],
      dim=-1,
    )
    return out.flatten(3).type_as(x)

  class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
      super().__init__()
      self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
      xf = x.float()
      return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(
        x
      ) * self.weight

  class FeedForward(nn.Module):
    def __init__(self, dim, multiple_of):
      super().__init__()
      hidden = find_multiple(int(2 * 4 * dim / 3), multiple_of)
      self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
      self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
      return self.w2(F.silu(self.w1(x)) * self.w3(x))

  class Attention(nn.Module):
    def __init__(self, dim, n_head, n_kv_head):
      super().__init__()
      self.dim, self.n_head, self.n_kv_head, self.hd = dim, n_head, n_kv_head, dim // n_head
      self.wqkv = nn.Linear(dim, (n_head + 2 * n_kv_head) * self.hd, bias=False)
      self.wo = nn.Linear(dim, dim, bias=False)
      self.cache = None

    def forward(self, x, fc, mask, input_pos=None):
      b, t, _ = x.shape
      kv = self.n_kv_head * self.hd
      q, k, v = self.wqkv(x).split([self.dim, kv, kv], dim=-1)
      q = rope(q.view(b, t, self.n_head, self.hd), fc).transpose(1, 2)
      k = rope(k.view(b, t, self.n_kv_head, self.hd), fc).transpose(1, 2)
      v = v.view(b, t, self.n_kv_head, self.hd).transpose(1, 2)
      if self.cache is not None:  # LlamaGen KVCache.update: index_copy_ at input_pos
        self.cache[0].index_copy_(2, input_pos, k)
        self.cache[1].index_copy_(2, input_pos, v)
        k, v = self.cache
      g = self.n_head // self.n_kv_head
      k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
      o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
      return self.wo(o.transpose(1, 2).contiguous().view(b, t, self.dim))

  class TransformerBlock(nn.Module):
    def __init__(self, dim, n_head, n_kv_head, multiple_of):
      super().__init__()
      self.attention = Attention(dim, n_head, n_kv_head)
      self.feed_forward = FeedForward(dim, multiple_of)
      self.attention_norm, self.ffn_norm = RMSNorm(dim), RMSNorm(dim)

    def forward(self, x, fc, mask, input_pos=None):
      h = x + self.attention(self.attention_norm(x), fc, mask, input_pos)
      return h + self.feed_forward(self.ffn_norm(h))

  class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, dim):
      super().__init__()
      self.embedding_table = nn.Embedding(num_classes + 1, dim)

  class GPT(nn.Module):
    def __init__(
      self,
      vocab_size,
      num_classes,
      dim,
      n_layer,
      n_head,
      n_kv_head=None,
      multiple_of=256,
      grid=(16, 16),
    ):
      super().__init__()
      self.cls_embedding = LabelEmbedder(num_classes, dim)
      self.tok_embeddings = nn.Embedding(vocab_size, dim)
      self.layers = nn.ModuleList(
        [TransformerBlock(dim, n_head, n_kv_head or n_head, multiple_of) for _ in range(n_layer)]
      )
      self.norm = RMSNorm(dim)
      self.output = nn.Linear(dim, vocab_size, bias=False)
      self.freqs_cis = freqs_2d(grid[0], dim // n_head)  # a plain attribute, as in LlamaGen
      self.num_classes, self.seq = num_classes, 1 + grid[0] * grid[1]

    def forward(self, idx, cond):  # teacher forcing: logits[:, i] predicts token i
      x = torch.cat(
        [self.cls_embedding.embedding_table(cond)[:, None], self.tok_embeddings(idx[:, :-1])], 1
      )
      t = x.shape[1]
      mask = torch.tril(torch.ones(t, t, dtype=torch.bool))[None, None]
      for layer in self.layers:
        x = layer(x, self.freqs_cis[:t], mask)
      return self.output(self.norm(x)).float()

    @torch.no_grad()
    def cached_logits(self, tokens, cond, cfg_scale, top_k):
      """LlamaGen generate(): CFG rows [cond; null], KV cache, one position per step."""
      b, t = tokens.shape
      rows = torch.cat([cond, torch.full_like(cond, self.num_classes)])
      for layer in self.layers:
        a = layer.attention
        shape = (2 * b, a.n_kv_head, self.seq, a.hd)
        a.cache = (torch.zeros(shape), torch.zeros(shape))
      causal = torch.tril(torch.ones(self.seq, self.seq, dtype=torch.bool))
      out = []
      for pos in range(t):
        if pos == 0:
          x = self.cls_embedding.embedding_table(rows)[:, None]
        else:
          prev = tokens[:, pos - 1]
          x = self.tok_embeddings(torch.cat([prev, prev]))[:, None]
        ip = torch.tensor([pos])
        for layer in self.layers:
          x = layer(x, self.freqs_cis[ip], causal[None, None, ip], ip)
        logits = self.output(self.norm(x)).float()[:, -1]
        c, u = torch.split(logits, b, dim=0)
        logits = u + (c - u) * cfg_scale
        kth = torch.topk(logits, top_k)[0][..., -1, None]
        out.append(logits.masked_fill(logits < kth, -float("inf")))
      for layer in self.layers:
        layer.attention.cache = None
      return torch.stack(out, 1)

  def randomize(module, seed):
    """Random weights everywhere (norm gains and biases too, so a mix-up would show)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
      for name, p in module.named_parameters():
        if name.endswith("weight") and p.ndim == 1:  # GroupNorm / RMSNorm gains
          p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        elif name.endswith("bias"):
          p.copy_(0.2 * torch.randn(p.shape, generator=g))
        else:
          fan_in = p[0].numel() if p.ndim > 1 and "embedding" not in name else 1
          p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return module.eval()

  return torch, VQModel, GPT, randomize


@pytest.fixture(scope="module")
def torch_ref():
  return _torch_reference()


def _state_dict_numpy(module):
  return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def test_vq_matches_pytorch_reference(torch_ref):
  torch, VQModel, _, randomize = torch_ref
  ref = randomize(VQModel(**VQ_TINY), seed=0)
  sd = _state_dict_numpy(ref)
  assert _expected_shapes(vq_lib.VQModel(**VQ_TINY)) == llamagen_vq_keys(**VQ_TINY)
  assert set(sd) == set(llamagen_vq_keys(**VQ_TINY)) | {"quantize.codebook_used"}
  model, params = cv.convert_vq(sd)
  assert model.ch_mult == VQ_TINY["ch_mult"] and model.codebook_size == 64
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  idx = rng.integers(0, 64, (2, 4, 4))
  with torch.no_grad():
    z_ref, idx_ref = ref.encode_indices(torch.from_numpy(x).permute(0, 3, 1, 2))
    img_ref = ref.decode_code(torch.from_numpy(idx)).permute(0, 2, 3, 1).numpy()
  variables = {"params": params}
  img = np.asarray(model.apply(variables, jnp.asarray(idx, jnp.int32), method="decode_indices"))
  assert np.abs(img_ref).max() > 0.1  # a real signal, not a vanishing one
  np.testing.assert_allclose(img, img_ref, atol=1e-4, rtol=1e-4)
  z = model.apply(variables, jnp.asarray(x), method="encode")
  got_idx, _ = model.apply(variables, z, method="quantize")
  z_n = np.asarray(z) / np.linalg.norm(np.asarray(z), axis=-1, keepdims=True)
  np.testing.assert_allclose(z_n, z_ref.numpy(), atol=1e-4)
  np.testing.assert_array_equal(np.asarray(got_idx), idx_ref.numpy())


@pytest.mark.parametrize("n_kv_head", [None, 2])
def test_gpt_matches_pytorch_reference(torch_ref, n_kv_head):
  torch, _, GPT, randomize = torch_ref
  ref = randomize(GPT(**GPT_TINY, n_kv_head=n_kv_head), seed=1)
  sd = _state_dict_numpy(ref)
  model, params, _ = cv.convert_gpt(sd, image_size=64, downsample=16, n_head=4)
  assert model.kv_heads == (n_kv_head or 4) and model.grid == (4, 4)
  rng = np.random.default_rng(1)
  tokens = rng.integers(0, 64, (3, 16))
  labels = np.asarray([0, 3, 9])
  with torch.no_grad():
    want = ref(torch.from_numpy(tokens), torch.from_numpy(labels)).numpy()
  variables = {"params": jax.tree.map(jnp.asarray, params)}
  got = np.asarray(
    model.apply(variables, jnp.asarray(tokens, jnp.int32), jnp.asarray(labels, jnp.int32))
  )
  assert np.std(want) > 0.3
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  # KV-cached generation with CFG and top-k, as transformer.generate runs it
  want = ref.cached_logits(torch.from_numpy(tokens), torch.from_numpy(labels), 2.5, 12).numpy()
  got = np.asarray(
    tr.logits_for_tokens(
      model,
      variables,
      jnp.asarray(labels, jnp.int32),
      jnp.asarray(tokens, jnp.int32),
      cfg_scale=2.5,
      top_k=12,
    )
  )
  np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
  assert np.isfinite(got).sum(-1).min() == 12
  fin = np.isfinite(want)
  np.testing.assert_allclose(got[fin], want[fin], atol=1e-4, rtol=1e-4)


def test_reads_torch_files(torch_ref, tmp_path):
  torch, _, GPT, randomize = torch_ref
  from safetensors.torch import save_file

  ref = randomize(GPT(**GPT_TINY), seed=2)
  sd = ref.state_dict()
  # a LlamaGen training checkpoint: DDP-prefixed keys under "model", with its args Namespace
  pt = str(tmp_path / "c2i.pt")
  torch.save(
    {
      "model": {f"module.{k}": v for k, v in sd.items()},
      "steps": 10,
      "args": argparse.Namespace(gpt_model="GPT-B", image_size=256),
    },
    pt,
  )
  got = cv.read_state_dict(pt)
  assert set(got) == set(sd)
  np.testing.assert_array_equal(got["output.weight"], sd["output.weight"].numpy())
  # bf16 safetensors written by the safetensors package: floats come back as float32
  st = str(tmp_path / "c2i.safetensors")
  save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, st)
  got = cv.read_state_dict(st)
  assert got["norm.weight"].dtype == np.float32
  np.testing.assert_array_equal(
    got["norm.weight"], sd["norm.weight"].to(torch.bfloat16).float().numpy()
  )
  # a pickled object outside torch's safe list is refused unless the file is trusted
  import fractions

  bad = str(tmp_path / "bad.pt")
  torch.save({"model": dict(sd), "extra": fractions.Fraction(1, 3)}, bad)
  with pytest.raises(ValueError, match="--trust_pickle"):
    cv.read_state_dict(bad)
  assert set(cv.read_state_dict(bad, trust_pickle=True)) == set(sd)


def test_load_checkpoints_from_dirs_and_files(tmp_path):
  vq_sd = _random_sd(llamagen_vq_keys(**VQ_TINY), seed=5)
  gpt_sd = _random_sd(llamagen_gpt_keys(64, 10, 64, 2, 4, multiple_of=32), seed=6)
  vq_path = str(tmp_path / "vq.safetensors")
  _write_safetensors(vq_path, {k: ("F32", v) for k, v in vq_sd.items()})
  vq_model, vq_params = cv.convert_vq(vq_sd)
  gpt_model, gpt_params, _ = cv.convert_gpt(gpt_sd, image_size=16, downsample=4, n_head=4)
  out = cv.save_converted(str(tmp_path / "conv"), gpt=(gpt_model, gpt_params))
  vm, vp, gm, gp = cv.load_checkpoints(vq=vq_path, gpt=out, dtype=jnp.bfloat16)
  assert vm.dtype == jnp.bfloat16 and gm.dtype == jnp.bfloat16 and gm.grid == (4, 4)
  chex_equal = jax.tree.map(
    lambda a, b: np.array_equal(np.asarray(a), b), (vp, gp), (vq_params, gpt_params)
  )
  assert all(jax.tree.leaves(chex_equal))
  assert cv.load_checkpoints(gpt=out)[:2] == (None, None)
  with pytest.raises(ValueError, match="converted for a 4x4 token grid, not image_size=384"):
    cv.load_checkpoints(gpt=out, image_size=384)
  with pytest.raises(ValueError, match="holds no converted VQ"):
    cv.load_checkpoints(vq=out)


@pytest.mark.slow
def test_published_shapes_through_cli_match_pytorch(torch_ref, tmp_path):
  """GPT-B (24x24 grid) and VQ-16 at their published shapes: .pt -> CLI -> orbax -> load."""
  torch, VQModel, GPT, randomize = torch_ref
  gref = randomize(GPT(16384, 1000, 768, 12, 12, grid=(24, 24)), seed=7)
  vref = randomize(
    VQModel(
      **{
        k: v
        for k, v in presets.vq_config("VQ-16").items()
        if k in ("ch", "ch_mult", "num_res_blocks", "z_channels", "codebook_size", "codebook_dim")
      }
    ),
    seed=8,
  )
  gpt_pt, vq_pt = str(tmp_path / "c2i_B_384.pt"), str(tmp_path / "vq_ds16_c2i.pt")
  torch.save({"model": gref.state_dict(), "args": argparse.Namespace(gpt_model="GPT-B")}, gpt_pt)
  torch.save({"model": vref.state_dict()}, vq_pt)
  out = str(tmp_path / "conv")
  assert cv.main([f"--vq={vq_pt}", f"--gpt={gpt_pt}", f"--out={out}"]) == 0
  vq_model, vq_params, gpt_model, gpt_params = cv.load_converted(out)
  assert (
    gpt_model.n_head == 12 and gpt_model.num_tokens == 576 and vq_model.ch_mult == (1, 1, 2, 2, 4)
  )
  assert presets.param_count(gpt_model) == 110_888_448
  rng = np.random.default_rng(2)
  tokens, labels = rng.integers(0, 16384, (2, 40)), np.asarray([1, 999])
  with torch.no_grad():
    want = gref(torch.from_numpy(tokens), torch.from_numpy(labels)).numpy()
  got = np.asarray(
    jax.jit(gpt_model.apply)(
      {"params": gpt_params}, jnp.asarray(tokens, jnp.int32), jnp.asarray(labels, jnp.int32)
    )
  )
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  idx = rng.integers(0, 16384, (1, 2, 2))
  with torch.no_grad():
    img_ref = vref.decode_code(torch.from_numpy(idx)).permute(0, 2, 3, 1).numpy()
  img = np.asarray(
    jax.jit(lambda p, i: vq_model.apply(p, i, method="decode_indices"))(
      {"params": vq_params}, jnp.asarray(idx, jnp.int32)
    )
  )
  np.testing.assert_allclose(img, img_ref, atol=1e-4, rtol=1e-4)
