"""orbax checkpoints of a run: train state, grain iterator, schedule, selected variables, config.

The grain iterator's state is saved with the model's, so a resumed run sees exactly the examples
it would have seen. `selected` holds the variables of the best validation evaluation (the ones
tested); `restore_selected` without a target reads them as saved, which is what `init_from`
needs to load parts of another run. `run` holds the config and the dataset fingerprint
(run_config.run_record), so a resume can refuse a changed config.

Integrity: once orbax has finished a checkpoint, the sha256 and size of every file in it are
written to <step>/hashjax_manifest.json. `restore_latest` verifies the newest checkpoint against
its manifest and falls back to the newest intact one, saying which and why; a damaged one is
moved to WORKDIR/damaged_checkpoints/ (kept for inspection, out of orbax's way). A checkpoint
without a manifest (killed between orbax's commit and the manifest, or written before
manifests existed) is used only when no verified one exists, with a warning.

Process count: grain writes one iterator state per process, data/process_<i>-of-<n>.json. The
pipeline's state is the index of the next global batch (each process cuts its block from the
same global batch), identical in every file, so a job may resume with another number of
processes: a process without its own file reads the common state. Files that disagree are an
error, never a guess.
"""

import glob
import hashlib
import json
import os
import shutil

from absl import logging
import grain
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

MANIFEST = "hashjax_manifest.json"
DAMAGED_DIR = "damaged_checkpoints"


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one that does not fit this model; the message names the dir."""


class Checkpoints:
  """orbax CheckpointManager over (train state, grain iterator, schedule, selected, run)."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.workdir = os.path.abspath(workdir)
    self.manager = ocp.CheckpointManager(
        os.path.join(self.workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def step_dir(self, step: int) -> str:
    return os.path.join(str(self.manager.directory), str(step))

  def save(self, step: int, state, iterator, schedule: dict, selected, run: dict) -> None:
    """Saves, waits for orbax to commit, then writes the manifest (process 0)."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
        schedule=ocp.args.JsonSave(schedule), selected=ocp.args.StandardSave(selected),
        run=ocp.args.JsonSave(run)))
    self.manager.wait_until_finished()
    if jax.process_index() == 0:
      _write_manifest(self.step_dir(step))

  def restore_latest(self, state, iterator, selected):
    """(step, state, schedule, selected, run) of the newest intact checkpoint, or None if none.

    The iterator is restored in place. Raises CheckpointError if checkpoints exist but none is
    intact.
    """
    step, damaged = self.choose()
    if step is None and not damaged:
      return None
    if damaged:
      _sync("hashjax: checkpoints verified")  # every process decides before any file moves
      for bad, problem in damaged.items():
        logging.warning("%s: checkpoint %d is damaged (%s); falling back to an older one, and "
                        "moving it to %s", self.manager.directory, bad, problem,
                        os.path.join(self.workdir, DAMAGED_DIR))
        self._set_aside(bad)
      _sync("hashjax: damaged checkpoints moved")
      self.manager.reload()
    if step is None:
      raise CheckpointError(f"{self.manager.directory}: no intact checkpoint ("
                            + "; ".join(f"{s}: {p}" for s, p in damaged.items())
                            + "). The damaged ones were moved to "
                            f"{os.path.join(self.workdir, DAMAGED_DIR)}; use a new workdir.")
    out = self._restore(
        step, state=ocp.args.StandardRestore(_abstract(state)), schedule=ocp.args.JsonRestore(),
        selected=ocp.args.StandardRestore(_abstract(selected)), run=ocp.args.JsonRestore())
    iterator.set_state(self.iterator_state(step))
    iterator.start_prefetch()  # as grain's own CheckpointRestore does
    return step, out.state, dict(out.schedule), out.selected, dict(out.run)

  def iterator_state(self, step: int) -> dict:
    """This process's saved grain iterator state, also when another process count wrote it."""
    data_dir = os.path.join(self.step_dir(step), "data")
    index, count = jax.process_index(), jax.process_count()
    own = os.path.join(data_dir, f"process_{index}-of-{count}.json")
    if os.path.exists(own):
      return _read_json(own)
    paths = sorted(glob.glob(os.path.join(data_dir, "process_*-of-*.json")))
    if not paths:
      raise CheckpointError(f"{data_dir}: no data iterator state (process_*-of-*.json)")
    states = {os.path.basename(p): _read_json(p) for p in paths}
    if any(s != states[os.path.basename(paths[0])] for s in states.values()):
      raise CheckpointError(
          f"{data_dir}: written by {len(paths)} processes whose data positions differ "
          f"({states}); this job has {count}. Resume it with the process count that wrote it.")
    if index == 0:
      logging.info("%s: written by %d processes, resumed by %d; their common data position is "
                   "%s", data_dir, len(paths), count, states[os.path.basename(paths[0])])
    return states[os.path.basename(paths[0])]

  def choose(self) -> tuple[int | None, dict[int, str]]:
    """(the step to resume from or None, {newer damaged step: what is wrong}).

    The newest checkpoint that matches its manifest; if none has a manifest, the newest one
    (orbax commits a checkpoint atomically, so it is complete), with a warning.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    damaged = {}
    for step in steps:  # newest first: older checkpoints need no hashing once one verifies
      problem = verify(self.step_dir(step))
      if problem is None:
        return step, damaged
      damaged[step] = problem
    unverified = [s for s in steps if damaged[s] == "no manifest"]
    if unverified:
      logging.warning("%s: checkpoint %d has no manifest (killed before writing it, or "
                      "written by an older hashjax); using it unverified",
                      self.manager.directory, unverified[0])
      return unverified[0], {s: p for s, p in damaged.items() if s > unverified[0]}
    return None, damaged

  def restore_selected(self, step: int, target=None):
    """The variables selected on validation (the tested ones), shaped like `target` if given."""
    restore = (ocp.args.StandardRestore() if target is None else
               ocp.args.StandardRestore(_abstract(target)))
    return self._restore(step, selected=restore).selected

  def _restore(self, step: int, **items):
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items))
    except (KeyError, ValueError) as e:
      raise CheckpointError(
          f"{self.step_dir(step)}: its contents do not fit what this run restores "
          f"({type(e).__name__}: {e}); it was written by another model or config, or by a "
          "hashjax from before checkpoints held the run's config. Use a new workdir.") from e

  def _set_aside(self, step: int) -> None:
    if jax.process_index() == 0:
      target = os.path.join(self.workdir, DAMAGED_DIR, str(step))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.rmtree(target, ignore_errors=True)
      shutil.move(self.step_dir(step), target)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _files(step_dir: str) -> list[str]:
  return sorted(os.path.relpath(os.path.join(root, name), step_dir)
                for root, _, names in os.walk(step_dir) for name in names if name != MANIFEST)


def _digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _write_manifest(step_dir: str) -> None:
  files = {rel: [os.path.getsize(os.path.join(step_dir, rel)), _digest(os.path.join(step_dir, rel))]
           for rel in _files(step_dir)}
  tmp = os.path.join(step_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump({"files": files}, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, os.path.join(step_dir, MANIFEST))


def verify(step_dir: str) -> str | None:
  """None if every file of the checkpoint matches its manifest, else what is wrong."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(path):
    return "no manifest"
  try:
    with open(path) as f:
      files = json.load(f)["files"]
  except (ValueError, KeyError) as e:
    return f"unreadable manifest ({e})"
  for rel, (size, digest) in files.items():
    full = os.path.join(step_dir, rel)
    if not os.path.exists(full):
      return f"{rel} is missing"
    if os.path.getsize(full) != size:
      return f"{rel} has {os.path.getsize(full)} bytes, {size} were written"
    if _digest(full) != digest:
      return f"{rel} does not match its checksum"
  return None


def load_selected(workdir: str, target=None):
  """The selected variables of the newest intact checkpoint in `workdir` (those the run tested).

  target: a pytree to restore into (shapes and dtypes); None restores the arrays as saved.
  """
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"{workdir}: no checkpoints there (not a training run?)")
  checkpoints = Checkpoints(workdir)
  try:
    step, damaged = checkpoints.choose()
    if step is None:
      raise (CheckpointError(f"{workdir}/checkpoints: no intact checkpoint ({damaged})")
             if damaged else FileNotFoundError(f"{workdir}: the run has saved no checkpoint yet"))
    return checkpoints.restore_selected(step, target)
  finally:
    checkpoints.close()
