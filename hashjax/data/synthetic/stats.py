"""Corpus statistics of a synthetic world's posts (generated in memory; for tests and tuning).

The baselines and the oracle on a built dataset are reported by `python -m hashjax.main
--config=experiments/baselines.py`, through the same metrics every model uses.
"""

import numpy as np

from hashjax.data.synthetic import vocab


def generate_all(world, user_ids=None):
  """Every post of `user_ids` (default all) as flat arrays, plus the tag lists."""
  user_ids = range(world.config.num_users) if user_ids is None else user_ids
  parts = [(u, world.generate_user_posts(u)) for u in user_ids]
  cat = lambda key: np.concatenate([p[key] for _, p in parts])
  return {"user": np.concatenate([np.full(len(p["timestamp"]), u) for u, p in parts]),
          "timestamp": cat("timestamp"), "features": cat("features"),
          "concept_ids": cat("concept_ids"), "concept_weights": cat("concept_weights"),
          "tags": [t for _, p in parts for t in p["tags"]],
          "captions": [c for _, p in parts for c in p["captions"]]}


def summary(world, posts):
  """Corpus statistics: posts, tags per post, head share, share of each tag kind."""
  counts = np.bincount(np.concatenate(posts["tags"]), minlength=world.num_tags).astype(np.float64)
  head = np.sort(counts)[::-1]
  kinds = world.tag_kinds
  return {"posts": len(posts["tags"]), "users": world.config.num_users,
          "tags_per_post": counts.sum() / len(posts["tags"]),
          "top10_share": head[:10].sum() / counts.sum(),
          "top100_share": head[:100].sum() / counts.sum(),
          "unused_tags": int((counts == 0).sum()),
          "kind_share": {name: counts[kinds == i].sum() / counts.sum()
                         for i, name in enumerate(vocab.KIND_NAMES)}}
