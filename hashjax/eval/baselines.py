"""Frequency baselines: the reference rows every table reports, on any dataset.

Like every scorer (hashjax.eval.evaluate.Scorer), a baseline maps a batch of posts and a range
of tag ids to a score matrix [B, tag_stop - tag_start]; higher ranks first. Scorers are
evaluated in tag chunks, so none of them ever builds a [num_posts, num_tags] matrix.
"""

import numpy as np
import scipy.sparse

from hashjax.data.reader import PostDataset
from hashjax.eval import oracles


class GlobalFrequency:
  """Ranks every post's tags by training-set frequency: s(post, y) = count_train(y)."""
  name = "Global frequency"
  fields = ()

  def __init__(self, dataset: PostDataset):
    self.counts = dataset.tag_counts.astype(np.float64)

  def scores(self, batch, tag_start, tag_stop):
    row = self.counts[tag_start:tag_stop]
    return np.broadcast_to(row, (len(batch["row"]), len(row)))


class UserFrequency:
  """Ranks by the user's own training tag counts, backing off to global frequency.

  s(post, y) = count_train(user, y) + count_train(y) / (1 + max_y' count_train(y')), so the
  user's own counts decide and global frequency breaks ties (including among the tags the user
  never wrote). A user with no training posts (user-disjoint splits) gets the global ranking.
  """
  name = "User-specific frequency"
  fields = ("user_id",)

  def __init__(self, dataset: PostDataset):
    rows = dataset.split_rows("train")
    batch = dataset.read(rows, fields=("user_id", "tag_ids", "tag_mask"))
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


def reference_scorers(dataset: PostDataset, keep: np.ndarray | None = None) -> list:
  """The rows every results table carries: frequency baselines, then the oracle if known.

  keep: the balanced distribution's keep probabilities (tag_distribution.keep_probabilities),
  or None for the natural one. The frequency baselines rank the same either way; the oracle
  rows rank by p(y) keep(y), the probability that y survives in the thinned truth.
  """
  scorers = [GlobalFrequency(dataset), UserFrequency(dataset)]
  if oracles.has_oracle(dataset):
    scorers += oracles.oracle_scorers(dataset, keep)
  return scorers
