"""Where the train state lives: the batch split over "data", the hashtag axis over "model".

The trainer's mesh is ("data", "model") = the devices reshaped to [N / V, V], with
V = config.vocab_shards (1: plain data parallelism, every parameter replicated):

  batch fields          P("data")        each "data" row of V devices reads one slice of the
                                         global batch
  a train-state array   P(..., "model", ...) on its hashtag axis (the first axis of length Y,
  with a hashtag axis                    the vocabulary size): a [Y, d] tag table, an output
                                         layer's [d, Y] kernel or [Y] bias, a [Y, d_u]
                                         bag-of-hashtags user layer, and the optimizer's
                                         moments of each
  everything else       P()              replicated

`jax.jit` partitions the step from these shardings (GSPMD): the [B, Y] logits of a full
softmax are split along Y and the log-sum-exp becomes a reduction over "model"; the rows a
sampled softmax draws are gathered from their shards. The math is the one of a single device
(floating-point sums may round differently), so vocab_shards may change when a run resumes:
orbax restores each array into the shardings of the new mesh.

The V devices of a "model" group must belong to one process (V divides the local device
count): each process then feeds whole "data" rows, which is what
`jax.make_array_from_process_local_data` assumes.
"""

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hashjax.eval import sharded_topk


def make_mesh(num_devices: int = 0, vocab_shards: int = 1) -> Mesh:
  """The ("data", "model") mesh over all devices (or the first num_devices, for tests)."""
  devices = jax.devices()[:num_devices] if num_devices else jax.devices()
  if vocab_shards < 1 or len(devices) % vocab_shards:
    raise ValueError(f"config.vocab_shards={vocab_shards} must divide the {len(devices)} "
                     "devices")
  if jax.process_count() > 1 and jax.local_device_count() % vocab_shards:
    raise ValueError(f"config.vocab_shards={vocab_shards} must divide the "
                     f"{jax.local_device_count()} devices of each process: a vocabulary "
                     "shard group may not span processes")
  mesh = sharded_topk.make_vocab_mesh(len(devices) // vocab_shards, vocab_shards, devices)
  for row in mesh.devices:  # jax.devices() lists each process's devices together on CPU,
    if len({d.process_index for d in row}) > 1:  # but that is not promised everywhere
      raise ValueError(f"a vocabulary shard group spans processes: {list(row)}")
  return mesh


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def hashtag_spec(shape: tuple[int, ...], num_tags: int, num_shards: int) -> P:
  """P("model") on the first axis of length num_tags (none: replicated, P()). The rule is by
  shape: an axis that only happens to have the vocabulary's length (d == Y) is split too,
  which costs communication, never correctness (jit partitions any layout exactly)."""
  if num_shards == 1 or num_tags not in shape:
    return P()
  axis = shape.index(num_tags)
  if num_tags % num_shards:
    raise ValueError(f"config.vocab_shards={num_shards} must divide the vocabulary of "
                     f"{num_tags} hashtags (an array of shape {shape} is split along it)")
  return P(*(None,) * axis, "model")


def state_shardings(tree, mesh: Mesh, num_tags: int):
  """A NamedSharding for every array of `tree` (the train state, or its variables)."""
  num_shards = mesh.shape["model"]
  return jax.tree.map(
      lambda x: NamedSharding(mesh, hashtag_spec(np.shape(x), num_tags, num_shards)), tree)


def gather_replicated(tree, mesh: Mesh):
  """The same arrays replicated on every device of the mesh (an all-gather over "model"; a
  collective: in a multi-process job every process calls it at the same point)."""
  if mesh.shape["model"] == 1:
    return tree
  return _replicate(mesh)(tree)


@functools.lru_cache(maxsize=8)
def _replicate(mesh: Mesh):
  return jax.jit(lambda tree: tree, out_shardings=replicated(mesh))  # compiled once per mesh
