r"""User-conditional hashtag-to-image retrieval (Veit et al., Fig. 1) from two finished runs.

  python -m hashjax.tools.conditional_retrieval --workdir=USER_SPECIFIC_RUN \
      --baseline=USER_AGNOSTIC_RUN [--top=10] [--out=DIR] [--users_per_group=5] \
      [--min_train_posts=1] [--seed=0]

On a synthetic dataset, every polysemous hashtag of the world is a query. For each reader group
of the world (the style group, or the country with polysemy_by="country"), --users_per_group
users with at least --min_train_posts training posts are drawn (seeded). The user-specific run
scores every test image for the tag as if that user had posted it: the model's batch fields that
describe the user (user_index, user_train_posts, user_meta) are the user's own, read from one of
their posts, and the features are each test image's. The --top images are retrieved, and the
rate is the share of them whose latent concepts include the concept the tag means for that
user's group (hashjax/eval/conditional_retrieval.py), averaged over the group's users. The
user-agnostic run ranks the images once per tag, and that ranking is scored against each
group's meaning. Reference columns: the share of all test images that show the meaning, the
share among the test images labelled with the tag, and two oracles that rank by the world's own
distributions (p(tag | image) mixed over the training users; p(tag | image, user)).

Every test image is a candidate (the run's hashtag distribution does not matter: the truth is
the image's concepts, not its labels). Prints the markdown and writes DIR/conditional_retrieval.md
and DIR/conditional_retrieval.png (default DIR: USER_SPECIFIC_RUN/figures). `run` returns the
markdown, for a sweep or a figures tool.
"""

from __future__ import annotations

import os
from typing import Any

from absl import app, flags
import jax
import numpy as np

from hashjax.data.synthetic import build
from hashjax.data.synthetic import users as synthetic_users
from hashjax.eval import conditional_retrieval as cr
from hashjax.eval import evaluate, oracles, plots
from hashjax.tools import figure_sections as sections

HEADING = "### User-conditional retrieval of polysemous hashtags (Figure 1)"
# Batch fields that describe the poster, not the post: set to the chosen user's for every image.
USER_FIELDS = ("user_id", "user_index", "user_train_posts", "user_meta")
ORACLE_IMAGE_ONLY = oracles.OracleImageOnly.name  # p(tag | image), mixed as that row mixes it
ORACLE = "Oracle (user's true p)"  # p(tag | image, the chosen user)


# ----------------------------------------------------------------------------------------------
# A run as a score function.


def user_fields(model) -> list[str]:
  """The batch fields of model.inputs that describe the user (ValueError for any the tool
  cannot set per user, e.g. captions, or for a model that reads user histories)."""
  if model.layout != "posts":
    raise ValueError(f"{model.label} reads user histories (layout {model.layout!r}); this tool "
                     "scores posts")
  fields = [f for f in model.inputs if f != "features"]
  other = sorted(set(fields) - set(USER_FIELDS))
  if other:
    raise ValueError(f"{model.label} reads {other}, which are not the same for every post of a "
                     "user; the tool can only give it the chosen user's fields")
  return fields


def model_score(ctx: sections.Context, rows, tags, *, chunk: int = 1024) -> cr.ColumnScores:
  """score(tag, user, rows) of a loaded run for the candidate images `rows` (features read once),
  as posted by world user `user` (None: no user fields, for a user-agnostic model).

  Two-tower models: queries of the images with the user's fields (the jitted query, in padded
  chunks of `chunk`) against the tags' rows of the tag table; other models: model.scores.
  """
  rows, tags = np.asarray(rows), np.asarray(tags)
  model, dataset, scorer = ctx.run.model, ctx.dataset, ctx.scorer
  fields = user_fields(model)
  features = dataset.read(rows, fields=("features",))["features"]
  chunk = max(1, min(chunk, len(rows)))
  if isinstance(scorer, evaluate.TwoTowerScorer):
    table = np.asarray(scorer.tag_table(), np.float64)[tags]
    score_batch = lambda batch: np.asarray(scorer.queries(batch), np.float64) @ table.T
  else:
    pair_scores = jax.jit(model.scores)
    score_batch = lambda batch: np.asarray(pair_scores(scorer.variables, batch, tags))

  def compute(user, asked):
    if not np.array_equal(asked, rows):
      raise ValueError("this score function was built for other candidate images")
    if user is None and fields:
      raise ValueError(f"{model.label} reads {fields}: it needs a user")
    own = {}
    if fields:
      own = dataset.read(dataset.user_rows(user)[:1], fields=fields)
      own = {f: own[f] for f in fields}
    out = []
    for s in range(0, len(rows), chunk):
      x = features[s:s + chunk]
      n = len(x)
      if n < chunk:  # pad to one compiled shape
        x = np.concatenate([x, np.repeat(x[-1:], chunk - n, axis=0)])
      batch = {"features": x, **{f: np.repeat(v, chunk, axis=0) for f, v in own.items()}}
      out.append(score_batch(batch)[:n])
    return np.concatenate(out)

  return cr.ColumnScores(tags, compute)


# ----------------------------------------------------------------------------------------------
# The measurement.


def measure_scores(world, dataset, latents, scorers: dict[str, tuple[Any, bool]], *,
                   top: int = 10, users_per_group: int = 5, min_train_posts: int = 1,
                   seed: int = 0, with_oracles: bool = True) -> dict[str, Any]:
  """Rates of score functions on a synthetic dataset's test images.

  latents: (concept_ids, concept_weights) per dataset row (build.load_oracle); scorers: {label:
  (score(tag, user, rows), user_agnostic)}. With `with_oracles`, the world's two rankings are added
  (ORACLE_IMAGE_ONLY, user-agnostic, and ORACLE). Returns a dict of
    tags [T], reader ("group" or "country"), groups (the reader values with chosen users),
    users [U] and user_group [U] (world user ids and their reader values);
    meanings [T, R] and other [T, R]: the concept each tag means for each reader value, and
      its other meaning;
    rates {label: [T, R]} and per_user {label: [T, U]}: the rates (module docstring);
    base, tagged [T, R]: the share of the test images that show the meaning, of all of them
      and of those labelled with the tag; train_tagged, train_tagged_other [T, R]: the share
      of the training images labelled with the tag that show the meaning, and the other one;
    test_images, top, seed, users_per_group, min_train_posts;
  R spans every reader value; a value without chosen users has NaN rates and meaning -1.
  """
  concept_ids, concept_weights = latents
  rows = dataset.split_rows("test")
  tags = cr.polysemous_tags(world)
  if not tags.size:
    raise ValueError(f"the world of {dataset.directory} has no polysemous hashtag")
  reader, reader_of_user = cr.readers(world)
  train_posts = np.bincount(dataset.user_ids[dataset.split_rows("train")],
                            minlength=world.config.num_users)
  users, user_group = cr.choose_users(reader_of_user, train_posts, users_per_group,
                                      min_train_posts=min_train_posts, seed=seed)
  num_readers = int(reader_of_user.max()) + 1
  meanings = cr.group_meanings(world, tags, users, user_group, num_readers)
  pair = world.tag_concepts[tags]
  other = np.where(meanings == pair[:, :1], pair[:, 1:], pair[:, :1])
  other[meanings < 0] = -1
  image_concepts = concept_ids[rows]
  labels = _labels(dataset, rows, tags)
  train_rows = dataset.split_rows("train")
  train_labels = _labels(dataset, train_rows, tags)
  scorers = dict(scorers)
  reserved = sorted(set(scorers) & {*_references(), ORACLE_IMAGE_ONLY, ORACLE})
  if reserved:
    raise ValueError(f"score labels {reserved} are the names of reference columns")
  if with_oracles:
    scorers[ORACLE_IMAGE_ONLY] = (cr.image_only_score(world, concept_ids, concept_weights, tags,
                                                      train_posts), True)
    scorers[ORACLE] = (cr.oracle_score(world, concept_ids, concept_weights, tags), False)
  rates, per_user = {}, {}
  for label, (score, agnostic) in scorers.items():
    got = cr.retrieval_rates(score, tags, users, user_group, meanings, rows, image_concepts,
                             top, user_agnostic=agnostic)
    rates[label], per_user[label] = got["rate"], got["per_user"]
  return {"tags": tags, "reader": reader, "groups": np.unique(user_group), "users": users,
          "user_group": user_group, "meanings": meanings, "other": other, "rates": rates,
          "per_user": per_user, "base": cr.base_share(image_concepts, meanings),
          "tagged": cr.tagged_share(labels, image_concepts, meanings),
          "train_tagged": cr.tagged_share(train_labels, concept_ids[train_rows], meanings),
          "train_tagged_other": cr.tagged_share(train_labels, concept_ids[train_rows], other),
          "test_images": len(rows), "top": min(top, len(rows)), "seed": seed,
          "users_per_group": users_per_group, "min_train_posts": min_train_posts}


def _labels(dataset, rows, tags) -> np.ndarray:
  """[T, N] bool: whether each of the rows carries each tag (the natural distribution)."""
  truth = dataset.read(rows, fields=())
  return np.stack([((truth["tag_ids"] == t) & truth["tag_mask"]).any(axis=1) for t in tags])


def measure(workdir: str, baseline: str, *, top: int = 10, users_per_group: int = 5,
            min_train_posts: int = 1, seed: int = 0) -> dict[str, Any]:
  """measure_scores for a user-specific run and a user-agnostic run of one synthetic dataset;
  adds "labels": (the run's row name, the baseline's) and "workdirs"."""
  ctx, base = sections.Context(workdir), sections.Context(baseline)
  if ctx.dataset.directory != base.dataset.directory:
    raise ValueError(f"{workdir} read {ctx.dataset.directory}, {baseline} read "
                     f"{base.dataset.directory}: compare runs of one dataset")
  if ctx.world is None:
    raise ValueError(f"{ctx.dataset.directory} is not a synthetic dataset: no world knows what "
                     "its hashtags mean")
  if not user_fields(ctx.run.model):
    raise ValueError(f"{workdir} ({ctx.run.model.label}) reads no user field; give a "
                     "user-specific run as --workdir")
  if user_fields(base.run.model):
    raise ValueError(f"{baseline} ({base.run.model.label}) reads {user_fields(base.run.model)}; "
                     "give a user-agnostic run as --baseline")
  names = [ctx.run.metrics.get("model", ctx.label), base.run.metrics.get("model", base.label)]
  if names[0] == names[1]:
    names = [f"{n} ({os.path.basename(os.path.normpath(w))})" for n, w in
             zip(names, (workdir, baseline))]
  rows = ctx.dataset.split_rows("test")
  tags = cr.polysemous_tags(ctx.world)
  chunk = ctx.run.config.eval.batch_size
  _, concept_ids, concept_weights = build.load_oracle(ctx.dataset.directory)
  result = measure_scores(ctx.world, ctx.dataset, (concept_ids, concept_weights),
                          {names[0]: (model_score(ctx, rows, tags, chunk=chunk), False),
                           names[1]: (model_score(base, rows, tags, chunk=chunk), True)},
                          top=top, users_per_group=users_per_group,
                          min_train_posts=min_train_posts, seed=seed)
  result["labels"] = tuple(names)
  result["workdirs"] = (workdir, baseline)
  result["tag_names"] = [ctx.tag(int(t)) for t in result["tags"]]
  return result


# ----------------------------------------------------------------------------------------------
# Markdown and the figure.


def group_name(reader: str, value: int) -> str:
  return synthetic_users.COUNTRIES[value] if reader == "country" else f"group {value}"


def cells(result: dict) -> list[tuple[int, int]]:
  """(tag position, reader value) of every cell with chosen users, tag-major."""
  return [(i, int(g)) for i in range(len(result["tags"])) for g in result["groups"]]


def _references() -> dict[str, str]:
  return {"random": "base", "tagged": "tagged"}


def column(result: dict, name: str) -> np.ndarray:
  """[T, R]: a model's or oracle's rates, or a reference ("random", "tagged")."""
  if name in _references():
    return result[_references()[name]]
  return result["rates"][name]


def columns(result: dict) -> list[str]:
  return ["random", "tagged", *result["rates"]]


def summary(result: dict) -> list[list[str]]:
  """Means over the (tag, group) cells: all, those whose meaning is the tag's commoner reading
  in training (more of the training images labelled with the tag show it than show the other
  meaning), and those whose meaning is the rarer one."""
  every = cells(result)
  mine, other = result["train_tagged"], result["train_tagged_other"]
  sets = {"all cells": every,
          "the tag's commoner reading in training": [c for c in every if mine[c] > other[c]],
          "the tag's rarer reading in training": [c for c in every if mine[c] < other[c]]}
  out = []
  for name, chosen in sets.items():
    if chosen:
      index = tuple(np.array(chosen).T)
      out.append([name, len(chosen), *[sections.pct(np.nanmean(column(result, c)[index]))
                                       for c in columns(result)]])
  return out


def overall(result: dict, name: str) -> float:
  """The mean rate over every (tag, group) cell with chosen users."""
  return float(np.nanmean(column(result, name)[tuple(np.array(cells(result)).T)]))


def markdown(result: dict, png: str | None = None) -> str:
  """The section: what was measured, the per-cell table and the summary."""
  model, baseline = result.get("labels", (None, None))
  reader, top = result["reader"], result["top"]
  count = np.bincount(result["user_group"])
  names = result.get("tag_names") or [f"#{int(t)}" for t in result["tags"]]
  rows = []
  for i, g in cells(result):
    rows.append([names[i], group_name(reader, g),
                 f"concept {result['meanings'][i, g]} (not {result['other'][i, g]})",
                 int(count[g]), *[sections.pct(column(result, c)[i, g]) for c in columns(result)]])
  rows.append(["mean", "", "", "-", *[sections.pct(overall(result, c)) for c in columns(result)]])
  chosen = "; ".join(f"{group_name(reader, int(g))}: "
                     + ", ".join(str(int(u)) for u in result["users"][result["user_group"] == g])
                     for g in result["groups"])
  who = "style group" if reader == "group" else "country"
  models = (f"**{model}** (user-specific) and **{baseline}** (user-agnostic)" if model else
            "the score functions")
  text = [HEADING,
          (f"`{png}`. " if png else "")
          + f"Each polysemous hashtag of the world is a query for users of each {who} (the "
          f"world's reader of its meaning): {result['users_per_group']} users per {who} "
          f"(fewer where the {who} has fewer), drawn at random (seed {result['seed']}) among "
          f"those with at least {result['min_train_posts']} training post(s). Each of "
          f"{result['test_images']} test images is scored as if the user had posted it, and "
          f"the rate is the share of the top {top} whose latent concepts include the concept "
          f"the tag means for the user's {who}, in percent, averaged over the {who}'s users. "
          f"Models: {models}; a user-agnostic ranking is the same for every user and is scored "
          f"against each {who}'s meaning. References: *random*, the share of all test images "
          "that show the meaning; *tagged*, that share among the test images labelled with the "
          f"tag by their posters; *{ORACLE_IMAGE_ONLY}*, the top {top} by the world's p(tag | "
          "image) mixed over the training users as the oracle rows of the run's report mix it (how "
          "a user-agnostic model that knew the world exactly would rank); "
          f"*{ORACLE}*, the top {top} by the world's p(tag | image, user).",
          sections.md_table(["hashtag", who, "meaning for them", "users",
                             *columns(result)], rows),
          f"Users (world ids) per {who}: {chosen}.",
          f"Means over the (hashtag, {who}) cells: all of them; those whose meaning is the tag's "
          "commoner reading in training (more of the training images labelled with the tag "
          "show it than show the other meaning); and those whose meaning is the rarer one:",
          sections.md_table(["cells", "count", *columns(result)], summary(result))]
  return "\n\n".join(text) + "\n"


def figure(result: dict, path: str) -> str:
  """Bars of every cell's rate: the runs and the image-only oracle."""
  names = result.get("tag_names") or [f"#{int(t)}" for t in result["tags"]]
  every = cells(result)
  labels = [f"{names[i]} / {group_name(result['reader'], g)}" for i, g in every]
  index = tuple(np.array(every).T)
  shown = [c for c in result["rates"] if c != ORACLE]
  return plots.bar_panels(
      path, [{"title": "", "labels": labels,
              "series": {c: column(result, c)[index] for c in shown}}],
      ylabel=f"share of the top {result['top']} showing the meaning", ylim=(0, 1.05),
      title="User-conditional retrieval of polysemous hashtags",
      panel_size=(min(40.0, max(8.0, 2.0 + 0.08 * len(labels) * len(shown))), 4.5))


def run(workdir: str, baseline: str, *, top: int = 10, out: str | None = None,
        users_per_group: int = 5, min_train_posts: int = 1, seed: int = 0) -> str:
  """Measures, writes OUT/conditional_retrieval.{md,png} (OUT default WORKDIR/figures) and
  returns the markdown."""
  result = measure(workdir, baseline, top=top, users_per_group=users_per_group,
                   min_train_posts=min_train_posts, seed=seed)
  out = out or os.path.join(workdir, "figures")
  os.makedirs(out, exist_ok=True)
  png = figure(result, os.path.join(out, "conditional_retrieval.png"))
  text = markdown(result, png)
  with open(os.path.join(out, "conditional_retrieval.md"), "w") as f:
    f.write(text)
  return text


def main(argv):
  del argv
  f = flags.FLAGS
  print(run(f.workdir, f.baseline, top=f.top, out=f.out, users_per_group=f.users_per_group,
            min_train_posts=f.min_train_posts, seed=f.seed), end="")


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("workdir", None, "A finished run of a user-specific model (it reads "
                      "user_index / user_meta).", required=True)
  flags.DEFINE_string("baseline", None, "A finished run of a user-agnostic model on the same "
                      "dataset.", required=True)
  flags.DEFINE_integer("top", 10, "Images retrieved per (hashtag, user).")
  flags.DEFINE_string("out", None, "Where conditional_retrieval.md and .png go (default: "
                      "WORKDIR/figures).")
  flags.DEFINE_integer("users_per_group", 5, "Users drawn per reader group (style group or "
                       "country); the rate is averaged over them.")
  flags.DEFINE_integer("min_train_posts", 1, "A drawn user has at least this many training "
                       "posts.")
  flags.DEFINE_integer("seed", 0, "Seed of the users' draw.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
