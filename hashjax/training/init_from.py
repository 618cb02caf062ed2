"""Two-stage training: start parts of a model from another run's selected variables.

    config.init_from = dict(workdir="runs/stage1", parts=("image",))

loads, for each named part, the parameters (and any state, e.g. batch statistics) that the run
in `workdir` selected on validation, into a freshly initialised model. The other parts keep
their initialisation. The source may be another model (a Veit et al. tensor model starting
from an MCLL image head), as long as the part has the same structure and shapes; anything else
is an error that says which part, which array and which shapes.
"""

import json
import os

import jax
import numpy as np

from hashjax.training import checkpoints


def load_parts(init_from, variables: dict) -> dict:
  """`variables` with init_from.parts replaced by those of the run in init_from.workdir."""
  workdir, parts = init_from.workdir, tuple(init_from.parts)
  if not parts:
    raise ValueError(f"init_from {workdir}: name the parts to load (parts=('image', ...))")
  try:
    source = checkpoints.load_selected(workdir)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"init_from: {e}") from e
  what = f"init_from {workdir} (model {_model_name(workdir)})"
  out = {collection: dict(tree) for collection, tree in variables.items()}
  for part in parts:
    if part not in variables["params"]:
      raise ValueError(f"{what}: this model has no part {part!r}; it has "
                       f"{sorted(variables['params'])}")
    for collection, tree in variables.items():
      if part not in tree:
        continue
      theirs = source.get(collection, {})
      if part not in theirs:
        raise ValueError(f"{what}: the run has no {collection} for part {part!r}; it has "
                         f"{sorted(theirs)}")
      out[collection][part] = _matched(what, f"{collection}/{part}", tree[part], theirs[part])
  return out


def _matched(what: str, path: str, ours, theirs):
  """theirs, checked to have our tree structure, shapes and dtypes, as arrays."""
  ours_flat = dict(_flatten(ours, path))
  theirs_flat = dict(_flatten(theirs, path))
  if ours_flat.keys() != theirs_flat.keys():
    missing, extra = sorted(ours_flat.keys() - theirs_flat.keys()), sorted(
        theirs_flat.keys() - ours_flat.keys())
    raise ValueError(f"{what}: {path} has other arrays than this model's (missing {missing}, "
                     f"unexpected {extra})")
  for name, mine in ours_flat.items():
    other = theirs_flat[name]
    if tuple(mine.shape) != tuple(other.shape) or np.dtype(mine.dtype) != np.dtype(other.dtype):
      raise ValueError(f"{what}: {name} is {other.dtype}{list(other.shape)} in the run, this "
                       f"model expects {mine.dtype}{list(mine.shape)}")
  return jax.tree.map(lambda _, t: np.asarray(t), ours, theirs)


def _flatten(tree, prefix: str):
  if isinstance(tree, dict):
    for key, value in tree.items():
      yield from _flatten(value, f"{prefix}/{key}")
  else:
    yield prefix, tree


def source_label(workdir: str) -> str:
  """The row name the run in `workdir` reported (its metrics.json), else its model's name."""
  path = os.path.join(workdir, "metrics.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)["model"]
  return _model_name(workdir)


def _model_name(workdir: str) -> str:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return "unknown"
  with open(path) as f:
    return json.load(f).get("model", {}).get("name", "unknown")
