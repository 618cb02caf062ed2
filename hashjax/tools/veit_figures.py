r"""Veit et al.'s figures (Figs. 4, 5, 7, 9 and 10) from finished runs: PNGs and markdown tables.

  python -m hashjax.tools.veit_figures --out=DIR [--fig4=RUN --fig4=RUN ...] \
      [--fig5=AGNOSTIC_RUN --fig5=SPECIFIC_RUN] [--fig7=RUN ...] [--fig9=RUN ...] \
      [--user_buckets=log2] [--tag_buckets=log2] [--min_positives=10]

Each flag is repeated once per run, in order (not comma-separated: the sweep's run directories
have commas in their names). A RUN is a finished run's workdir. For --fig4 and --fig7 it may
also be a sweep's variant directory (ROOT/<variant>, holding seed<i>/ runs): its runs count as
seeds, shown as mean ± std (std over seeds, ddof 0, as in the sweep's tables).

- Fig. 4 (--fig4): test A@1 of each run, bars; read from the runs' metrics.json.
- Fig. 5 (--fig5, a user-agnostic run then a user-specific one, the same dataset): test A@1 by
  the number of training posts of the post's user (the batch field user_train_posts; 0 is a
  user no model saw in training), in buckets of --user_buckets, with the test posts and users
  per bucket.
- Fig. 7 (--fig7): test A@10 against the user-embedding size E (the run config's
  model.kwargs.user_dim), one line per model label.
- Fig. 9 (--fig9, two-tower runs of one dataset): hashtag-to-image retrieval. The queries are
  the hashtags labelling at least --min_positives test posts; each ranks every test post by its
  score for the hashtag (the post's query vector against the hashtag's row of the tag table,
  ties to the earlier post), and P@10 is the share of the 10 first posts that carry it. The
  figure is the mean over the queries per model.
- Fig. 10 (with --fig9): that P@10 by the query's training-frequency rank (tag id + 1, since ids
  are training-frequency ranks), in buckets of --tag_buckets.

Buckets (hashjax.eval.breakdowns): "log2" ([0, 1) for zeros, then [1, 2), [2, 4), ...) or
"quantile:N" (up to N buckets of about equal size). Every figure uses the run's hashtag
distribution (the balanced one thins the test truth as the run's own evaluation did). PNGs and
DIR/figures.md go to --out.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags
import numpy as np

from hashjax.data import tag_distribution
from hashjax.eval import breakdowns, evaluate, metrics, plots, topk
from hashjax.tools import figure_sections as sections

HEADING = "## Figures: Veit et al."


# ----------------------------------------------------------------------------------------------
# Runs.


# ----------------------------------------------------------------------------------------------
# Figs. 4 and 7: test metrics of runs (mean ± std over seeds).


def accuracy_section(summary: list[dict], out: str) -> str:
  """Fig. 4: test A@1 bars of each entry of figure_sections.seed_summary."""
  labels = sections.unique_labels([s["label"] for s in summary],
                                  [s["workdirs"][0] for s in summary])
  means = [float(np.mean(s["A@1"])) for s in summary]
  stds = [float(np.std(s["A@1"])) if len(s["A@1"]) > 1 else np.nan for s in summary]  # no bar
  path = plots.bar_panels(
      os.path.join(out, "accuracy_at_1.png"),
      [{"title": "", "labels": labels, "series": {"test A@1": means},
        "errors": {"test A@1": stds} if any(len(s["A@1"]) > 1 for s in summary) else {}}],
      ylabel="A@1", ylim=(0, max(1e-3, np.nanmax(np.add(means, np.nan_to_num(stds)))) * 1.15),
      title="Test accuracy@1 of each model", panel_size=(max(5.0, 1.2 + 0.9 * len(labels)), 4.0))
  rows = [[label, len(s["A@1"]), sections.mean_std(s["A@1"]), sections.mean_std(s["A@10"])]
          for label, s in zip(labels, summary)]
  return "\n\n".join([
      "### Tagging accuracy of each model (Figure 4)",
      f"`{path}`. Test A@1 (and A@10) in percent, from each run's metrics.json; mean ± std "
      "over the seeds where a model has several runs.",
      sections.md_table(["Method", "seeds", "A@1", "A@10"], rows)])


def embedding_size_section(summary: list[dict], out: str) -> str:
  """Fig. 7: test A@10 against the user-embedding size E, one line per model label."""
  missing = [s["workdirs"][0] for s in summary if s["E"] is None]
  if missing:
    raise ValueError(f"Figure 7: {missing[0]} has no model.kwargs.user_dim (not a model with "
                     "user embeddings)")
  by_label: dict[str, list[dict]] = {}
  for s in summary:
    by_label.setdefault(s["label"], []).append(s)
  lines, errors, rows = {}, {}, []
  for label, entries in by_label.items():
    entries = sorted(entries, key=lambda s: s["E"])
    dims = [s["E"] for s in entries]
    if len(set(dims)) < len(dims):
      raise ValueError(f"Figure 7: two groups of {label} runs have the same E; give one per E")
    lines[label] = (dims, [float(np.mean(s["A@10"])) for s in entries])
    if any(len(s["A@10"]) > 1 for s in entries):
      errors[label] = [float(np.std(s["A@10"])) if len(s["A@10"]) > 1 else np.nan
                       for s in entries]
    rows += [[label, s["E"], len(s["A@10"]), sections.mean_std(s["A@10"]),
              sections.mean_std(s["A@1"])] for s in entries]
  path = plots.line_panels(os.path.join(out, "accuracy_by_user_dim.png"),
                           [{"title": "", "lines": lines, "errors": errors}], ncols=1,
                           xlabel="user embedding size E (log scale)", ylabel="A@10",
                           title="Test accuracy@10 against the user-embedding size",
                           panel_size=(6.5, 4.2), markers=True, xscale="log")
  return "\n\n".join([
      "### Accuracy against the user-embedding size (Figure 7)",
      f"`{path}`. Test A@10 (and A@1) in percent, E from each run's model.kwargs.user_dim; "
      "mean ± std over seeds where there are several.",
      sections.md_table(["Method", "E", "seeds", "A@10", "A@1"], rows)])


# ----------------------------------------------------------------------------------------------
# Fig. 5: A@1 by the user's number of training posts.


def user_bucket_accuracy(ctxs: Sequence[sections.Context], scheme: str = "log2") -> dict:
  """Test A@1 of each run by the bucket of the post's user's training-post count (0: a user
  unseen in training); figure_sections.bucket_accuracy's result."""
  return sections.bucket_accuracy(
      ctxs, lambda dataset, rows: dataset.user_train_posts_of_row[rows], scheme,
      figure="Figure 5")


def user_bucket_section(result: dict, out: str, scheme: str) -> str:
  labels = result["labels"]
  path = sections.bucket_accuracy_plot(
      result, os.path.join(out, "accuracy_by_user_posts.png"),
      count_name="training posts of the post's user",
      title="Test accuracy@1 by the user's number of training posts")
  return "\n\n".join([
      "### Accuracy by the user's number of training posts (Figure 5)",
      f"`{path}`. Test A@1 in percent of the posts whose user has that many training posts "
      f"({scheme} buckets; 0: a user unseen in training), and the difference "
      f"{labels[-1]} - {labels[0]} in points.",
      sections.bucket_accuracy_table(result, "user's training posts")])


# ----------------------------------------------------------------------------------------------
# Figs. 9 and 10: hashtag-to-image retrieval.


def post_queries(ctx: sections.Context) -> dict[str, np.ndarray]:
  """The query vectors of every test post (the run's distribution; posts left without a
  hashtag dropped) with their truth: {"queries" [N, d], "true_ids", "true_mask" [N, T],
  "rows" [N]}."""
  scorer = ctx.scorer
  if not isinstance(scorer, evaluate.TwoTowerScorer):
    raise ValueError(f"Figure 9: {ctx.run.workdir} is not a two-tower model (no tag table), "
                     "so it has no score of a hashtag for every test image to rank by")
  parts = {"queries": [], "true_ids": [], "true_mask": [], "rows": []}
  for batch in scorer.batches(ctx.dataset, "test", ctx.run.config.eval.batch_size):
    batch = tag_distribution.apply(batch, ctx.run.keep)
    valid = (batch["valid"] & batch["tag_mask"].any(axis=-1)).reshape(-1)
    queries = np.asarray(scorer.queries(batch))
    slots = batch["tag_ids"].shape[-1]
    parts["queries"].append(queries.reshape(-1, queries.shape[-1])[valid])
    parts["true_ids"].append(batch["tag_ids"].reshape(-1, slots)[valid])
    parts["true_mask"].append(batch["tag_mask"].reshape(-1, slots)[valid])
    parts["rows"].append(batch["row"].reshape(-1)[valid])
  return {key: np.concatenate(value) for key, value in parts.items()}


def retrieval_precision(ctxs: Sequence[sections.Context], *, k: int = 10,
                        min_positives: int = 10, scheme: str = "log2") -> dict:
  """P@k of hashtag-to-image retrieval per run (module docstring), and by frequency bucket.

  Returns {"labels", "query_tags" [H] (tag ids, ascending), "positives" [H] (test posts per
  query), "per_tag": {label: [H]}, "mean": {label: P@k}, "edges" and "buckets" (of the 1-based
  training-frequency ranks), "bucket_tags" [B] (queries per bucket), "count_range" [B] (the
  lowest and highest training count of a bucket's queries, None if empty), "by_bucket":
  {label: [B]}}.
  """
  sections.same_data(ctxs, "Figure 9")
  labels = sections.unique_labels([c.run.metrics["model"] for c in ctxs],
                                  [c.run.workdir for c in ctxs])
  dataset = ctxs[0].dataset
  result = {"labels": labels, "per_tag": {}, "mean": {}}
  for label, ctx in zip(labels, ctxs):
    test = post_queries(ctx)
    if "query_tags" not in result:
      result["query_tags"] = breakdowns.retrieval_queries(test["true_ids"], test["true_mask"],
                                                          dataset.num_tags, min_positives)
      if not result["query_tags"].size:
        raise ValueError(f"Figure 9: no hashtag labels {min_positives} test posts; lower "
                         "--min_positives")
      result["positives"] = breakdowns.positives_per_tag(
          test["true_ids"], test["true_mask"], dataset.num_tags)[result["query_tags"]]
    tags = result["query_tags"]
    table = np.asarray(ctx.scorer.tag_table())
    _, _, top = topk.top_k_posts_per_tag(test["queries"], table, min(k, len(test["rows"])),
                                         tag_ids=tags)
    result["per_tag"][label] = breakdowns.per_tag_retrieval_precision(
        tags, top, test["true_ids"], test["true_mask"], k=top.shape[1])
    result["mean"][label] = metrics.tag_retrieval_precision_at_k(
        tags, top, test["true_ids"], test["true_mask"], ks=(top.shape[1],))[f"P@{top.shape[1]}"]
  ranks = result["query_tags"] + 1  # ids are training-frequency ranks from 0
  result["edges"] = breakdowns.bucket_edges(ranks, scheme)
  result["buckets"] = breakdowns.bucket_labels(result["edges"])
  bucket = breakdowns.assign_buckets(ranks, result["edges"])
  num = len(result["edges"]) - 1
  result["by_bucket"] = {label: breakdowns.grouped_mean(result["per_tag"][label], bucket, num)[0]
                         for label in labels}
  result["bucket_tags"] = np.bincount(bucket, minlength=num)
  counts = dataset.tag_counts[result["query_tags"]]
  result["count_range"] = [(int(counts[bucket == b].min()), int(counts[bucket == b].max()))
                           if np.any(bucket == b) else None for b in range(num)]
  return result


def retrieval_sections(result: dict, out: str, *, k: int, min_positives: int,
                       scheme: str) -> str:
  """Fig. 9 (mean P@k per model) and Fig. 10 (by the query's training-frequency bucket)."""
  labels = result["labels"]
  num_queries = len(result["query_tags"])
  fig9 = plots.bar_panels(
      os.path.join(out, "retrieval_precision.png"),
      [{"title": "", "labels": labels, "series": {f"P@{k}": [result["mean"][m] for m in labels]}}],
      ylabel=f"P@{k}", ylim=(0, max(1e-3, max(result["mean"].values())) * 1.15),
      title=f"Hashtag-to-image retrieval: P@{k} over {num_queries} query hashtags",
      panel_size=(max(5.0, 1.2 + 0.9 * len(labels)), 4.0))
  fig10 = plots.bucket_lines(
      os.path.join(out, "retrieval_precision_by_frequency.png"), result["buckets"],
      {m: result["by_bucket"][m] for m in labels}, result["bucket_tags"],
      xlabel="training-frequency rank of the query hashtag (1: the most frequent)",
      ylabel=f"P@{k}", count_label="query hashtags",
      title=f"Hashtag-to-image retrieval: P@{k} by the query's training frequency")
  rows9 = [[m, num_queries, sections.pct(result["mean"][m])] for m in labels]
  rows10 = []
  for b, name in enumerate(result["buckets"]):
    span = result["count_range"][b]
    rows10.append([name, "-" if span is None else (f"{span[0]}" if span[0] == span[1] else
                                                   f"{span[0]}-{span[1]}"),
                   int(result["bucket_tags"][b]),
                   *[sections.pct(result["by_bucket"][m][b]) for m in labels]])
  return "\n\n".join([
      "### Hashtag-to-image retrieval (Figure 9)",
      f"`{fig9}`. Each hashtag labelling at least {min_positives} test posts is a query "
      f"({num_queries} of them); it ranks every test post by the model's score for it, and "
      f"P@{k} is the share of the {k} first posts that carry it, in percent, averaged over "
      "the queries (a user-specific model scores each test image with its own poster).",
      sections.md_table(["Method", "query hashtags", f"P@{k}"], rows9),
      "### Retrieval by hashtag frequency (Figure 10)",
      f"`{fig10}`. The same P@{k}, averaged over the queries of each bucket of "
      f"training-frequency rank ({scheme} buckets; rank 1 is the most frequent training "
      "hashtag), with the bucket's range of training counts.",
      sections.md_table(["frequency rank", "training count", "query hashtags",
                         *[f"P@{k} {m}" for m in labels]], rows10)])


# ----------------------------------------------------------------------------------------------
# All of them.


def veit_figures(out: str, *, fig4: Sequence[Sequence[str] | str] = (),
                 fig5: Sequence[str] = (), fig7: Sequence[Sequence[str] | str] = (),
                 fig9: Sequence[str] = (), user_buckets: str = "log2",
                 tag_buckets: str = "log2", min_positives: int = 10, k: int = 10) -> str:
  """The requested figures into `out` (PNGs and figures.md); returns the markdown.

  fig4, fig7: groups of runs, each the seeds of one variant (a list of workdirs, or a run or
  sweep variant directory, see seed_runs). fig5: a user-agnostic and a user-specific workdir.
  fig9: workdirs of two-tower runs (Fig. 10 comes with it).
  """
  if not (fig4 or fig5 or fig7 or fig9):
    raise ValueError("no figure asked for: give fig4, fig5, fig7 or fig9 runs")
  if fig5 and len(fig5) != 2:
    raise ValueError(f"Figure 5 compares two runs (user-agnostic, user-specific), got {len(fig5)}")
  contexts: dict[str, sections.Context] = {}

  def context(workdir: str) -> sections.Context:
    if workdir not in contexts:
      contexts[workdir] = sections.Context(workdir)
    return contexts[workdir]

  os.makedirs(out, exist_ok=True)
  parts = [HEADING]
  if fig4:
    parts.append(accuracy_section(sections.seed_summary(fig4), out))
  if fig5:
    result = user_bucket_accuracy([context(w) for w in fig5], user_buckets)
    parts.append(user_bucket_section(result, out, user_buckets))
  if fig7:
    parts.append(embedding_size_section(sections.seed_summary(fig7), out))
  if fig9:
    result = retrieval_precision([context(w) for w in fig9], k=k, min_positives=min_positives,
                                 scheme=tag_buckets)
    parts.append(retrieval_sections(result, out, k=k, min_positives=min_positives,
                                    scheme=tag_buckets))
  return sections.write_figures(out, parts)


def main(argv):
  del argv
  f = flags.FLAGS
  if not (f.fig4 or f.fig5 or f.fig7 or f.fig9):
    raise app.UsageError("give --fig4, --fig5, --fig7 or --fig9 runs")
  if f.fig5 and len(f.fig5) != 2:
    raise app.UsageError("--fig5 is given twice: --fig5=AGNOSTIC_RUN --fig5=SPECIFIC_RUN")
  print(veit_figures(f.out, fig4=f.fig4, fig5=f.fig5, fig7=f.fig7, fig9=f.fig9,
                     user_buckets=f.user_buckets, tag_buckets=f.tag_buckets,
                     min_positives=f.min_positives))


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("out", None, "Where the PNGs and figures.md go.", required=True)
  flags.DEFINE_multi_string("fig4", [], "A run, or a sweep variant directory (mean ± std over "
                            "its seeds), whose test A@1 Figure 4 shows; repeat per run.")
  flags.DEFINE_multi_string("fig5", [], "Twice: a user-agnostic run, then a user-specific run "
                            "of the same dataset (A@1 by the user's number of training posts).")
  flags.DEFINE_multi_string("fig7", [], "A run (or sweep variant directory) of a model with "
                            "user embeddings, one per size E (A@10 against E); repeat per run.")
  flags.DEFINE_multi_string("fig9", [], "A two-tower run of the dataset (hashtag-to-image P@10, "
                            "Figures 9 and 10); repeat per run.")
  flags.DEFINE_string("user_buckets", "log2", "Figure 5's buckets: log2 or quantile:N.")
  flags.DEFINE_string("tag_buckets", "log2", "Figure 10's buckets of training-frequency "
                      "rank: log2 or quantile:N.")
  flags.DEFINE_integer("min_positives", 10, "Figure 9: a hashtag is a query if it labels at "
                       "least this many test posts.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
