"""User-conditional retrieval (Veit et al., Fig. 1) on hand-computed cases and the tiny world."""

import dataclasses

import numpy as np
import pytest

from hashjax.data.synthetic import vocab as sv
from hashjax.data.synthetic.world import PRESETS, World
from hashjax.eval import conditional_retrieval as cr

TINY = PRESETS["tiny"]

# Six candidate images (rows 10..15) with their latent concepts (-1 padding).
ROWS = np.arange(10, 16)
CONCEPTS = np.array([[0, -1, -1],   # row 10
                     [1, -1, -1],   # row 11
                     [0, 1, -1],    # row 12: both meanings
                     [2, -1, -1],   # row 13
                     [1, 2, -1],    # row 14
                     [3, 0, -1]])   # row 15: concept 0 as its minor concept


def test_shows_top_n_and_rate_hand_computed():
  np.testing.assert_array_equal(cr.shows(CONCEPTS, 0), [1, 0, 1, 0, 0, 1])
  np.testing.assert_array_equal(cr.shows(CONCEPTS, 3), [0, 0, 0, 0, 0, 1])
  # Best first; the tie between positions 1 and 3 (score 5) goes to the earlier one.
  np.testing.assert_array_equal(cr.top_n([1, 5, 0, 5, 7, 2], 3), [4, 1, 3])
  np.testing.assert_array_equal(cr.top_n([1, 2], 5), [1, 0])  # fewer images than n: all
  assert cr.rate([0, 2, 5], CONCEPTS, 0) == 1.0
  assert cr.rate([0, 1, 3, 4], CONCEPTS, 1) == 0.5  # rows 11 and 14 of the four
  assert np.isnan(cr.rate([], CONCEPTS, 1))
  with pytest.raises(ValueError, match="n must be"):
    cr.top_n([1.0], 0)
  with pytest.raises(ValueError, match="concept"):
    cr.shows(CONCEPTS, -1)


def _score_table(table):
  """score(tag, user, rows) reading fixed scores {(tag, user): [6]}; records its calls."""
  calls = []

  def score(tag, user, rows):
    np.testing.assert_array_equal(rows, ROWS)
    calls.append((tag, user))
    return np.asarray(table[(tag, user)], float)

  return score, calls


def test_retrieval_rates_user_specific_hand_computed():
  # Tag 7 means concept 0 for group 0 and concept 1 for group 1; tag 9 means 2 / 3.
  meanings = np.array([[0, 1], [2, 3]])
  users, user_group = np.array([100, 101, 200]), np.array([0, 0, 1])
  score, calls = _score_table({
      (7, 100): [9, 8, 7, 0, 0, 0],  # top 2: rows 10, 11 -> concept 0 in 1 of 2
      (7, 101): [0, 0, 5, 0, 0, 5],  # rows 12, 15 (tie: the earlier first) -> 2 of 2
      (7, 200): [0, 3, 0, 0, 4, 0],  # rows 14, 11 -> concept 1 in 2 of 2
      (9, 100): [0, 0, 0, 1, 2, 0],  # rows 14, 13 -> concept 2 in 2 of 2
      (9, 101): [1, 1, 0, 0, 0, 0],  # rows 10, 11 -> 0 of 2
      (9, 200): [0, 0, 0, 0, 0, 1]})  # rows 15, 10 -> concept 3 in 1 of 2
  got = cr.retrieval_rates(score, [7, 9], users, user_group, meanings, ROWS, CONCEPTS, 2)
  np.testing.assert_allclose(got["per_user"], [[0.5, 1.0, 1.0], [1.0, 0.0, 0.5]])
  np.testing.assert_allclose(got["rate"], [[0.75, 1.0], [0.5, 0.5]])  # group means
  np.testing.assert_array_equal(got["retrieved"][0], [[0, 1], [2, 5], [4, 1]])
  assert calls[:2] == [(7, 100), (9, 100)]  # user-major: one user's tags together
  assert len(calls) == 6


def test_retrieval_rates_user_agnostic_scores_one_ranking_against_each_meaning():
  meanings = np.array([[0, 1]])
  # One ranking (rows 12, 10, 11): concept 0 in rows 12 and 10, concept 1 in rows 12 and 11.
  score, calls = _score_table({(7, None): [5, 4, 6, 0, 0, 0]})
  got = cr.retrieval_rates(score, [7], [100, 200, 201], [0, 1, 1], meanings, ROWS, CONCEPTS, 3,
                           user_agnostic=True)
  np.testing.assert_allclose(got["rate"], [[2 / 3, 2 / 3]])
  assert calls == [(7, None)]  # called once per tag, without a user
  # The same ranking for meaning 0 in both groups: the agnostic model cannot tell them apart.
  got = cr.retrieval_rates(score, [7], [100, 200], [0, 1], np.array([[0, 3]]), ROWS, CONCEPTS,
                           3, user_agnostic=True)
  np.testing.assert_allclose(got["rate"], [[2 / 3, 0.0]])


def test_retrieval_rates_rejects_mismatched_inputs():
  score, _ = _score_table({(7, 1): [0, 0, 0]})
  with pytest.raises(ValueError, match="scores for 6 images"):
    cr.retrieval_rates(score, [7], [1], [0], np.array([[0]]), ROWS, CONCEPTS, 2)
  with pytest.raises(ValueError, match="a row per tag"):
    cr.retrieval_rates(score, [7, 8], [1], [0], np.array([[0]]), ROWS, CONCEPTS, 2)


def test_group_means_leave_a_group_without_users_nan():
  got = cr.group_means([[1.0, 0.0, 0.5]], [0, 0, 2], 3)
  np.testing.assert_allclose(got, [[0.5, np.nan, 0.5]])


def test_base_and_tagged_share_hand_computed():
  meanings = np.array([[0, 1], [2, 3]])
  # Concept 0 in 3 of 6 images, 1 in 3, 2 in 2, 3 in 1.
  np.testing.assert_allclose(cr.base_share(CONCEPTS, meanings), [[0.5, 0.5], [1 / 3, 1 / 6]])
  labels = np.array([[1, 1, 1, 0, 0, 0],    # tag 0 on rows 10-12: concept 0 in 2, 1 in 2
                     [0, 0, 0, 0, 0, 0]], bool)  # tag 1 on no image
  got = cr.tagged_share(labels, CONCEPTS, meanings)
  np.testing.assert_allclose(got[0], [2 / 3, 2 / 3])
  assert np.isnan(got[1]).all()


def test_choose_users_draws_from_each_groups_users_with_training_posts():
  reader = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
  train = np.array([3, 0, 5, 1, 2, 0, 0, 0, 0])  # group 2 has no user with training posts
  users, groups = cr.choose_users(reader, train, 5)
  np.testing.assert_array_equal(users, [0, 2, 3, 4])  # all of them: fewer than 5 per group
  np.testing.assert_array_equal(groups, [0, 0, 1, 1])
  users, groups = cr.choose_users(reader, train, 5, min_train_posts=2)
  np.testing.assert_array_equal(users, [0, 2, 4])
  users, groups = cr.choose_users(reader, train, 1, seed=3)
  assert len(users) == 2 and users[0] in (0, 2) and users[1] in (3, 4)
  again = cr.choose_users(reader, train, 1, seed=3)
  np.testing.assert_array_equal(again[0], users)  # seeded
  with pytest.raises(ValueError, match="no user"):
    cr.choose_users(reader, np.zeros(9, int), 2)
  with pytest.raises(ValueError, match=">= 1"):
    cr.choose_users(reader, train, 0)


# ----------------------------------------------------------------------------------------------
# The world.


def _planted_meaning(world, tag, user):
  """The meaning as vocab.concept_tag_tables plants it: poly_side[p, reader] True -> the tag's
  first concept (canonical polysemous index p, reader the user's group or country)."""
  start = sv.layout_kinds(sv.vocab_layout(world.config))[1]["polysemous"]
  p = world.tag_order[tag] - start
  reader = world.users[world.config.polysemy_by][user]
  return world.tag_concepts[tag][0 if world.params["poly_side"][p, reader] else 1]


@pytest.fixture(scope="module", params=["group", "country"])
def world(request):
  return World.create(dataclasses.replace(TINY, polysemy_by=request.param, num_polysemous=4),
                      seed=0)


def test_user_meanings_are_the_planted_ones(world):
  tags = cr.polysemous_tags(world)
  assert len(tags) == 4
  users = np.arange(0, TINY.num_users, 7)
  got = cr.user_meanings(world, tags, users)
  want = [[_planted_meaning(world, t, u) for u in users] for t in tags]
  np.testing.assert_array_equal(got, want)
  by, reader = cr.readers(world)
  assert by == world.config.polysemy_by
  meanings = cr.group_meanings(world, tags, users, reader[users], int(reader.max()) + 1)
  for j, u in enumerate(users):
    np.testing.assert_array_equal(meanings[:, reader[u]], got[:, j])
  missing = np.setdiff1d(np.arange(int(reader.max()) + 1), reader[users])
  assert (meanings[:, missing] == -1).all()
  with pytest.raises(ValueError, match="not polysemous"):
    cr.user_meanings(world, [int(np.flatnonzero(world.tag_concepts[:, 1] < 0)[0])], users)


def test_group_meanings_refuse_groups_that_are_not_the_reader(world):
  tags = cr.polysemous_tags(world)
  _, reader = cr.readers(world)
  # Users of every reader value in one "group": both meanings of a tag are always in use.
  users = np.array([np.flatnonzero(reader == r)[0] for r in np.unique(reader)])
  with pytest.raises(ValueError, match="read a polysemous tag differently"):
    cr.group_meanings(world, tags, users, np.zeros(len(users), int), 1)


def test_oracle_ranks_the_meanings_images_first_and_the_image_only_oracle_ignores_the_user(world):
  tags = cr.polysemous_tags(world)
  C = TINY.num_concepts
  # 3 * C images, one concept each (concept i % C); latents indexed by row.
  concept_ids = np.full((3 * C, 3), -1)
  concept_ids[:, 0] = np.arange(3 * C) % C
  weights = np.zeros((3 * C, 3), np.float32)
  weights[:, 0] = 1
  rows = np.arange(3 * C)
  _, reader = cr.readers(world)
  users = np.array([np.flatnonzero(reader == r)[0] for r in np.unique(reader)])
  meanings = cr.group_meanings(world, tags, users, reader[users], int(reader.max()) + 1)
  got = cr.retrieval_rates(cr.oracle_score(world, concept_ids, weights, tags), tags, users,
                           reader[users], meanings, rows, concept_ids[rows], 3)
  np.testing.assert_array_equal(got["per_user"], 1.0)  # all 3 images of the meaning first
  image_only = cr.image_only_score(world, concept_ids, weights, tags,
                                   np.ones(TINY.num_users, int))
  first = image_only(tags[0], None, rows)
  np.testing.assert_array_equal(image_only(tags[0], users[0], rows), first)
  assert first.shape == (len(rows),) and np.all(first >= 0)
  # p(t | image) is positive exactly on images of one of the tag's two meanings.
  np.testing.assert_array_equal(first > 0, np.isin(concept_ids[:, 0],
                                                   world.tag_concepts[tags[0]]))
