"""A small random dataset written through DatasetWriter, for tests that need one on disk."""

import os

import numpy as np

from hashjax.data import format as fmt
from hashjax.data.writer import DatasetWriter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_random_dataset(directory, *, num_users=12, feature_dim=8, num_tags=20, user_meta_dim=3,
                         posts_per_shard=16, has_captions=False, feature_dtype="float32",
                         seed=0, split_scheme="temporal"):
  """Writes a dataset and returns (order, posts) with posts as written (old tag ids)."""
  rng = np.random.default_rng(seed)
  writer = DatasetWriter(directory, feature_dim=feature_dim, num_tags=num_tags,
                         user_meta_dim=user_meta_dim, split_scheme=split_scheme,
                         posts_per_shard=posts_per_shard, has_captions=has_captions,
                         caption_vocab_size=30 if has_captions else 0,
                         feature_dtype=feature_dtype)
  posts = []
  post_id = 0
  for user in range(num_users):
    n = int(rng.integers(1, 9))
    times = np.sort(rng.choice(10_000, n, replace=False))
    tags = [rng.choice(num_tags, int(rng.integers(1, 5)), replace=False).astype(np.int32)
            for _ in range(n)]
    captions = [rng.integers(0, 30, int(rng.integers(0, 6))) for _ in range(n)]
    block = dict(post_id=np.arange(post_id, post_id + n) * 7 + 3, user_id=np.full(n, user * 10),
                 timestamp=times, features=rng.random((n, feature_dim)).astype(np.float32),
                 split=_split_codes(n, user, split_scheme),
                 user_meta=rng.random((n, user_meta_dim)).astype(np.float32), tags=tags,
                 captions=captions if has_captions else None)
    writer.add_block(**block)
    posts.append(block)
    post_id += n
  vocab = [f"tag{i}" for i in range(num_tags)]
  order = writer.finalize(vocab=vocab, word_vectors=np.eye(num_tags, 4, dtype=np.float32),
                          caption_vocab=[f"w{i}" for i in range(30)] if has_captions else None,
                          provenance={"generator": "tests"})
  return order, posts


def _split_codes(n: int, user: int, split_scheme: str) -> np.ndarray:
  """temporal: a user's last third is test; user_disjoint: every third user is a test user."""
  if split_scheme == "temporal":
    return np.repeat([fmt.SPLIT_CODES["train"], fmt.SPLIT_CODES["test"]], [n - n // 3, n // 3])
  return np.full(n, fmt.SPLIT_CODES["test" if user % 3 == 2 else "train"])


def tiny_train_config(experiment: str = "denton", arg: str = "", *, steps: int = 30, **overrides):
  """An experiment's config shrunk for a test: tiny world, short run, frequent evaluations."""
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f"experiments.{experiment}")
  config = module.get_config(",".join(filter(None, ["preset=tiny", arg])))
  config.batch_size, config.train_steps = 32, steps
  config.log_every, config.eval_every, config.checkpoint_every = 5, 10, 10
  if config.loss.name == "warp":
    config.loss.max_trials = 50
  for key, value in overrides.items():
    config[key] = value
  return config
