r"""How popular are the hashtags a finished run ranks first? One line per run, on its test split.

  python -m hashjax.tools.top_tag_popularity --workdir=runs/veit_mcll --workdir=runs/veit_tensor

Tag ids are training-frequency ranks (the writer numbers hashtags by training count, 0 the most
frequent), so the id of a post's top-1 hashtag is its popularity rank. Printed per run: test
A@1, the median rank of the top-1 hashtags, the share of them among the 100 most frequent, the
same median for the posts' true hashtags, and how many distinct hashtags are ever ranked first.
A model trained against in-batch negatives only (Veit et al.'s triplet loss) sees a hashtag as a
negative about as often as it is some post's positive, so rare hashtags are seldom pushed down;
this tool measures whether its first choices drift towards them.
"""

from absl import app, flags
import numpy as np

from hashjax.eval import evaluate
from hashjax.tools import runs


def define_flags() -> None:
  flags.DEFINE_multi_string("workdir", None, "A finished run's workdir (repeat for several).",
                            required=True)
  flags.DEFINE_string("split", "test", "Which split to score.")


def top1_popularity(scorer, dataset, split: str = "test", keep=None,
                    batch_size: int = 1024) -> dict[str, float]:
  """A@1 and the popularity of the top-1 hashtags over a split (module docstring)."""
  out = evaluate.predict_top_k(scorer, dataset, split, k=1, batch_size=batch_size, keep=keep)
  top, true_ids, true_mask = out["pred_ids"][:, 0], out["true_ids"], out["true_mask"]
  return {"A@1": float(((true_ids == top[:, None]) & true_mask).any(-1).mean()),
          "median_rank": float(np.median(top)), "share_top100": float(np.mean(top < 100)),
          "true_median_rank": float(np.median(true_ids[true_mask])),
          "distinct": int(len(np.unique(top)))}


def main(argv):
  del argv
  for workdir in flags.FLAGS.workdir:
    run = runs.load_run(workdir)
    s = top1_popularity(run.scorer(), run.dataset, flags.FLAGS.split, keep=run.keep)
    print(f"{run.metrics['model']}: A@1 {100 * s['A@1']:.2f}; top-1 hashtags' frequency rank "
          f"median {s['median_rank']:.0f} (true hashtags' {s['true_median_rank']:.0f}), "
          f"{100 * s['share_top100']:.0f}% among the 100 most frequent, {s['distinct']} distinct "
          f"({workdir})")


if __name__ == "__main__":
  define_flags()
  app.run(main)
