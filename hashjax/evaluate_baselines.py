r"""Evaluates the frequency baselines (and the oracle, on synthetic data) on a dataset.

  python -m hashjax.evaluate_baselines --dataset=DIR --split=test --out=DIR/baselines.json

Prints a table in the papers' format (P@1, R@10, A@10) and writes all metrics as JSON.
"""

from absl import app, flags

from hashjax import baselines, evaluate
from hashjax.data.reader import PostDataset

_DATASET = flags.DEFINE_string("dataset", None, "Dataset directory.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to evaluate.")
_OUT = flags.DEFINE_string("out", None, "Where to write the metrics as JSON.")


def main(argv):
  del argv
  dataset = PostDataset(_DATASET.value)
  results = evaluate.evaluate_scorers(baselines.reference_scorers(dataset), dataset, _SPLIT.value)
  print(evaluate.format_table(results))
  if _OUT.value:
    evaluate.write_json(_OUT.value, {"dataset": _DATASET.value, "split": _SPLIT.value,
                                     "results": results})


if __name__ == "__main__":
  app.run(main)
