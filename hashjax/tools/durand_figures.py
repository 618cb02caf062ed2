r"""Durand et al.'s Figure 3 and the user towers' accuracy by history length, from finished runs.

  python -m hashjax.tools.durand_figures --out=DIR [--fig3=RUN --fig3=RUN ...] \
      [--history=RUN --history=RUN ...] [--history_buckets=log2] [--window=20]

Each flag is repeated once per run, in order. A RUN is a finished run's workdir or a sweep's
variant directory (ROOT/<variant>, holding seed<i>/ runs; --fig3 counts them as seeds).

- Fig. 3 (--fig3: the GRU model at several user sizes d_u = model.kwargs.user_dim): test R@10
  against d_u (mean ± std over seeds, ddof 0) and the time to compute a user representation:
  the GRU over every window of --window consecutive posts of the test users (the windows of
  hashjax.tools.user_retrieval, Table 5's), jitted in batches of 64 after one compiling pass,
  the fastest of 3 passes, on the first seed's run; in milliseconds per 1,000 windows. The
  paper draws that time as the width of each point's circle; here it is the second panel.
- History (--history, runs tested on one dataset, the first the baseline): test A@1 by the
  number of earlier posts of the post's user in the data, n(r) = r - (first row of r's user)
  (rows are a user's posts in time order): on a user-disjoint split, the test user's own earlier
  posts; on a temporal split, the training posts too. Buckets of n (hashjax.eval.breakdowns:
  "log2" or "quantile:N"); the difference last run - first run in points.

PNGs and DIR/figures.md go to --out.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

from absl import app, flags
import jax
import numpy as np

from hashjax.eval import plots
from hashjax.tools import figure_sections as sections
from hashjax.tools import runs as runs_lib
from hashjax.tools import user_retrieval

HEADING = "## Figures: Durand et al."
PASSES = 3


# ----------------------------------------------------------------------------------------------
# Fig. 3: R@10 and the user representation's time against d_u.


def representation_ms(workdir: str, window: int = 20) -> tuple[float, int]:
  """(milliseconds per 1,000 user representations, the number of windows): the run's GRU over
  every `window`-post window of its test users, the fastest of PASSES passes after a compile."""
  run = runs_lib.load_run(workdir)
  windows, _ = user_retrieval.history_windows(run.dataset, window)

  def compute():
    return user_retrieval.model_representations(run.model, run.variables, run.dataset, windows)

  jax.block_until_ready(compute())  # compiles
  seconds = []
  for _ in range(PASSES):
    start = time.perf_counter()
    jax.block_until_ready(compute())
    seconds.append(time.perf_counter() - start)
  return 1e6 * min(seconds) / len(windows), len(windows)


def user_dim_summary(groups: Sequence[str], window: int = 20) -> list[dict]:
  """figure_sections.seed_summary of each group (a run or a sweep variant directory: one GRU
  model at one d_u), its "E" named "d_u", sorted by d_u, each with "ms" (representation_ms of
  its first seed) and "windows"."""
  summary = sections.seed_summary(groups)
  for s in summary:
    s["d_u"] = s.pop("E")
    if s["d_u"] is None:
      raise ValueError(f"Figure 3: {s['workdirs'][0]} has no model.kwargs.user_dim")
  labels = {s["label"] for s in summary}
  if len(labels) > 1:
    raise ValueError(f"Figure 3 compares one model at several d_u, got {sorted(labels)}")
  dims = [s["d_u"] for s in summary]
  if len(set(dims)) < len(dims):
    raise ValueError(f"Figure 3: two groups have the same d_u ({sorted(dims)})")
  for s in summary:  # timed once the groups are known to be right
    s["ms"], s["windows"] = representation_ms(s["workdirs"][0], window)
  return sorted(summary, key=lambda s: s["d_u"])


def user_dim_section(summary: list[dict], out: str, window: int = 20) -> str:
  label = summary[0]["label"]
  dims = [s["d_u"] for s in summary]
  several = any(len(s["R@10"]) > 1 for s in summary)
  errors = {label: [float(np.std(s["R@10"])) for s in summary]} if several else {}
  path = plots.line_panels(
      os.path.join(out, "recall_by_user_dim.png"),
      [{"title": "test R@10", "lines": {label: (dims, [float(np.mean(s["R@10"]))
                                                      for s in summary])}, "errors": errors},
       {"title": f"ms per 1,000 user representations ({window} posts each)",
        "lines": {label: (dims, [s["ms"] for s in summary])}}],
      ncols=2, xlabel="user representation size d_u (log scale)", panel_size=(5.0, 3.8),
      markers=True, xscale="log", title="R@10 and the user representation's cost against d_u")
  rows = [[s["d_u"], len(s["R@10"]), sections.mean_std(s["R@10"]), sections.mean_std(s["A@1"]),
           f"{s['ms']:.1f}"] for s in summary]
  return "\n\n".join([
      "### R@10 and time against the user representation size (Figure 3)",
      f"`{path}`. {label}: test R@10 and A@1 in percent (mean ± std over seeds where there are "
      f"several); the GRU's time over {summary[0]['windows']} windows of {window} posts of the "
      "test users, in ms per 1,000 windows (the fastest of "
      f"{PASSES} passes, first seed).",
      sections.md_table(["d_u", "seeds", "R@10", "A@1", "ms / 1,000 users"], rows)])


# ----------------------------------------------------------------------------------------------
# A@1 by the number of earlier posts of the user.


def earlier_posts(dataset, rows) -> np.ndarray:
  """n(r) = r - first row of r's user: the user's posts before r (rows are in time order)."""
  rows = np.asarray(rows)
  return (rows - dataset.first_row_of[rows]).astype(np.int64)


def history_section(ctxs: Sequence[sections.Context], out: str, scheme: str) -> str:
  result = sections.bucket_accuracy(ctxs, earlier_posts, scheme, figure="History length")
  labels = result["labels"]
  path = sections.bucket_accuracy_plot(
      result, os.path.join(out, "accuracy_by_history.png"),
      count_name="earlier posts of the post's user",
      title="Test accuracy@1 by the number of the user's earlier posts")
  return "\n\n".join([
      "### Accuracy by the number of the user's earlier posts",
      f"`{path}`. Test A@1 in percent of the posts whose user posted that many times before "
      f"them ({scheme} buckets), and the difference {labels[-1]} - {labels[0]} in points.",
      sections.bucket_accuracy_table(result, "user's earlier posts")])


# ----------------------------------------------------------------------------------------------
# The command.


def durand_figures(out: str, *, fig3: Sequence[str] = (), history: Sequence[str] = (),
                   history_buckets: str = "log2", window: int = 20) -> str:
  """The requested figures into `out` (PNGs and figures.md); returns the markdown."""
  if not (fig3 or history):
    raise ValueError("no figure asked for: give fig3 or history runs")
  if len(history) == 1:
    raise ValueError("the history breakdown compares runs: give at least two")
  os.makedirs(out, exist_ok=True)  # the sections draw into it
  parts = [HEADING]
  if fig3:
    parts.append(user_dim_section(user_dim_summary(fig3, window), out, window))
  if history:
    ctxs = [sections.Context(sections.seed_runs(w)[0]) for w in history]
    parts.append(history_section(ctxs, out, history_buckets))
  return sections.write_figures(out, parts)


def main(argv):
  del argv
  f = flags.FLAGS
  if not (f.fig3 or f.history):
    raise app.UsageError("give --fig3 or --history runs")
  print(durand_figures(f.out, fig3=f.fig3, history=f.history,
                       history_buckets=f.history_buckets, window=f.window))


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("out", None, "Where the PNGs and figures.md go.", required=True)
  flags.DEFINE_multi_string("fig3", [], "A run or sweep variant directory of the GRU model at "
                            "one d_u (R@10 and time against d_u); repeat per d_u.")
  flags.DEFINE_multi_string("history", [], "A run (or variant directory: its first seed) whose "
                            "test A@1 is broken down by the user's earlier posts; repeat, the "
                            "baseline first.")
  flags.DEFINE_string("history_buckets", "log2", "The history breakdown's buckets: log2 or "
                      "quantile:N.")
  flags.DEFINE_integer("window", 20, "Figure 3: posts per user representation timed.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
