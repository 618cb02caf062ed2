"""The synthetic oracle and its diagnostics: ranking by the generator's true p(y | post).

Only synthetic datasets have one: the world is saved beside the data (DIR/world/), with each
post's latent concepts, so the true hashtag distribution of every post can be recomputed.
"""

import os

import numpy as np

from hashjax.data.reader import PostDataset
from hashjax.data.synthetic import build


def has_oracle(dataset: PostDataset) -> bool:
  return os.path.isdir(os.path.join(dataset.directory, build.WORLD_DIR))


class Oracle:
  """Ranks by the generator's true p(y | post): the ceiling on a synthetic dataset.

  Needs the world saved by hashjax.data.build_synthetic next to the data (DIR/world/) and each
  post's latent concepts (stored in row order).
  """
  name = "Oracle (true distribution)"
  fields = ("user_id",)

  def __init__(self, dataset: PostDataset):
    self.world, self.concept_ids, self.concept_weights = build.load_oracle(
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


def oracle_scorers(dataset: PostDataset) -> list:
  """The oracle rows of every table on synthetic data, diagnostics first."""
  return [OracleImageOnly(dataset), OracleSwappedUser(dataset), OracleMetadataOnly(dataset),
          Oracle(dataset)]
