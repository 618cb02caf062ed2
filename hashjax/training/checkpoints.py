"""orbax checkpoints of a run: train state, grain iterator, schedule and selected variables.

The grain iterator's state is saved with the model's, so a resumed run sees exactly the examples
it would have seen. `selected` holds the variables of the best validation evaluation (the ones
tested); `restore_selected` without a target reads them as saved, which is what `init_from`
needs to load parts of another run.
"""

import os

import grain
import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """orbax CheckpointManager over (train state, grain iterator, schedule, selected variables)."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, iterator, schedule: dict, selected) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
        schedule=ocp.args.JsonSave(schedule), selected=ocp.args.StandardSave(selected)))

  def restore(self, step: int, state, iterator, selected):
    """(state, schedule, selected variables) saved at `step`; the iterator is restored in place."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    out = self._restore(step, state=ocp.args.StandardRestore(target),
                        data=grain.checkpoint.CheckpointRestore(iterator),
                        schedule=ocp.args.JsonRestore(),
                        selected=ocp.args.StandardRestore(
                            jax.tree.map(ocp.utils.to_shape_dtype_struct, selected)))
    return out.state, dict(out.schedule), out.selected

  def restore_selected(self, step: int, target=None):
    """The variables selected on validation (the tested ones), shaped like `target` if given."""
    restore = (ocp.args.StandardRestore() if target is None else
               ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, target)))
    return self._restore(step, selected=restore).selected

  def _restore(self, step: int, **items):
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items))
    except (KeyError, ValueError) as e:
      raise ValueError(f"{self.manager.directory}: checkpoint {step} does not hold what this "
                       f"trainer saves ({type(e).__name__}: {e}); it was written by another "
                       "model or version of hashjax. Use a new workdir.") from e

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_selected(workdir: str, target=None):
  """The selected variables of the newest checkpoint in `workdir` (those the run tested).

  target: a pytree to restore into (shapes and dtypes); None restores the arrays as saved.
  """
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"{workdir}: no checkpoints there (not a training run?)")
  checkpoints = Checkpoints(workdir)
  try:
    step = checkpoints.latest_step()
    if step is None:
      raise FileNotFoundError(f"{workdir}: the run has saved no checkpoint yet")
    return checkpoints.restore_selected(step, target)
  finally:
    checkpoints.close()
