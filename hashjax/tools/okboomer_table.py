r"""#okboomer's Table 1 from a finished run: loss and BLEU on train and validation, the highest,
lowest and mean over the run's evaluation intervals.

  python -m hashjax.tools.okboomer_table --workdir=runs/okboomer [--markdown]

The paper summarises per-epoch values; here an "epoch" is one evaluation interval (steps
(s_{i-1}, s_i] between two evaluations, config.eval_every). Per interval i:

  train loss   the mean of the logged training losses of its steps (teacher forcing on)
  train BLEU   the mean of the logged `bleu1`: BLEU-1 of what the decoder wrote in those
               training steps (its argmax under teacher forcing, up to its first END)
  val loss     `val/loss` at s_i: the teacher-forced token cross-entropy, inference mode
  val BLEU     `val/BLEU-1` at s_i: sentence BLEU-1 of the generated (greedy or beam)
               sequences, averaged over the validation posts

and the table gives max_i, min_i and mean_i of each column. Training values are logged every
config.log_every steps, so an interval's train mean is over those logs.
"""

from __future__ import annotations

import json
import os

from absl import app, flags
import numpy as np

COLUMNS = ("Loss (train)", "Loss (val)", "BLEU-1 (train)", "BLEU-1 (val)")


def intervals(records: list[dict]) -> list[dict]:
  """One row per evaluation: its step and the four values (module docstring)."""
  train = [(r["step"], r["loss"], r["bleu1"]) for r in records if "bleu1" in r]
  evals = [r for r in records if "val/loss" in r]
  if not evals:
    raise ValueError("the run logged no evaluation with val/loss (a generator run of "
                     "experiments/okboomer.py)")
  rows, previous = [], 0
  for e in evals:
    inside = [(loss, b) for step, loss, b in train if previous < step <= e["step"]]
    if inside:
      losses, bleus = zip(*inside)
      rows.append({"step": e["step"], COLUMNS[0]: float(np.mean(losses)),
                   COLUMNS[1]: e["val/loss"], COLUMNS[2]: float(np.mean(bleus)),
                   COLUMNS[3]: e["val/BLEU-1"]})
    previous = e["step"]
  return rows


def summary(rows: list[dict]) -> dict[str, dict[str, float]]:
  """{Highest / Lowest / Mean: {column: value}} over the intervals."""
  values = {c: np.array([r[c] for r in rows]) for c in COLUMNS}
  return {label: {c: float(f(v)) for c, v in values.items()}
          for label, f in (("Highest", np.max), ("Lowest", np.min), ("Mean", np.mean))}


def markdown(table: dict, num_intervals: int, workdir: str) -> str:
  lines = [f"Run `{workdir}`, over {num_intervals} evaluation intervals.", "",
           "| | " + " | ".join(COLUMNS) + " |", "| --- |" + " ---: |" * len(COLUMNS)]
  for label, row in table.items():
    lines.append(f"| {label} | " + " | ".join(f"{row[c]:.2f}" for c in COLUMNS) + " |")
  return "\n".join(lines) + "\n"


def read_records(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  rows = intervals(read_records(workdir))
  table = summary(rows)
  if flags.FLAGS.markdown:
    print(markdown(table, len(rows), workdir), end="")
  else:
    print(json.dumps({"intervals": rows, "summary": table}, indent=2))


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "A finished experiments/okboomer.py run.", required=True)
  flags.DEFINE_bool("markdown", False, "Print the table as markdown (default: JSON).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
