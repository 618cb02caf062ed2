r"""Where a trained model's first-ranked hashtags come from, by the synthetic world's tag kinds.

P@1 is one number; on synthetic data every tag has a known kind (concept synonym, polysemous,
city, country, social, generic, tail), so P@1 splits exactly into what each kind contributes:

    share(kind) = #{test posts whose top-1 tag is of that kind} / N
    P@1(kind)   = #{test posts whose top-1 tag is of that kind and is a true tag} / N

with N the number of scored test posts; P@1 = sum over kinds of P@1(kind). Two models with the
same P@1 can get it from different kinds (a model that puts a popular social tag first for every
portrait, another that names the pictured concept in the user's words).

  python -m hashjax.tools.tag_kind_report --workdir=runs/denton

reads the run's config from its metrics.json, restores the parameters that were tested (the best
validation step) and scores the test split the way the run did (natural or balanced).
"""

from absl import app, flags
import numpy as np

from hashjax.data.synthetic import build, vocab
from hashjax.eval import evaluate, oracles
from hashjax.tools import runs


def top1_by_kind(pred_ids: np.ndarray, true_ids: np.ndarray, true_mask: np.ndarray,
                 tag_kinds: np.ndarray) -> dict[str, dict[str, float]]:
  """{kind: {"share", "P@1"}} as fractions of all posts (module docstring); pred_ids [N, >=1]."""
  top1 = pred_ids[:, 0]
  hit = ((true_ids == top1[:, None]) & true_mask).any(axis=1)
  kind_of_top1 = tag_kinds[top1]
  return {name: {"share": float(np.mean(kind_of_top1 == code)),
                 "P@1": float(np.mean(hit & (kind_of_top1 == code)))}
          for code, name in enumerate(vocab.KIND_NAMES)}


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
  run = runs.load_run(workdir)
  if not oracles.has_oracle(run.dataset):
    raise ValueError(f"{run.dataset.directory} has no world/: tag kinds exist only for "
                     "synthetic data")
  top = evaluate.predict_top_k(run.scorer(), run.dataset, "test", k=1, keep=run.keep,
                               batch_size=run.config.eval.batch_size)
  kinds = build.load_world(run.dataset.directory).tag_kinds
  return top1_by_kind(top["pred_ids"], top["true_ids"], top["true_mask"], kinds)


def main(argv):
  del argv
  print(format_kind_table(report_run(flags.FLAGS.workdir)))


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("workdir", None, "A finished run's workdir.", required=True)


if __name__ == "__main__":
  define_flags()
  app.run(main)
