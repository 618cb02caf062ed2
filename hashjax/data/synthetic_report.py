"""Does a synthetic world carry the effects it should? Baselines and the oracle on its own posts.

    python -m hashjax.data.synthetic_report --preset=default --seed=0

Generates every post of a preset, splits it per-user temporally (Veit: each user's first 90% by
time to train) and user-disjointly (Denton: 80/20 of users), and reports P@1, R@10, A@10
(Denton's definitions) for rankings that see more and more of the truth:

  global        training tag counts (ignores image and user);
  user_freq     the user's own training tags by count, backing off to global;
  concept_nn    image only: nearest training centroid of the dominant concept -> that concept's
                training tag counts;
  oracle_image  p(y | post) averaged over random users (knows the image latent, not the user);
  oracle_swap   p(y | post) with the post's user replaced by a random other user;
  oracle        p(y | post): the ceiling.

The required order on the temporal split is global < user_freq < oracle with a clear gap to the
oracle (a frequency table must not solve the task), concept_nn >> global (the image matters) and
oracle > oracle_swap (the user matters). This module is numpy only and small enough for tests.
"""

import argparse
import time

import numpy as np

from hashjax.data import synthetic


def generate_all(world, user_ids=None):
  """Every post of `user_ids` (default all) as flat arrays, plus the tag lists."""
  user_ids = range(world.config.num_users) if user_ids is None else user_ids
  parts = [(u, world.generate_user_posts(u)) for u in user_ids]
  cat = lambda key: np.concatenate([p[key] for _, p in parts])
  return {"user": np.concatenate([np.full(len(p["timestamp"]), u) for u, p in parts]),
          "rank_in_user": np.concatenate([np.arange(len(p["timestamp"])) for _, p in parts]),
          "num_user_posts": np.concatenate([np.full(len(p["timestamp"]), len(p["timestamp"]))
                                            for _, p in parts]),
          "timestamp": cat("timestamp"), "features": cat("features"),
          "concept_ids": cat("concept_ids"), "concept_weights": cat("concept_weights"),
          "tags": [t for _, p in parts for t in p["tags"]],
          "captions": [c for _, p in parts for c in p["captions"]]}


def temporal_split(posts, train_fraction=0.9):
  """True for train: the first floor(0.9 n) posts of each user by time (at least one)."""
  n_train = np.maximum(1, np.floor(train_fraction * posts["num_user_posts"]))
  return posts["rank_in_user"] < n_train


def user_disjoint_split(posts, seed=0, train_fraction=0.8):
  """True for train: all posts of a random 80% of the users."""
  users = np.unique(posts["user"])
  train_users = np.random.default_rng(seed).permutation(users)[:int(train_fraction * len(users))]
  return np.isin(posts["user"], train_users)


def metrics(top, tags, k=10):
  """P@1, R@k, A@k of rankings top [N, >=k] against ground-truth tag lists (Denton Sec. 4.2).

  P@k = mean |top_k & GT| / k, R@k = mean |top_k & GT| / |GT|, A@k = mean 1[top_k & GT != {}].
  """
  width = max(len(t) for t in tags)
  gt = np.full((len(tags), width), -1)
  for i, t in enumerate(tags):
    gt[i, :len(t)] = t
  hits = (top[:, :k, None] == gt[:, None, :]).any(-1)
  return {"P@1": hits[:, 0].mean(), f"R@{k}": (hits.sum(1) / (gt >= 0).sum(1)).mean(),
          f"A@{k}": hits.any(1).mean()}


def top_k(scores, k=10):
  """Indices of the k largest scores per row, best first."""
  part = np.argpartition(-scores, k, axis=1)[:, :k]
  return np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), 1), 1)


def tag_counts(tags, num_tags):
  return np.bincount(np.concatenate(tags), minlength=num_tags).astype(np.float64)


def rank_global(train_tags, num_test, num_tags, k=10):
  counts = tag_counts(train_tags, num_tags)
  return np.broadcast_to(top_k(counts[None], k), (num_test, k))


def rank_by_key(train_keys, train_tags, test_keys, num_tags, k=10):
  """Rank by the training tag counts of posts sharing the key (user, concept...), backing off
  to global counts (scaled below one count, so they only break ties and fill empty rows)."""
  counts = tag_counts(train_tags, num_tags)
  backoff = 0.5 * counts / counts.max()
  top = np.empty((len(test_keys), k), np.int64)
  for key in np.unique(test_keys):
    scores = backoff.copy()
    for i in np.flatnonzero(train_keys == key):
      scores[train_tags[i]] += 1.0
    top[test_keys == key] = top_k(scores[None], k)[0]
  return top


def concept_centroids(features, dominant, num_concepts):
  """Mean training feature of posts per dominant concept, unit-normalised."""
  cent = np.zeros((num_concepts, features.shape[1]))
  np.add.at(cent, dominant, features)
  return cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)


def rank_oracle(world, users, concept_ids, concept_weights, k=10, chunk=1024):
  out = [top_k(world.true_tag_distribution(users[s:s + chunk], concept_ids[s:s + chunk],
                                           concept_weights[s:s + chunk]), k)
         for s in range(0, len(users), chunk)]
  return np.concatenate(out)


def rank_oracle_image(world, concept_ids, concept_weights, num_users=32, seed=0, k=10, chunk=256):
  """Rank by E_u p(y | u, latent) over `num_users` random users: the image-only ceiling."""
  rng = np.random.default_rng(seed)
  users = rng.choice(world.config.num_users, num_users, replace=False)
  out = []
  for s in range(0, len(concept_ids), chunk):
    c, w = concept_ids[s:s + chunk], concept_weights[s:s + chunk]
    p = sum(world.true_tag_distribution(np.full(len(c), u), c, w) for u in users)
    out.append(top_k(p, k))
  return np.concatenate(out)


def evaluate(world, posts, train, seed=0):
  """All rankings of the module docstring on the test posts (~train). Returns {name: metrics}."""
  test = ~train
  tr = np.flatnonzero(train)
  te = np.flatnonzero(test)
  tags = posts["tags"]
  train_tags, test_tags = [tags[i] for i in tr], [tags[i] for i in te]
  V, users = world.num_tags, posts["user"]
  dominant = posts["concept_ids"][:, 0]
  cent = concept_centroids(posts["features"][tr], dominant[tr], world.config.num_concepts)
  predicted = np.argmax(posts["features"][te] @ cent.T, axis=1)
  swapped = (users[te] + np.random.default_rng(seed).integers(1, world.config.num_users,
                                                              len(te))) % world.config.num_users
  c, w = posts["concept_ids"][te], posts["concept_weights"][te]
  rankings = {
      "global": rank_global(train_tags, len(te), V),
      "user_freq": rank_by_key(users[tr], train_tags, users[te], V),
      "concept_nn": rank_by_key(dominant[tr], train_tags, predicted, V),
      "oracle_image": rank_oracle_image(world, c, w, seed=seed),
      "oracle_swap": rank_oracle(world, swapped, c, w),
      "oracle": rank_oracle(world, users[te], c, w),
  }
  results = {name: metrics(top, test_tags) for name, top in rankings.items()}
  results["concept_nn"]["concept_accuracy"] = (predicted == dominant[te]).mean()
  return results


def summary(world, posts):
  """Corpus statistics: posts, tags per post, head share, share of each tag kind."""
  counts = tag_counts(posts["tags"], world.num_tags)
  head = np.sort(counts)[::-1]
  kinds = world.tag_kinds
  return {"posts": len(posts["tags"]), "users": world.config.num_users,
          "tags_per_post": counts.sum() / len(posts["tags"]),
          "top10_share": head[:10].sum() / counts.sum(),
          "top100_share": head[:100].sum() / counts.sum(),
          "unused_tags": int((counts == 0).sum()),
          "kind_share": {name: counts[kinds == i].sum() / counts.sum()
                         for i, name in enumerate(synthetic.KIND_NAMES)}}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="default", choices=sorted(synthetic.PRESETS))
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  t0 = time.time()
  world = synthetic.World.create(synthetic.PRESETS[args.preset], args.seed)
  posts = generate_all(world)
  print(f"generated in {time.time() - t0:.1f}s: {summary(world, posts)}")
  for split_name, train in [("temporal", temporal_split(posts)),
                            ("user_disjoint", user_disjoint_split(posts, args.seed))]:
    print(f"--- {split_name}: {train.sum()} train / {(~train).sum()} test posts")
    for name, m in evaluate(world, posts, train, args.seed).items():
      print(f"{name:>13}: " + "  ".join(f"{k} {v:.4f}" for k, v in m.items()))


if __name__ == "__main__":
  main()
