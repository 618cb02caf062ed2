"""Reference rankers every table reports: frequency baselines and the synthetic oracle.

A scorer maps a batch of posts (as read by PostDataset.read) and a range of tag ids to a score
matrix [B, tag_stop - tag_start]; higher ranks first. Scorers are evaluated in tag chunks by
hashjax.evaluate, so none of them ever builds a [num_posts, num_tags] matrix.
"""

import os
from typing import Any, Protocol

import numpy as np
import scipy.sparse

from hashjax.data.reader import PostDataset


class Scorer(Protocol):
  name: str

  def scores(self, batch: dict[str, Any], tag_start: int, tag_stop: int) -> np.ndarray:
    ...


class GlobalFrequency:
  """Ranks every post's tags by training-set frequency: s(post, y) = count_train(y)."""
  name = "Global frequency"

  def __init__(self, dataset: PostDataset):
    self.counts = dataset.tag_counts.astype(np.float64)

  def scores(self, batch, tag_start, tag_stop):
    row = self.counts[tag_start:tag_stop]
    return np.broadcast_to(row, (len(batch["user_id"]), len(row)))


class UserFrequency:
  """Ranks by the user's own training tag counts, backing off to global frequency.

  s(post, y) = count_train(user, y) + count_train(y) / (1 + max_y' count_train(y')), so the
  user's own counts decide and global frequency breaks ties (including among the tags the user
  never wrote). A user with no training posts (user-disjoint splits) gets the global ranking.
  """
  name = "User-specific frequency"

  def __init__(self, dataset: PostDataset):
    rows = dataset.split_rows("train")
    batch = dataset.read(rows, features=False)
    users, self._user_index = np.unique(batch["user_id"], return_inverse=True)
    post_of_tag = np.broadcast_to(np.arange(len(rows))[:, None], batch["tag_ids"].shape)
    mask = batch["tag_mask"]
    self.user_tag = scipy.sparse.csr_matrix(
        (np.ones(mask.sum()), (self._user_index[post_of_tag[mask]], batch["tag_ids"][mask])),
        shape=(len(users), dataset.num_tags))  # duplicates are summed: counts
    self.users = users
    counts = dataset.tag_counts.astype(np.float64)
    self.backoff = counts / (1.0 + counts.max())

  def scores(self, batch, tag_start, tag_stop):
    user_ids = np.asarray(batch["user_id"])
    pos = np.searchsorted(self.users, user_ids).clip(0, max(len(self.users) - 1, 0))
    known = (self.users[pos] == user_ids) if len(self.users) else np.zeros(len(user_ids), bool)
    own = self.user_tag[pos][:, tag_start:tag_stop].toarray()
    own[~known] = 0.0
    return own + self.backoff[tag_start:tag_stop]


class Oracle:
  """Ranks by the generator's true p(y | post): the ceiling on a synthetic dataset.

  Needs the world saved by hashjax.data.build_synthetic next to the data (DIR/world/) and each
  post's latent concepts (stored in row order).
  """
  name = "Oracle (true distribution)"

  def __init__(self, dataset: PostDataset):
    from hashjax.data import build_synthetic  # only synthetic datasets have an oracle
    self.world, self.concept_ids, self.concept_weights = build_synthetic.load_oracle(
        dataset.directory)
    self.num_users = self.world.config.num_users

  def distribution(self, user_ids, rows) -> np.ndarray:
    return self.world.true_tag_distribution(user_ids, self.concept_ids[rows],
                                            self.concept_weights[rows])

  def scores(self, batch, tag_start, tag_stop):
    return self.distribution(batch["user_id"], batch["row"])[:, tag_start:tag_stop]


class OracleSwappedUser(Oracle):
  """The true distribution of the post's image latent, but for another (fixed, random) user.

  The gap to the Oracle row is what knowing the right user is worth at the ceiling.
  """
  name = "Oracle, user swapped"

  def scores(self, batch, tag_start, tag_stop):
    rows = np.asarray(batch["row"], np.int64)
    shift = 1 + (rows * 2654435761) % (self.num_users - 1)  # a fixed, never-zero shift per post
    other = (np.asarray(batch["user_id"]) + shift) % self.num_users
    return self.distribution(other, rows)[:, tag_start:tag_stop]


class OracleImageOnly(Oracle):
  """E_u p(y | post latent, u) over `num_users` random users: a user-agnostic ceiling."""
  name = "Oracle, image only"

  def __init__(self, dataset: PostDataset, num_users: int = 16, seed: int = 0):
    super().__init__(dataset)
    self.users = np.random.default_rng(seed).choice(self.num_users, num_users, replace=False)

  def scores(self, batch, tag_start, tag_stop):
    rows = np.asarray(batch["row"])
    total = sum(self.distribution(np.full(len(rows), u), rows) for u in self.users)
    return total[:, tag_start:tag_stop] / len(self.users)


def has_oracle(dataset: PostDataset) -> bool:
  from hashjax.data import build_synthetic
  return os.path.isdir(os.path.join(dataset.directory, build_synthetic.WORLD_DIR))


def reference_scorers(dataset: PostDataset) -> list[Scorer]:
  """The rows every results table carries: frequency baselines, then the oracle if known."""
  scorers: list[Scorer] = [GlobalFrequency(dataset), UserFrequency(dataset)]
  if has_oracle(dataset):
    scorers += [OracleImageOnly(dataset), OracleSwappedUser(dataset), Oracle(dataset)]
  return scorers
