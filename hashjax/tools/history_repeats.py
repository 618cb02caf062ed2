r"""How often a post's hashtag is one its user already wrote: the reach of a copy mechanism.

For each hashtag assignment (post p, tag y in H_p) of a split,

    repeat(p, y) = 1[y in H_q for some earlier post q of p's user]

where "earlier" is any post of the user before p in the dataset (rows are sorted by user, then
time), in any split: exactly the history a Durand model reads (history="full"). Reported
separately for the seen hashtags (training count > 0) and the unseen ones,

    share(kind) = sum over assignments of that kind of repeat(p, y) / #assignments of that kind.

A model that ranks the tags of the user's history high can rank an unseen tag without knowing
anything about it: its row need not be trained, only be the one the history fed in.

  python -m hashjax.tools.history_repeats --dataset=DIR [--split=test]
"""

from __future__ import annotations

import json

from absl import app, flags
import numpy as np

from hashjax.data.reader import PostDataset


def repeat_flags(users: np.ndarray, tag_ids: np.ndarray, tag_mask: np.ndarray,
                 score: np.ndarray) -> np.ndarray:
  """bool [N, T]: whether tag slot (i, j) repeats a tag of an earlier row of the same user.

  users [N] and tag_ids / tag_mask [N, T] are the rows in (user, time) order; only rows with
  score[i] get flags (the others are history only), padded slots are False.
  """
  out = np.zeros(tag_ids.shape, bool)
  written: dict[int, set[int]] = {}
  for i, user in enumerate(users.tolist()):
    tags = tag_ids[i][tag_mask[i]].tolist()
    have = written.setdefault(user, set())
    if score[i]:
      out[i, np.flatnonzero(tag_mask[i])] = [t in have for t in tags]
    have.update(tags)
  return out


def measure(dataset: PostDataset, split: str = "test") -> dict:
  """{"seen"/"unseen": {"assignments", "repeats", "share"}} over the split (docstring)."""
  posts = dataset.read(np.arange(dataset.num_posts), fields=())
  in_split = np.zeros(dataset.num_posts, bool)
  in_split[dataset.split_rows(split)] = True
  repeats = repeat_flags(dataset.user_index_of_row, posts["tag_ids"], posts["tag_mask"],
                         in_split)
  mask = posts["tag_mask"] & in_split[:, None]
  seen = (np.asarray(dataset.tag_counts) > 0)[posts["tag_ids"]]
  out = {"dataset": dataset.directory, "split": split}
  for kind, of_kind in (("seen", seen), ("unseen", ~seen)):
    n, r = int((mask & of_kind).sum()), int((repeats & of_kind).sum())
    out[kind] = {"assignments": n, "repeats": r, "share": r / n if n else float("nan")}
  return out


def main(argv):
  del argv
  result = measure(PostDataset(flags.FLAGS.dataset), flags.FLAGS.split)
  for kind in ("seen", "unseen"):
    k = result[kind]
    print(f"{kind}: {k['repeats']:,} of {k['assignments']:,} {result['split']} assignments "
          f"({100 * k['share']:.1f}%) repeat a hashtag of the user's earlier posts")
  if flags.FLAGS.out:
    with open(flags.FLAGS.out, "w") as f:
      json.dump(result, f, indent=2)


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("dataset", None, "Dataset directory.", required=True)
  flags.DEFINE_enum("split", "test", ["train", "val", "test"], "The split's assignments.")
  flags.DEFINE_string("out", None, "Where to write the counts as JSON.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
