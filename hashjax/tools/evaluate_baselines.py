r"""Evaluates the frequency baselines (and the oracle, on synthetic data) on a dataset.

  python -m hashjax.tools.evaluate_baselines --dataset=DIR --split=test --out=DIR/baselines.json
  python -m hashjax.tools.evaluate_baselines --dataset=DIR --dist=balanced

Prints a table in the papers' format (P@1, R@10, A@10) and writes all metrics as JSON.
"""

import time

from absl import app, flags

from hashjax.data import tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.eval import baselines, evaluate, report


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("dataset", None, "Dataset directory.", required=True)
  flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to evaluate.")
  flags.DEFINE_enum("dist", "natural", list(tag_distribution.DISTRIBUTIONS),
                    "Hashtag distribution of the truth (balanced: Denton's downsampling).")
  flags.DEFINE_string("out", None, "Where to write the metrics as JSON.")


def main(argv):
  del argv
  f = flags.FLAGS
  dataset = PostDataset(f.dataset)
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, f.dist)
  start = time.time()
  results = evaluate.evaluate_scorers(baselines.reference_scorers(dataset, keep), dataset,
                                      f.split, keep=keep)
  print(report.format_table(results))
  print(f"evaluated in {time.time() - start:.1f}s")
  if f.out:
    report.write_json(f.out, {"dataset": f.dataset, "split": f.split, "dist": f.dist,
                              "results": results})


if __name__ == "__main__":
  define_flags()
  app.run(main)
