r"""User-conditional hashtag-to-image retrieval (Veit et al., Fig. 1), scored against the world.

A polysemous hashtag of the synthetic world names one concept for some readers and another for
the rest (hashjax/data/synthetic/vocab.py; the reader is the latent style group, or the country
with polysemy_by="country"). Retrieval with such a tag as the query, for a given user, should
return images of the concept the tag means *for that user*. The world knows every test image's
latent concepts and every user's reading, so that can be counted:

  for a polysemous tag t, a user u of reader group g, and a model's score s(t, u, image):
    retrieve the top N candidate images by s(t, u, .) (ties: the earlier candidate first);
    rate(t, u) = share of the N whose latent concepts include m(t, g), the concept t means for g;
  rate(t, g) = mean of rate(t, u) over the chosen users of g.

An image "shows" concept c when c is one of its 1-3 latent concepts, whatever its weight. A
user-agnostic model ranks the images the same way for everyone (its score is called with
user=None, once per tag), so its one top N is compared against each group's meaning in turn:
it can serve every group only if the retrieved images show both meanings at once.

References that need no model (`base_share`, `tagged_share`), and two oracles from the world's
own distributions (`oracle_score`: p(t | image, u) for the chosen user, the ranking that knows
the reader; `image_only_score`: p(t | image) mixed over the training users as
hashjax.eval.oracles.OracleImageOnly mixes it, the ranking of an ideal user-agnostic model).
The command that loads runs and feeds these is hashjax/tools/conditional_retrieval.py.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hashjax.data.synthetic import vocab as synthetic_vocab
from hashjax.eval import oracles

# score(tag, user, rows) -> [len(rows)] scores of the candidate images `rows` for the tag as
# `user` would use it (user None: a user-agnostic ranking).
ScoreFn = Callable[[int, "int | None", np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------
# The measure.


def shows(concept_ids, concept: int) -> np.ndarray:
  """[N] bool: whether each image's latent concepts ([N, K], -1 padding) include `concept`."""
  c = np.asarray(concept_ids)
  if concept < 0:
    raise ValueError(f"concept must be >= 0, got {concept}")
  return (c == concept).any(axis=1)


def top_n(scores, n: int) -> np.ndarray:
  """Positions of the n highest scores (all if fewer), best first; ties: earlier first."""
  scores = np.asarray(scores, np.float64).reshape(-1)
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  return np.argsort(-scores, kind="stable")[:n]


def rate(top, concept_ids, concept: int) -> float:
  """Share of the retrieved positions `top` whose image shows `concept`."""
  top = np.asarray(top)
  if top.size == 0:
    return float("nan")
  return float(shows(np.asarray(concept_ids)[top], concept).mean())


def retrieval_rates(score: ScoreFn, tags, users, user_group, meanings, rows, concept_ids,
                    top: int, *, user_agnostic: bool = False) -> dict[str, np.ndarray]:
  """The rate of the module docstring for every (tag, group) with chosen users.

  tags [T]: the polysemous tags; users [U]: the chosen users and user_group [U] their groups
  (column indices of meanings); meanings [T, G]: the concept each tag means for each group;
  rows [N]: the candidate images (passed to `score`); concept_ids [N, K]: their latent
  concepts (-1 padding); top: N retrieved. With user_agnostic, score is called once per tag
  with user None and that ranking is scored against every group's meaning.

  Returns {"rate" [T, G] (NaN: a group without chosen users), "per_user" [T, U],
  "retrieved" [T, U, n] (positions into rows, best first; for user_agnostic the same for
  every user)}.
  """
  tags, users = np.asarray(tags), np.asarray(users)
  user_group, meanings = np.asarray(user_group), np.asarray(meanings)
  rows, concept_ids = np.asarray(rows), np.asarray(concept_ids)
  if meanings.shape[0] != len(tags) or len(user_group) != len(users):
    raise ValueError(f"meanings {meanings.shape} must have a row per tag ({len(tags)}), and "
                     f"user_group ({len(user_group)}) an entry per user ({len(users)})")
  if len(concept_ids) != len(rows):
    raise ValueError(f"concept_ids has {len(concept_ids)} images, rows {len(rows)}")
  n = min(top, len(rows))
  per_user = np.full((len(tags), len(users)), np.nan)
  retrieved = np.zeros((len(tags), len(users), n), np.int64)
  if user_agnostic:  # one ranking per tag, whoever asks
    for i, tag in enumerate(tags.tolist()):
      retrieved[i] = _ranking(score, tag, None, rows, top)[None]
  else:  # user-major: a score function may compute a user's scores of every tag at once
    for j, user in enumerate(users.tolist()):
      for i, tag in enumerate(tags.tolist()):
        retrieved[i, j] = _ranking(score, tag, user, rows, top)
  for i in range(len(tags)):
    for j, group in enumerate(user_group.tolist()):
      per_user[i, j] = rate(retrieved[i, j], concept_ids, int(meanings[i, group]))
  return {"rate": group_means(per_user, user_group, meanings.shape[1]), "per_user": per_user,
          "retrieved": retrieved}


def _ranking(score: ScoreFn, tag: int, user, rows, top: int) -> np.ndarray:
  s = np.asarray(score(tag, user, rows), np.float64).reshape(-1)
  if s.shape != (len(rows),):
    raise ValueError(f"score({tag}, {user}, rows) returned {s.size} scores for {len(rows)} images")
  return top_n(s, top)


def group_means(per_user, user_group, num_groups: int) -> np.ndarray:
  """[T, G]: per_user [T, U] averaged over each group's users (NaN: a group without users)."""
  per_user, user_group = np.asarray(per_user, np.float64), np.asarray(user_group)
  out = np.full((per_user.shape[0], num_groups), np.nan)
  for g in np.unique(user_group):
    out[:, g] = per_user[:, user_group == g].mean(axis=1)
  return out


# ----------------------------------------------------------------------------------------------
# References that need no model.


def base_share(concept_ids, meanings) -> np.ndarray:
  """[T, G]: share of all candidate images that show meanings[t, g] (random retrieval)."""
  meanings = np.asarray(meanings)
  return np.array([[shows(concept_ids, int(m)).mean() if m >= 0 else np.nan for m in row]
                   for row in meanings])


def tagged_share(labels, concept_ids, meanings) -> np.ndarray:
  """[T, G]: among the candidate images labelled with tag t (labels [T, N] bool, by their
  actual posters), the share that show meanings[t, g] (NaN: no image carries t)."""
  labels, meanings = np.asarray(labels, bool), np.asarray(meanings)
  out = np.full(meanings.shape, np.nan)
  for i, row in enumerate(meanings):
    carrying = np.asarray(concept_ids)[labels[i]]
    if len(carrying):
      out[i] = [shows(carrying, int(m)).mean() if m >= 0 else np.nan for m in row]
  return out


# ----------------------------------------------------------------------------------------------
# What the world knows.


def polysemous_tags(world) -> np.ndarray:
  """The world's polysemous tags (public ids, ascending)."""
  return np.flatnonzero(world.tag_kinds == synthetic_vocab.KIND["polysemous"])


def readers(world) -> tuple[str, np.ndarray]:
  """(who reads a polysemous tag's meaning: "group" or "country", that value per world user)."""
  by = world.config.polysemy_by
  return by, np.asarray(world.users[by])


def user_meanings(world, tags, users) -> np.ndarray:
  """[T, U]: the concept each tag means for each user, read off the world's own distribution.

  A polysemous tag t has two candidate meanings (world.tag_concepts[t]); for a user u it is one
  strong synonym of exactly one of them, so p(t | an image of that concept alone, u) > 0 and
  p(t | an image of the other alone, u) = 0. Anything else is an error.
  """
  tags, users = np.asarray(tags), np.asarray(users, np.int64)
  concepts = world.tag_concepts
  out = np.zeros((len(tags), len(users)), np.int64)
  for i, t in enumerate(tags.tolist()):
    a, b = concepts[t]
    if a < 0 or b < 0:
      raise ValueError(f"tag {t} is not polysemous (its concepts are {concepts[t].tolist()})")
    ids = np.full((2 * len(users), 3), -1)
    ids[:len(users), 0], ids[len(users):, 0] = a, b
    weights = np.zeros(ids.shape, np.float32)
    weights[:, 0] = 1
    p = world.true_tag_distribution(np.tile(users, 2), ids, weights)[:, t]
    on_a, on_b = p[:len(users)] > 0, p[len(users):] > 0
    if np.any(on_a == on_b):
      u = int(users[np.argmax(on_a == on_b)])
      raise ValueError(f"tag {t} has no single meaning for user {u} (p on concept {a}: "
                       f"{p[np.argmax(on_a == on_b)]:.3g})")
    out[i] = np.where(on_a, a, b)
  return out


def group_meanings(world, tags, users, user_group, num_groups: int) -> np.ndarray:
  """[T, G]: the concept each tag means for each group (-1: a group without users), from the
  users' own readings (user_meanings), which must agree within a group."""
  per_user = user_meanings(world, tags, users)
  user_group = np.asarray(user_group)
  out = np.full((len(tags), num_groups), -1, np.int64)
  for g in np.unique(user_group):
    of_g = per_user[:, user_group == g]
    if np.any(of_g != of_g[:, :1]):
      raise ValueError(f"the users of group {g} read a polysemous tag differently: the world's "
                       f"readers are {world.config.polysemy_by!r}, not these groups")
    out[:, g] = of_g[:, 0]
  return out


class ColumnScores:
  """score(tag, user, rows) from `compute(user, rows) -> [len(rows), T]`, the scores of every
  tag of `tags` at once, kept for the last (user, rows) asked for."""

  def __init__(self, tags, compute: Callable[["int | None", np.ndarray], np.ndarray]):
    self.position = {int(t): i for i, t in enumerate(np.asarray(tags).tolist())}
    self.compute = compute
    self._key, self._value = None, None

  def __call__(self, tag: int, user, rows) -> np.ndarray:
    rows = np.asarray(rows)
    key = (user, rows.tobytes())
    if key != self._key:
      self._key, self._value = key, np.asarray(self.compute(user, rows))
    return self._value[:, self.position[int(tag)]]


def oracle_score(world, concept_ids, concept_weights, tags) -> ColumnScores:
  """The world's p(t | image, u): each candidate image's latent (concept_ids / concept_weights,
  indexed by dataset row) as if user u had posted it."""
  tags = np.asarray(tags)

  def compute(user, rows):
    if user is None:
      raise ValueError("the oracle ranks for a user; call it with one")
    return world.true_tag_distribution(np.full(len(rows), user), concept_ids[rows],
                                       concept_weights[rows])[:, tags]

  return ColumnScores(tags, compute)


def image_only_score(world, concept_ids, concept_weights, tags, train_posts) -> ColumnScores:
  """The world's p(t | image) mixed over the users with training posts, pi(u | image) oc
  n_train(u) P(concepts | u), exactly as OracleImageOnly mixes it; the user is ignored.
  train_posts [num world users]: each user's training posts."""
  tags, train_posts = np.asarray(tags), np.asarray(train_posts)
  pool = np.flatnonzero(train_posts)
  posterior = oracles.ImagePosterior(world, pool, np.log(train_posts[pool].astype(np.float64)))
  return ColumnScores(tags, lambda user, rows: posterior.distribution(
      concept_ids[rows], concept_weights[rows])[:, tags])


def choose_users(reader_of_user, train_posts, per_group: int, *, min_train_posts: int = 1,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Up to per_group users of each reader group, drawn uniformly without replacement (seeded)
  from the group's users with at least min_train_posts training posts.

  reader_of_user, train_posts: [num users]. Returns (users, their groups), groups ascending and
  users ascending within a group; a group without such users is left out.
  """
  if per_group < 1 or min_train_posts < 1:
    raise ValueError(f"per_group and min_train_posts must be >= 1, got {per_group}, "
                     f"{min_train_posts}: a user-specific model knows only users it trained on")
  reader_of_user, train_posts = np.asarray(reader_of_user), np.asarray(train_posts)
  rng = np.random.default_rng(seed)
  users, groups = [], []
  for g in np.unique(reader_of_user).tolist():
    pool = np.flatnonzero((reader_of_user == g) & (train_posts >= min_train_posts))
    if len(pool):
      pick = np.sort(rng.choice(pool, size=min(per_group, len(pool)), replace=False))
      users.append(pick)
      groups.append(np.full(len(pick), g))
  if not users:
    raise ValueError(f"no user has {min_train_posts} training posts")
  return np.concatenate(users).astype(np.int64), np.concatenate(groups).astype(np.int64)
