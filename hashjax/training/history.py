"""What a run tells a person while it trains: progress in the log, scalars on disk.

- `History` appends every logged scalar to workdir/metrics.jsonl (one JSON object per line;
  easy to plot) and to TensorBoard event files in workdir/tensorboard/ (tensorboardX writes
  them without TensorFlow; TensorBoard's tag charset turns val/P@1 into val/P_1), and mirrors
  it in the absl log. Only process 0 writes.
- `Throughput` turns step counts into steps/s, examples/s and an ETA.
- `check_finite` stops a run whose loss or gradients went NaN/inf.
"""

import json
import math
import os
import time

from absl import logging
import jax
import tensorboardX


def check_finite(step: int, metrics: dict) -> None:
  """Fail fast (big_vision style): a NaN/inf loss or gradient never recovers."""
  bad = {k: float(v) for k, v in metrics.items() if not math.isfinite(float(v))}
  if bad:
    raise FloatingPointError(f"step {step}: non-finite training metrics {bad}; lower the "
                             "learning rate or check the input features")


class History:
  """Scalars per step, appended to workdir/metrics.jsonl and workdir/tensorboard, and logged."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.writer = None
    if jax.process_index() != 0:
      return
    if os.path.exists(self.path):
      # A resumed run rewrites what came after its checkpoint, so the file stays one history.
      kept = [line for line in _read_lines(self.path) if json.loads(line)["step"] <= resume_step]
      tmp = self.path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(kept)
      os.replace(tmp, self.path)  # a kill here leaves the old file or the new, never half
    # purge_step: TensorBoard drops the events a killed run wrote after its last checkpoint.
    self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"),
                                             purge_step=resume_step + 1 if resume_step else None)

  def log(self, step: int, scalars: dict) -> None:
    scalars = {k: float(v) for k, v in scalars.items()}
    logging.info("step %d: %s", step, ", ".join(f"{k}={_fmt(v)}" for k, v in scalars.items()))
    if self.writer is None:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **scalars}) + "\n")
    for key, value in scalars.items():
      self.writer.add_scalar(key, value, step)
    self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


def _read_lines(path: str) -> list[str]:
  """The complete lines of metrics.jsonl; a last line cut short by a kill is dropped.

  Any other line that is not a JSON object with a step is an error naming the file and line.
  """
  with open(path) as f:
    lines = f.readlines()
  if lines and not lines[-1].endswith("\n"):
    logging.warning("%s: dropping a last line cut short (the run was killed while writing it): "
                    "%r", path, lines[-1][:80])
    lines.pop()
  for number, line in enumerate(lines, start=1):
    try:
      if not isinstance(json.loads(line).get("step"), int):
        raise ValueError("no integer 'step'")
    except (ValueError, AttributeError) as e:
      raise ValueError(f"{path}:{number}: not a metrics record ({e}): {line[:80]!r}; move the "
                       "file away to resume without the old history") from e
  return lines


def _fmt(v: float) -> str:
  return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"


class Throughput:
  """steps/s, examples/s and ETA since the previous call."""

  def __init__(self, start_step: int, total_steps: int, batch_size: int):
    self.total, self.batch_size = total_steps, batch_size
    self.last_step, self.last_time = start_step, time.perf_counter()

  def update(self, step: int) -> dict:
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    return {"steps_per_s": rate, "examples_per_s": rate * self.batch_size,
            "eta_s": (self.total - step) / max(rate, 1e-9)}
