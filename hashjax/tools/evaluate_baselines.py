r"""Evaluates the frequency baselines (and the oracle, on synthetic data) on a dataset.

  python -m hashjax.tools.evaluate_baselines --dataset=DIR --split=test --out=DIR/baselines.json

Prints a table in the papers' format (P@1, R@10, A@10) and writes all metrics as JSON.
"""

from absl import app, flags

from hashjax.data.reader import PostDataset
from hashjax.eval import baselines, evaluate, report


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("dataset", None, "Dataset directory.", required=True)
  flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to evaluate.")
  flags.DEFINE_string("out", None, "Where to write the metrics as JSON.")


def main(argv):
  del argv
  f = flags.FLAGS
  dataset = PostDataset(f.dataset)
  results = evaluate.evaluate_scorers(baselines.reference_scorers(dataset), dataset, f.split)
  print(report.format_table(results))
  if f.out:
    report.write_json(f.out, {"dataset": f.dataset, "split": f.split, "results": results})


if __name__ == "__main__":
  define_flags()
  app.run(main)
