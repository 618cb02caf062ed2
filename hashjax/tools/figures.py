r"""Denton et al.'s figures and tables beyond Tables 3-4 (Sections 4.2-4.3), from finished runs.

  python -m hashjax.tools.figures --workdir=RUN [--balanced=BALANCED_RUN] [--out=DIR]
  python -m hashjax.tools.figures --compare=BILINEAR_RUN,USER_BIASED_RUN,THREE_WAY_RUN --out=DIR

--workdir: one run's figures (PNGs in RUN/figures/ or --out): recall at 10 of single hashtags;
Table 5-style examples (with --balanced, the natural run's and the balanced run's top 10 side by
side, and where their top-10 slots come from); on synthetic data, for a model that reads user
metadata, the Table 6 probing scored against what the world planted; for a model with user
vectors (the 3-way one), the Figure 7 t-SNE. Each figure's numbers go as markdown tables into
RUN/report.md under "## Figures" (a rerun replaces that section) and, with --out, DIR/figures.md.

--compare: runs of one dataset and distribution, base model first and the model it is
compared with last (Figure 6's "largest gain" is last minus first): Figure 5 (precision-recall
of chosen hashtags) and Figure 6 (recall at 10 of three hashtag sets) in DIR, tables in
DIR/figures.md.
"""

from __future__ import annotations

import os

from absl import app, flags
import numpy as np

from hashjax.eval import analysis, plots
from hashjax.tools import figure_sections as sections


def run_figures(workdir: str, *, balanced: str | None = None, out: str | None = None,
                neighbours: int = 500) -> str:
  """Every per-run figure of the run in `workdir`; returns the markdown section it wrote."""
  ctx = sections.Context(workdir)
  bal = sections.Context(balanced) if balanced else None
  if bal and bal.dataset.directory != ctx.dataset.directory:
    raise ValueError(f"{balanced} read {bal.dataset.directory}, {workdir} read "
                     f"{ctx.dataset.directory}: the examples need the same test posts")
  target = out or os.path.join(workdir, "figures")
  parts = [sections.SECTION, sections.recall_section(ctx, ctx.top_k(), target), sections.examples_section(ctx, bal, target)]
  if ctx.world is not None and "user_meta" in ctx.run.model.inputs:
    parts.append(sections.probing_section(ctx, target, neighbours))
  if ctx.world is not None and hasattr(ctx.run.model, "user_vectors"):
    parts.append(sections.tsne_section(ctx, target))
  text = "\n\n".join(parts) + "\n"
  sections.write_section(os.path.join(workdir, "report.md"), text)
  if out:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "figures.md"), "w") as f:
      f.write(text)
  return text


# ----------------------------------------------------------------------------------------------
# Several runs of one distribution (Figures 5 and 6).


def compare_runs(workdirs, out: str, *, min_positives: int = 10) -> str:
  """Figures 5 and 6 across runs (base model first, compared model last) into `out`."""
  ctxs = [sections.Context(w) for w in workdirs]
  first = ctxs[0]
  for c in ctxs[1:]:
    if (c.dataset.directory, c.run.config.data.dist) != (first.dataset.directory,
                                                         first.run.config.data.dist):
      raise ValueError(f"{c.run.workdir} and {first.run.workdir} were tested on different data")
  labels = [c.label for c in ctxs]
  if len(set(labels)) < len(labels):
    labels = [f"{c.label} ({os.path.basename(os.path.normpath(c.run.workdir))})" for c in ctxs]
  dist = first.run.config.data.dist
  recalls, num_true = {}, None
  for label, c in zip(labels, ctxs):
    top = c.top_k()
    recalls[label], num_true = analysis.per_tag_recall(top["pred_ids"], top["true_ids"],
                                                       top["true_mask"], c.dataset.num_tags)
  sets = analysis.recall_subsets(recalls, num_true, first.dataset.tag_counts, base=labels[0],
                                 other=labels[-1], min_positives=min_positives)
  fig6 = plots.recall_figure(
      os.path.join(out, "recall_at_10.png"),
      {name: [first.tag(t) for t in ids] for name, ids in sets.items()},
      {name: {m: recalls[m][ids] for m in labels} for name, ids in sets.items()},
      title=f"R@10 of single hashtags, {dist} distribution (test)")
  summary = [[name, *[sections.pct(recalls[m][ids].mean()) for m in labels], sections.kind_summary(first, ids)]
             for name, ids in sets.items()]
  per_tag = []
  for name, ids in sets.items():
    per_tag += [[name, first.tag(t), int(num_true[t]), *[sections.pct(recalls[m][t]) for m in labels]]
                for t in ids]

  if first.world is not None:
    chosen = analysis.choose_pr_tags(first.kinds, num_true)
  else:
    chosen = np.argsort(-num_true, kind="stable")[:12]  # no kinds known: the 12 commonest
  curves = {}
  for label, c in zip(labels, ctxs):
    scores, tag_labels, rows = sections.tag_scores(c, chosen)
    curves[label] = analysis.pr_curves(scores, tag_labels)
  if first.world is not None:  # the ceiling: the generator's own p(y | post)
    oracle = sections.oracle_tag_scores(first, rows, chosen)
    curves[sections.ORACLE] = analysis.pr_curves(oracle, tag_labels)
  fig5 = plots.pr_figure(os.path.join(out, "pr_curves.png"), curves,
                         [f"{first.tag(t)} ({int(num_true[t])} pos.)" for t in chosen],
                         title=f"Precision-recall of chosen hashtags, {dist} distribution (test)",
                         reference=sections.ORACLE)
  aps = [[first.tag(t), int(num_true[t]), *[f"{curves[m][j]['ap']:.3f}" for m in curves]]
         for j, t in enumerate(chosen)]
  text = "\n\n".join([
      f"## Figures: {', '.join(labels)}, {dist} distribution",
      f"Runs: {', '.join(f'`{w}`' for w in workdirs)}. "
      + (sections.KIND_LEGEND if first.world is not None else ""),
      f"### Precision-recall of chosen hashtags (Figure 5)\n\n`{fig5}`. For each tag kind, "
      "its two tags with the most test positives (at least 20); the oracle ranks by the "
      "world's p(y | post), the ceiling. Average precision over the test posts:",
      sections.md_table(["hashtag", "test positives", *[f"AP {m}" for m in curves]], aps),
      f"### Recall at 10 of single hashtags (Figure 6)\n\n`{fig6}`. Mean R@10 over each set "
      f"of 20 (\"best\" and \"largest gain\" among tags with at least {min_positives} test "
      "positives; most frequent = by training count):",
      sections.md_table(["hashtags", *labels, "kinds"], summary),
      sections.md_table(["set", "hashtag", "test positives", *[f"R@10 {m}" for m in labels]], per_tag)])
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "figures.md"), "w") as f:
    f.write(text + "\n")
  return text


def main(argv):
  del argv
  f = flags.FLAGS
  if f.compare and f.workdir:
    raise app.UsageError("give --workdir or --compare, one per command")
  if f.compare:
    if not f.out:
      raise app.UsageError("--compare needs --out")
    print(compare_runs(f.compare, f.out))
  if f.workdir:
    print(run_figures(f.workdir, balanced=f.balanced, out=f.out, neighbours=f.neighbours))
  if not (f.compare or f.workdir):
    raise app.UsageError("give --workdir=RUN or --compare=RUN1,RUN2,...")


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("workdir", None, "A finished run: its per-run figures.")
  flags.DEFINE_string("balanced", None, "With --workdir: the balanced-distribution run shown "
                      "beside it in the examples (Table 5).")
  flags.DEFINE_list("compare", [], "Finished runs of one dataset and distribution, base model "
                    "first: Figures 5 and 6.")
  flags.DEFINE_string("out", None, "Where PNGs and figures.md go (default for --workdir: "
                      "RUN/figures).")
  flags.DEFINE_integer("neighbours", 500, "Test images nearest each probe image (Table 6).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
