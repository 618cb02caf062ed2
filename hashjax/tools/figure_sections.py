r"""The parts of hashjax.tools.figures: a loaded run, markdown helpers and the per-run sections
(recall at 10 of single hashtags, Table 5 examples, Table 6 probing, Figure 7 t-SNE). Each
section draws its PNG and returns its markdown.
"""

from __future__ import annotations

import json
import os
import re
from typing import Sequence

import numpy as np

from hashjax.data import tag_distribution
from hashjax.data.synthetic import build, users as synthetic_users, vocab as synthetic_vocab
from hashjax.eval import analysis, breakdowns, evaluate, metrics, oracles, plots, probing
from hashjax.tools import runs as runs_lib

SECTION = "## Figures"
KIND_CODE = {"concept": "c", "polysemous": "p", "city": "L", "country": "C", "social": "s",
             "generic": "g", "tail": "t"}
KIND_LEGEND = ("Kinds: c concept synonym, p polysemous, L city, C country, s social, "
               "g generic (#tbt-like), t tail.")
ORACLE = "Oracle"
GENDER_NAMES = ("female", "unknown", "male")  # codes gender + 1


# ----------------------------------------------------------------------------------------------
# Shared pieces.


class Context:
  """A loaded run plus what the figures read from its dataset (world: None if not synthetic)."""

  def __init__(self, workdir: str):
    self.run = runs_lib.load_run(workdir)
    self.dataset = self.run.dataset
    self.world = build.load_world(self.dataset.directory) if oracles.has_oracle(
        self.dataset) else None
    self.kinds = None if self.world is None else self.world.tag_kinds
    self.scorer = self.run.scorer()
    self.label = self.run.model.label

  def top_k(self, k: int = 10, natural: bool = False) -> dict[str, np.ndarray]:
    return evaluate.predict_top_k(self.scorer, self.dataset, "test", k=k,
                                  keep=None if natural else self.run.keep,
                                  batch_size=self.run.config.eval.batch_size)

  def tag(self, t: int) -> str:
    """#name [kind code] (the kind on synthetic data only)."""
    name = f"#{self.dataset.vocab[t]}"
    if self.kinds is not None:
      name += f" [{KIND_CODE[synthetic_vocab.KIND_NAMES[self.kinds[t]]]}]"
    return name

  def scores(self, features, meta) -> np.ndarray:
    """[B, V] scores of every tag for images `features` posted by users with metadata `meta`."""
    batch = {"features": np.asarray(features, np.float32),
             "user_meta": np.asarray(meta, np.float32)}
    return np.asarray(self.scorer.queries(batch) @ self.scorer.tag_table().T)


def md_table(header, rows) -> str:
  """A markdown table; a column whose cells all start like a number is right-aligned."""
  rows = [[str(c) for c in row] for row in rows]
  numeric = [bool(rows) and all(row[i] == "-" or re.match(r"[-+]?[\d.]", row[i])
                                for row in rows) for i in range(len(header))]
  lines = ["| " + " | ".join(header) + " |",
           "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def pct(x, unit: str = "") -> str:
  return "-" if x is None or np.isnan(x) else f"{100 * x:.1f}{unit}"


def write_section(path: str, text: str) -> None:
  """Puts `text` (starting with the SECTION heading) in place of the file's SECTION, up to the
  next level-2 heading, or appends it: rerunning replaces the section, never duplicates it."""
  content = open(path).read() if os.path.exists(path) else ""
  body = text.rstrip("\n") + "\n"
  match = re.search(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", content, re.S | re.M)
  if match:
    rest = content[match.end():]
    content = content[:match.start()] + body + ("\n" + rest if rest else "")
  else:
    content = content.rstrip("\n") + ("\n\n" if content else "") + body
  with open(path, "w") as f:
    f.write(content)


# ----------------------------------------------------------------------------------------------
# Groups of runs.


def seed_runs(path: str) -> list[str]:
  """[path] for a finished run; for a sweep's variant directory, its seed<i> runs by seed."""
  if os.path.exists(os.path.join(path, "metrics.json")):
    return [path]
  seeds = []
  if os.path.isdir(path):
    for name in os.listdir(path):
      match = re.fullmatch(r"seed(\d+)", name)
      if match and os.path.exists(os.path.join(path, name, "metrics.json")):
        seeds.append((int(match.group(1)), os.path.join(path, name)))
  if not seeds:
    raise FileNotFoundError(f"{path} is neither a finished run (no metrics.json) nor a sweep "
                            "variant directory with finished seed<i> runs")
  return [p for _, p in sorted(seeds)]


def seed_summary(groups: Sequence[Sequence[str] | str]) -> list[dict]:
  """One entry per group of runs (the seeds of one variant; a str is resolved by seed_runs):
  {"label" (the first run's row name), "workdirs", "E" (model.kwargs.user_dim or None), and
  for every test metric, e.g. "A@1", its value in each seed}."""
  out = []
  for group in groups:
    workdirs = seed_runs(group) if isinstance(group, str) else list(group)
    runs = [read_metrics(w) for w in workdirs]
    dims = {r["config"]["model"].get("kwargs", {}).get("user_dim") for r in runs}
    if len(dims) > 1:
      raise ValueError(f"the runs {workdirs} have different user_dim {sorted(dims)}")
    out.append({**{key: [r["test"][key] for r in runs] for key in runs[0]["test"]},
                "label": runs[0]["model"], "workdirs": workdirs, "E": dims.pop()})
  return out


def write_figures(out: str, parts: Sequence[str]) -> str:
  """The sections joined into out/figures.md (out is created); returns the markdown."""
  text = "\n\n".join(parts) + "\n"
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "figures.md"), "w") as f:
    f.write(text)
  return text


def read_metrics(workdir: str) -> dict:
  """A finished run's metrics.json."""
  path = os.path.join(workdir, "metrics.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir} is not a finished run")
  with open(path) as f:
    return json.load(f)


def unique_labels(labels: Sequence[str], workdirs: Sequence[str]) -> list[str]:
  """The runs' labels, each made unique by its directory name where two are the same."""
  if len(set(labels)) == len(labels):
    return list(labels)
  return [f"{label} ({os.path.basename(os.path.normpath(w))})" for label, w in
          zip(labels, workdirs)]


def same_data(ctxs, figure: str) -> None:
  """Raises unless every run was tested on the first one's dataset and hashtag distribution."""
  first = ctxs[0]
  for c in ctxs[1:]:
    if (c.dataset.directory, c.run.config.data.dist) != (first.dataset.directory,
                                                         first.run.config.data.dist):
      raise ValueError(f"{figure}: {c.run.workdir} and {first.run.workdir} were tested on "
                       "different data (dataset or hashtag distribution)")


def mean_std(values) -> str:
  """Percent, mean ± std (ddof 0) over seeds; one value alone without a spread."""
  values = np.asarray(values, np.float64)
  if values.size == 1:
    return pct(values[0])
  return f"{pct(values.mean())} ± {pct(values.std())}"


# ----------------------------------------------------------------------------------------------
# Accuracy by a per-post count (Veit's Fig. 5, Durand's history length).


def bucket_accuracy(ctxs, count_of_rows, scheme: str = "log2", *, figure: str = "") -> dict:
  """Test A@1 of each run by the bucket of an integer count per test post.

  count_of_rows(dataset, rows) -> int [N] (e.g. the user's training posts); buckets by
  hashjax.eval.breakdowns' scheme, computed from the first run's test posts. Returns
  {"labels", "edges", "buckets" (names), "posts" [B], "users" [B] (distinct users among the
  bucket's posts), "all_users" (distinct users among all of them: a user whose count varies
  from post to post is in several buckets), "accuracy": {label: [B]} (NaN: empty bucket), "overall": {label: A@1 over
  all test posts}}. Every run must have been tested on the same data.
  """
  same_data(ctxs, figure)
  labels = unique_labels([c.run.metrics["model"] for c in ctxs], [c.run.workdir for c in ctxs])
  tops = [c.top_k(k=1) for c in ctxs]
  dataset = ctxs[0].dataset
  counts = count_of_rows(dataset, tops[0]["rows"])
  edges = breakdowns.bucket_edges(counts, scheme)
  num = len(edges) - 1
  result = {"labels": labels, "edges": edges, "buckets": breakdowns.bucket_labels(edges),
            "accuracy": {}, "overall": {}}
  for label, top in zip(labels, tops):
    bucket = breakdowns.assign_buckets(count_of_rows(dataset, top["rows"]), edges)
    got = breakdowns.accuracy_by_bucket(top["pred_ids"], top["true_ids"], top["true_mask"],
                                        bucket, num, k=1)
    result["accuracy"][label] = got["accuracy"]
    result["overall"][label] = metrics.accuracy_at_k(top["pred_ids"], top["true_ids"],
                                                     top["true_mask"], 1)
    result.setdefault("posts", got["posts"])
  bucket = breakdowns.assign_buckets(counts, edges)
  users = np.unique(np.stack([bucket, dataset.user_index_of_row[tops[0]["rows"]]], 1), axis=0)
  result["users"] = np.bincount(users[:, 0], minlength=num)
  result["all_users"] = len(np.unique(users[:, 1]))
  return result


def bucket_accuracy_plot(result: dict, path: str, *, count_name: str, title: str) -> str:
  """bucket_accuracy's result as lines over the buckets, their test posts as bars; the path."""
  return plots.bucket_lines(path, result["buckets"],
                            {label: result["accuracy"][label] for label in result["labels"]},
                            result["posts"], xlabel=count_name, ylabel="test A@1",
                            count_label="test posts", title=title)


def bucket_accuracy_table(result: dict, count_name: str) -> str:
  """bucket_accuracy's result as markdown: a row per bucket and one for all posts, A@1 of each
  run in percent, and the difference last run - first run in points."""
  labels = result["labels"]

  def difference(a, b) -> str:
    return "-" if np.isnan(a) or np.isnan(b) else f"{100 * (a - b):+.1f}"

  rows = []
  for b, name in enumerate(result["buckets"]):
    acc = [result["accuracy"][label][b] for label in labels]
    rows.append([name, int(result["posts"][b]), int(result["users"][b]),
                 *[pct(a) for a in acc], difference(acc[-1], acc[0])])
  overall = [result["overall"][label] for label in labels]
  rows.append(["all", int(result["posts"].sum()), result["all_users"],
               *[pct(a) for a in overall], difference(overall[-1], overall[0])])
  return md_table([count_name, "test posts", "users", *[f"A@1 {label}" for label in labels],
                   "difference"], rows)


def tag_scores(ctx: Context, tag_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Scores [N, T] of tag_ids for the run's test posts (its distribution), labels [N, T] and
  the posts' rows [N]."""
  table = np.asarray(ctx.scorer.tag_table())[np.asarray(tag_ids)]
  scores, labels, rows = [], [], []
  for batch in ctx.scorer.batches(ctx.dataset, "test", ctx.run.config.eval.batch_size):
    batch = tag_distribution.apply(batch, ctx.run.keep)
    valid = (batch["valid"] & batch["tag_mask"].any(axis=-1)).reshape(-1)
    queries = np.asarray(ctx.scorer.queries(batch))
    scores.append((queries.reshape(-1, queries.shape[-1]) @ table.T)[valid])
    ids = batch["tag_ids"].reshape(valid.size, -1)[valid]
    mask = batch["tag_mask"].reshape(valid.size, -1)[valid]
    labels.append(((ids[:, :, None] == np.asarray(tag_ids)) & mask[:, :, None]).any(axis=1))
    rows.append(batch["row"].reshape(-1)[valid])
  return np.concatenate(scores), np.concatenate(labels), np.concatenate(rows)


def kind_summary(ctx: Context, ids) -> str:
  """How many of the tags are of each synthetic kind, e.g. "12 c, 8 t" ("-" off synthetic data)."""
  if ctx.world is None:
    return "-"
  counts = np.bincount(ctx.kinds[np.asarray(ids)],
                       minlength=len(synthetic_vocab.KIND_NAMES))
  return ", ".join(f"{n} {KIND_CODE[synthetic_vocab.KIND_NAMES[k]]}"
                   for k, n in enumerate(counts) if n)


def oracle_tag_scores(ctx: Context, rows, tag_ids, chunk: int = 1024) -> np.ndarray:
  """The true p(y | post) of tag_ids for the posts `rows` [N, T]: the oracle's ranking of each
  tag (the balanced thinning scales a tag's column by a constant and leaves it unchanged)."""
  oracle = oracles.Oracle(ctx.dataset)
  out = []
  for s in range(0, len(rows), chunk):
    r = rows[s:s + chunk]
    batch = {"row": r, "user_id": ctx.dataset.user_ids[r]}
    out.append(np.asarray(oracle.scores(batch, 0, ctx.dataset.num_tags))[:, tag_ids])
  return np.concatenate(out)


# ----------------------------------------------------------------------------------------------
# One run.


def recall_section(ctx: Context, top: dict, out: str) -> str:
  """Per-tag R@10: a PNG of the 20 most frequent and 20 best tags, and a table by tag kind."""
  recall, num_true = analysis.per_tag_recall(top["pred_ids"], top["true_ids"], top["true_mask"],
                                             ctx.dataset.num_tags)
  sets = analysis.recall_subsets({ctx.label: recall}, num_true, ctx.dataset.tag_counts,
                                 base=ctx.label, other=ctx.label)
  sets.pop(f"largest gain of {ctx.label}")
  path = plots.recall_figure(
      os.path.join(out, "recall_at_10.png"),
      {name: [ctx.tag(t) for t in ids] for name, ids in sets.items()},
      {name: {ctx.label: recall[ids]} for name, ids in sets.items()},
      title=f"{ctx.label}: R@10 of single hashtags (test, {ctx.run.config.data.dist})")
  text = [f"### Recall at 10 of single hashtags\n\n`{path}`. Per tag kind, over tags with at "
          "least 10 test positives: the mean of R@10(y) over tags and the pooled R@10 (all "
          "correct predictions of the kind over all its test positives)."]
  if ctx.world is not None:
    rows = []
    for code, name in enumerate(synthetic_vocab.KIND_NAMES):
      tags = np.flatnonzero((ctx.kinds == code) & (num_true >= 10))
      if tags.size:
        pooled = np.sum(recall[tags] * num_true[tags]) / np.sum(num_true[tags])
        rows.append([name, tags.size, int(num_true[tags].sum()), pct(recall[tags].mean()),
                     pct(pooled)])
    text.append(md_table(["kind", "tags", "test positives", "mean R@10", "pooled R@10"], rows))
  return "\n\n".join(text)


def examples_section(ctx: Context, balanced: Context | None, out: str, n: int = 6) -> str:
  """Table 5: top 10 for sample test posts beside their true tags; where the top-10 slots go."""
  models = [ctx] + ([balanced] if balanced else [])
  names = [f"{c.label}, {c.run.config.data.dist}" for c in models]
  tops = [c.top_k(natural=True) for c in models]  # the same posts for both: every test post
  rows = tops[0]["rows"]
  pick = analysis.choose_examples(np.arange(len(rows)), n)
  truth = tops[0]["true_ids"], tops[0]["true_mask"]
  users = ctx.world.users if ctx.world is not None else None
  table = []
  for i in pick:
    true = [int(t) for t, m in zip(truth[0][i], truth[1][i]) if m]
    cells = []
    for top in tops:
      cells.append(" ".join(f"**{ctx.tag(t)}**" if t in true else ctx.tag(t)
                            for t in top["pred_ids"][i]))
    who = f"row {int(rows[i])}"
    if users is not None:
      u = int(ctx.dataset.user_ids[rows[i]])
      who += (f", user {u}: {users['age'][u]}, {GENDER_NAMES[users['gender'][u] + 1]}, "
              f"{synthetic_users.COUNTRIES[users['country'][u]]}")
    table.append([who, " ".join(ctx.tag(t) for t in true), *cells])
  text = [f"### Examples (Table 5)\n\nTop 10 for {len(pick)} random test posts (seed 0), true "
          f"tags in bold. {KIND_LEGEND if ctx.world is not None else ''}",
          md_table(["post", "true tags", *[f"top 10: {m}" for m in names]], table)]
  if ctx.world is not None:
    shares = [analysis.kind_shares(top["pred_ids"], ctx.kinds) for top in tops]
    text.append("Share of all top-10 slots over the test posts, by tag kind (%):")
    text.append(md_table(["kind", *names], [[k, *[pct(s[c]) for s in shares]]
                                            for c, k in enumerate(synthetic_vocab.KIND_NAMES)]))
    head = np.arange(5)  # dataset ids are by training frequency
    present = [analysis.presence(top["pred_ids"], head) for top in tops]
    text.append("Test posts whose top 10 holds each of the 5 most frequent training tags (%):")
    text.append(md_table(["tag", *names], [[ctx.tag(t), *[pct(p[j]) for p in present]]
                                           for j, t in enumerate(head)]))
    path = plots.bar_panels(
        os.path.join(out, "top10_kinds.png"),
        [{"title": "share of top-10 slots by tag kind", "labels": list(synthetic_vocab.KIND_NAMES),
          "series": dict(zip(names, shares))}], ylabel="share", panel_size=(8.0, 3.6))
    text.append(f"`{path}`")
  return "\n\n".join(text)


def _neighbours(ctx: Context, rows, probe_row: int, n: int, chunk: int = 8192) -> np.ndarray:
  """The n test rows nearest the probe row's image descriptor (cosine), read in chunks."""
  probe = ctx.dataset.read([probe_row], fields=("features",))["features"][0]
  sims = np.concatenate([probing.cosine_similarities(
      ctx.dataset.read(rows[s:s + chunk], fields=("features",))["features"], probe)
      for s in range(0, len(rows), chunk)])
  return rows[probing.nearest(sims, n)]


def _probe_row(ctx: Context, rows, dominant, trait) -> tuple[int, int]:
  concept = probing.choose_probe_concept(dominant, trait)
  of_concept = rows[dominant == concept]
  features = ctx.dataset.read(of_concept, fields=("features",))["features"]
  return int(of_concept[probing.medoid(features)]), concept


# How a listed tag relates to what the world planted (analysis.listed_agreement's categories).
VERDICT_NAMES = {"right": "planted on this side", "wrong": "planted on the other side",
                 "neutral": "planted, neither side", None: "nothing planted"}
VERDICT_COLOURS = {"right": "#2ca02c", "wrong": "#d62728", "neutral": "#1f77b4", None: "#bbbbbb"}
MARKS = {"right": " ✓", "wrong": " ✗", "neutral": " ·", None: ""}


def _verdict(planted: float, side: int) -> str | None:
  if np.isnan(planted):
    return None
  return "neutral" if planted == 0 else "right" if np.sign(planted) == side else "wrong"


def probing_section(ctx: Context, out: str, neighbours: int = 500, n: int = 10) -> str:
  """Table 6, both ways (observed subsets as in the paper; counterfactual metadata), scored
  against the planted effects."""
  rows = ctx.dataset.split_rows("test")
  _, latents, _ = build.load_oracle(ctx.dataset.directory)
  dominant, params, users = latents[rows, 0], ctx.world.params, ctx.world.users
  probes = {"people": _probe_row(ctx, rows, dominant, params["concept_sociality"]),
            "scene": _probe_row(ctx, rows, dominant, params["concept_locality"])}
  near = {}
  for name, (probe, _) in probes.items():
    near_rows = _neighbours(ctx, rows, probe, neighbours)
    near[name] = (ctx.dataset.user_ids[near_rows],
                  ctx.dataset.read(near_rows, fields=("features", "user_meta")))
  summary, lists, panels = [], [], []
  for c in probing.table6_contrasts(ctx.world, ctx.dataset.user_ids[rows]):
    uids, batch = near[c["probe"]]
    planted, sides = c["planted"], c["sides"]
    in_a, in_b = (probing.in_group(users, uids, g) for g in c["groups"])
    observed = (probing.probe_observed(ctx.scores, batch["features"], batch["user_meta"], in_a,
                                        in_b, n=n) if (in_a.any() or in_b.any()) else None)
    cf = probing.probe_counterfactual(
        ctx.scores, batch["features"],
        *[probing.counterfactual_meta(users, uids, **probing.group_fields(ctx.world, g))
          for g in c["groups"]], n=n)
    listed = probing.listed_agreement(cf["a"], cf["b"], planted)
    effect = probing.effect_agreement(cf["rank_gain"], planted)
    obs = (probing.listed_agreement(observed["a"], observed["b"], planted)
           if observed else None)
    summary.append([c["title"], f"{sides[0]} vs {sides[1]}",
                    f"{listed['right']}/{listed['listed']} ({listed['neutral']} neutral; "
                    f"chance {pct(listed['chance'], '%')})",
                    f"{effect['agree']}/{effect['tags']} ({pct(effect['fraction'], '%')})",
                    "-" if np.isnan(effect["rho"]) else f"{effect['rho']:.2f}",
                    f"{observed['size_a']} / {observed['size_b']}" if observed else "0 / 0",
                    f"{obs['right']}/{obs['listed']} ({obs['neutral']} neutral)" if obs else "-"])
    sides_of = [(t, 1) for t in cf["a"]] + [(t, -1) for t in cf["b"]]
    verdicts = [_verdict(planted[t], side) for t, side in sides_of]
    lists.append([c["title"], *[" ".join(ctx.tag(t) + MARKS[v] for (t, s), v in
                                         zip(sides_of, verdicts) if s == side)
                                for side in (1, -1)]])
    panels.append({"title": c["title"], "labels": [ctx.tag(t) for t, _ in sides_of],
                   "values": [cf["diff"][t] for t, _ in sides_of], "sides": sides[::-1],
                   "colours": [VERDICT_COLOURS[v] for v in verdicts]})
  path = plots.diverging_bar_panels(
      os.path.join(out, "probing.png"), panels, ncols=3,
      xlabel="difference in top-10 share",
      legend={VERDICT_NAMES[v]: VERDICT_COLOURS[v] for v in VERDICT_NAMES},
      title=f"{ctx.label}: hashtags most affected by gender, age and home city "
            f"(counterfactual metadata, {neighbours} nearest test images)")
  people, scene = probes["people"], probes["scene"]
  return "\n\n".join([
      "### Demographic probing (Table 6)",
      f"`{path}`. Probe images: test row {people[0]} (a typical image of concept {people[1]}, "
      f"the most people-like; gender and age) and row {scene[0]} (concept {scene[1]}, the most "
      f"scene-like; home city); each with its {neighbours} nearest test images by descriptor. "
      "*Counterfactual*: every neighbour scored twice, under side A's and side B's metadata "
      "(the poster's own metadata with gender and age set to the band centre, or with the home "
      "city's country and GPS), so the image content is the same on both sides. *Observed*: "
      "the paper's procedure, neighbours whose posters are in each group, each with its own "
      "metadata. Listed: the top 10 tags of each side by the difference in the share of images "
      "with the tag in the top 10; right = the side the world favours (gender: the profile's "
      "sign; age: the peak age nearer that side's age; city: the tag of that side's city or "
      "country), neutral = planted but on neither side. Rank gain: over every tag with a "
      "planted direction, whether its mean rank moves toward the planted side, and the rank "
      "correlation of that move with the planted log-rate difference (location: +1 / -1).",
      md_table(["contrast", "A vs B", "counterfactual: listed on the right side",
                "rank gain on the planted side", "Spearman rho, rank gain vs planted",
                "observed: images A / B",
                "observed: listed on the right side"], summary),
      "Counterfactual lists (✓ planted on this side, ✗ planted on the other, · planted on "
      f"neither; no mark: nothing planted). {KIND_LEGEND}",
      md_table(["contrast", "favoured by A", "favoured by B"], lists)])


def tsne_section(ctx: Context, out: str) -> str:
  """Figure 7: t-SNE of the test users' user vectors, coloured by age, gender, country, home
  longitude; how much of each attribute survives, by nearest neighbours."""
  rows = ctx.dataset.split_rows("test")
  user_ids, first = np.unique(ctx.dataset.user_ids[rows], return_index=True)
  meta = ctx.dataset.read(rows[first], fields=("user_meta",))["user_meta"]
  vectors = np.asarray(ctx.run.model.user_vectors(ctx.run.variables, {"user_meta": meta}))
  points = analysis.tsne(vectors)
  users = ctx.world.users
  attrs = {"age": users["age"][user_ids], "gender": users["gender"][user_ids] + 1,
           "gender_names": GENDER_NAMES, "country": users["country"][user_ids],
           "country_names": synthetic_users.COUNTRIES, "longitude": users["lon"][user_ids]}
  path = plots.tsne_figure(os.path.join(out, "tsne_user_vectors.png"), points, attrs,
                           title=f"{ctx.label}: t-SNE of the {vectors.shape[1]}-d user vectors "
                                 f"of {len(user_ids)} test users")
  rows_out = []
  for name in ("gender", "country"):
    a2 = analysis.neighbour_agreement(points, attrs[name])
    a24 = analysis.neighbour_agreement(vectors, attrs[name])
    rows_out.append([name, "share of 10 nearest with the same value", pct(a2["agreement"]),
                     pct(a24["agreement"]), f"chance {pct(a2['chance'])}"])
  for name in ("age", "longitude"):
    rows_out.append([name, "corr. with the 10 nearest's mean",
                     f"{analysis.neighbour_correlation(points, attrs[name]):.2f}",
                     f"{analysis.neighbour_correlation(vectors, attrs[name]):.2f}", "chance 0"])
  dead = int(np.sum(vectors.max(axis=0) <= 0))
  return "\n\n".join([
      "### t-SNE of the user vectors (Figure 7)",
      f"`{path}` (scikit-learn t-SNE, PCA init, seed 0). {dead} of the {vectors.shape[1]} "
      "units are zero for every test user.",
      md_table(["attribute", "measure", "t-SNE map", f"{vectors.shape[1]}-d vectors", ""],
               rows_out)])
