r"""Checks every record of a dataset directory; exits non-zero naming the first bad one.

  python -m data_prep.validate --dataset=DIR
"""

import time

from absl import app, flags

from hashjax.data.reader import PostDataset

def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("dataset", None, "Dataset directory.", required=True)


def main(argv):
  del argv
  start = time.time()
  dataset = PostDataset(flags.FLAGS.dataset)
  n = dataset.validate()
  meta = dataset.metadata
  print(f"{flags.FLAGS.dataset}: {n} posts OK ({meta['counts']}), {meta['num_tags']} hashtags, "
        f"checked in {time.time() - start:.1f}s; build report: {meta['build_report']}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
