"""Train / val / test splits shared by every converter (chosen at build time, stored per row).

  user_disjoint: users are shuffled (seeded) and divided 80/10/10 into train/val/test users
    (Denton et al.: test users are never seen in training).
  user_disjoint_70_10_20: the same, 70/10/20 (Durand et al.).
  temporal: each user's posts in time order; the first 90% (at least one post) train, the rest
    split in half between val and test, later posts to test (Veit et al.).
"""

import numpy as np

from hashjax.data import format as fmt

USER_DISJOINT_FRACTIONS = {"user_disjoint": (0.8, 0.1, 0.1),
                           "user_disjoint_70_10_20": (0.7, 0.1, 0.2)}
TEMPORAL_TRAIN_FRACTION = 0.9


def temporal_split(num_posts: int) -> np.ndarray:
  """Split codes for one user's posts in time order."""
  n_train = max(1, int(np.floor(TEMPORAL_TRAIN_FRACTION * num_posts)))
  n_val = (num_posts - n_train) // 2
  codes = np.full(num_posts, fmt.SPLIT_CODES["test"], np.int8)
  codes[:n_train] = fmt.SPLIT_CODES["train"]
  codes[n_train:n_train + n_val] = fmt.SPLIT_CODES["val"]
  return codes


def is_user_disjoint(scheme: str) -> bool:
  return scheme in USER_DISJOINT_FRACTIONS


def user_disjoint_split(num_users: int, seed: int, scheme: str = "user_disjoint") -> np.ndarray:
  """A split code per user: a seeded partition of the users (80/10/10 or the scheme's)."""
  order = np.random.default_rng([seed, 0x5917]).permutation(num_users)
  bounds = np.round(np.cumsum(USER_DISJOINT_FRACTIONS[scheme]) * num_users).astype(int)
  codes = np.empty(num_users, np.int8)
  for code, (lo, hi) in enumerate(zip(np.r_[0, bounds[:-1]], bounds)):
    codes[order[lo:hi]] = code
  return codes
