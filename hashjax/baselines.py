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

  def mean_distribution(self, users, weights, rows) -> np.ndarray:
    """sum_j weights[:, j] p(y | post, users[:, j]) / sum_j weights[:, j]; users [B, k]."""
    total = sum(self.distribution(users[:, j], rows) * weights[:, j, None]
                for j in range(users.shape[1]))
    return total / weights.sum(axis=1, keepdims=True)

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
    users = np.broadcast_to(self.users, (len(rows), len(self.users)))
    return self.mean_distribution(users, np.ones(users.shape), rows)[:, tag_start:tag_stop]


class OracleMetadataOnly(Oracle):
  """E[p(y | post latent, u') | u' looks like u in metadata]: the ceiling of a metadata model.

  A model that sees Denton's descriptor (age, gender, country, home GPS) cannot know a user's
  latent style group, tastes or habits, only what users with that metadata tend to have. This
  row averages the true distribution over the `num_users` users nearest in age among those with
  the user's gender, country and home city (GPS pins the city); the user is left out. When that
  group has no one else it widens to gender and country, then country, then everyone. The gap
  to the Oracle row is what metadata cannot reveal; the gap from a metadata model to this row is
  what it could.
  """
  name = "Oracle, metadata only"

  def __init__(self, dataset: PostDataset, num_users: int = 16):
    super().__init__(dataset)
    self.neighbours, self.weights = metadata_neighbours(self.world.users, num_users)

  def scores(self, batch, tag_start, tag_stop):
    users = np.asarray(batch["user_id"])
    return self.mean_distribution(self.neighbours[users], self.weights[users],
                                  np.asarray(batch["row"]))[:, tag_start:tag_stop]


def metadata_neighbours(users: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
  """For every user, up to k others alike in metadata (OracleMetadataOnly): ids and 0/1 weights.

  Returns neighbours [U, k] int64 (padding repeats a valid id) and weights [U, k] float64.
  """
  U = len(users["age"])
  neighbours, weights = np.zeros((U, k), np.int64), np.zeros((U, k))
  keys = [np.stack([users["gender"], users["country"], users["city"]], 1),
          np.stack([users["gender"], users["country"]], 1), users["country"][:, None],
          np.zeros((U, 1))]
  todo = np.ones(U, bool)
  for key in keys:
    _, block_of = np.unique(key, axis=0, return_inverse=True)
    block_of = block_of.reshape(-1)
    for block in np.unique(block_of[todo]):
      members = np.flatnonzero(block_of == block)
      if len(members) < 2:
        continue
      for u in members[todo[members]]:
        others = members[members != u]
        nearest = others[np.argsort(np.abs(users["age"][others] - users["age"][u]),
                                    kind="stable")[:k]]
        neighbours[u, :len(nearest)], neighbours[u, len(nearest):] = nearest, nearest[0]
        weights[u, :len(nearest)] = 1.0
        todo[u] = False
  if todo.any():
    raise ValueError("a metadata oracle needs at least two users")
  return neighbours, weights


def has_oracle(dataset: PostDataset) -> bool:
  from hashjax.data import build_synthetic
  return os.path.isdir(os.path.join(dataset.directory, build_synthetic.WORLD_DIR))


def reference_scorers(dataset: PostDataset) -> list[Scorer]:
  """The rows every results table carries: frequency baselines, then the oracle if known."""
  scorers: list[Scorer] = [GlobalFrequency(dataset), UserFrequency(dataset)]
  if has_oracle(dataset):
    scorers += [OracleImageOnly(dataset), OracleSwappedUser(dataset),
                OracleMetadataOnly(dataset), Oracle(dataset)]
  return scorers
