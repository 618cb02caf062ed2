r"""Checks every record of a dataset directory; exits non-zero naming the first bad one.

  python -m data_prep.validate --dataset=DIR

What is checked: hashjax/data/reader.py (opening, every batch, and PostDataset.validate's scans).
A bad dataset is a one-line message naming the file and the record, and exit status 1.
"""

import time

from absl import app, flags

from hashjax.data import format as fmt
from hashjax.data.reader import PostDataset


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("dataset", None, "Dataset directory.", required=True)


def validate(directory: str) -> str:
  """Validates the dataset (raising DatasetError) and returns the summary line."""
  start = time.time()
  dataset = PostDataset(directory)
  n = dataset.validate()
  meta = dataset.metadata
  return (f"{directory}: {n} posts OK ({meta['counts']}), {meta['num_tags']} hashtags, "
          f"checked in {time.time() - start:.1f}s; build report: {meta['build_report']}")


def main(argv):
  del argv
  try:
    print(validate(flags.FLAGS.dataset))
  except fmt.DatasetError as e:  # the data is bad, not the code: the message, no traceback
    raise SystemExit(f"invalid dataset: {e}") from e


if __name__ == "__main__":
  define_flags()
  app.run(main)
