r"""Where a trained model's first-ranked hashtags come from, by the synthetic world's tag kinds.

P@1 is one number; on synthetic data every tag has a known kind (concept synonym, polysemous,
city, country, social, generic, tail), so P@1 splits exactly into what each kind contributes:

    share(kind) = #{test posts whose top-1 tag is of that kind} / N
    P@1(kind)   = #{test posts whose top-1 tag is of that kind and is a true tag} / N

with N the number of scored test posts; P@1 = sum over kinds of P@1(kind). Two models with the
same P@1 can get it from different kinds (a model that puts a popular social tag first for every
portrait, another that names the pictured concept in the user's words).

  python -m hashjax.tag_kind_report --workdir=runs/denton

reads the run's config from its metrics.json, restores the parameters that were tested (the best
validation step) and scores the test split the way the run did (natural or balanced).
"""

import json
import os

from absl import app, flags
import jax
import ml_collections
import numpy as np

from hashjax import evaluate, models, train
from hashjax.data import synthetic, tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.models.base import Dims


def top1_by_kind(pred_ids: np.ndarray, true_ids: np.ndarray, true_mask: np.ndarray,
                 tag_kinds: np.ndarray) -> dict[str, dict[str, float]]:
  """{kind: {"share", "P@1"}} as fractions of all posts (module docstring); pred_ids [N, >=1]."""
  top1 = pred_ids[:, 0]
  hit = ((true_ids == top1[:, None]) & true_mask).any(axis=1)
  kind_of_top1 = tag_kinds[top1]
  return {name: {"share": float(np.mean(kind_of_top1 == code)),
                 "P@1": float(np.mean(hit & (kind_of_top1 == code)))}
          for code, name in enumerate(synthetic.KIND_NAMES)}


def format_kind_table(rows: dict[str, dict[str, float]]) -> str:
  """Markdown table, one row per kind, in percent."""
  lines = ["| Tag kind | share of top-1 | P@1 from it |", "| --- | ---: | ---: |"]
  lines += [f"| {kind} | {100 * v['share']:.1f} | {100 * v['P@1']:.2f} |"
            for kind, v in rows.items()]
  total = sum(v["P@1"] for v in rows.values())
  lines.append(f"| all | 100.0 | {100 * total:.2f} |")
  return "\n".join(lines)


def report_run(workdir: str) -> dict[str, dict[str, float]]:
  """top1_by_kind for the tested parameters of a finished training run in `workdir`."""
  metrics_path = os.path.join(workdir, "metrics.json")
  if not os.path.exists(metrics_path):
    raise FileNotFoundError(f"{metrics_path} not found: {workdir} is not a finished run")
  with open(metrics_path) as f:
    run = json.load(f)
  config = ml_collections.ConfigDict(run["config"])
  dataset = PostDataset(run["dataset"])  # the directory the run read, wherever it was
  world_dir = os.path.join(dataset.directory, "world")
  if not os.path.isdir(world_dir):
    raise ValueError(f"{dataset.directory} has no world/: tag kinds exist only for synthetic data")
  model = models.make_model(config.model.name, **config.model.kwargs)
  target = model.init(jax.random.PRNGKey(0),
                      Dims(dataset.feature_dim, dataset.user_meta_dim, dataset.num_tags))
  checkpoints = train.Checkpoints(workdir)
  step = checkpoints.latest_step()
  if step is None:
    raise FileNotFoundError(f"{workdir} has no checkpoints")
  params = checkpoints.restore_selected(step, target)
  checkpoints.close()
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, config.data.dist)
  scorer = evaluate.TwoTowerScorer(models.describe(config.model), model, params)
  top = evaluate.predict_top_k(scorer, dataset, "test", k=1, keep=keep,
                               batch_size=config.eval.batch_size)
  kinds = synthetic.World.load(world_dir).tag_kinds
  return top1_by_kind(top["pred_ids"], top["true_ids"], top["true_mask"], kinds)


def main(argv):
  del argv
  print(format_kind_table(report_run(flags.FLAGS.workdir)))


if __name__ == "__main__":
  # Defined here, not at import: hashjax.main (imported with this module in one test session)
  # owns a --workdir flag too.
  flags.DEFINE_string("workdir", None, "A finished run's workdir.", required=True)
  app.run(main)
