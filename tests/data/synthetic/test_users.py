"""Users of the synthetic world: Denton's descriptor by hand, the pinned draws, and the
conditional sampler the metadata oracle shares with make_users."""

import hashlib

import numpy as np
import pytest

from hashjax.data.synthetic import users as su
from hashjax.data.synthetic import vocab as sv
from hashjax.data.synthetic.world import PRESETS, World


def _users(age, gender, country, lat, lon):
  return {"user_age": np.array(age), "user_gender": np.array(gender, np.int8),
          "user_country": np.array(country), "user_lat": np.array(lat, np.float64),
          "user_lon": np.array(lon, np.float64)}


def test_user_meta_by_hand():
  users = _users(age=[13, 114, 63.5, 30], gender=[-1, 1, 0, 1], country=[0, 4, 2, 1],
                 lat=[0.0, 90.0, 0.0, -90.0], lon=[90.0, 0.0, 0.0, 180.0])
  meta = su.user_meta(users, np.arange(4))
  assert meta.shape == (4, 10) and meta.dtype == np.float32
  np.testing.assert_allclose(meta[:, 0], [0.0, 1.0, 0.5, 17 / 101], atol=1e-7)  # (age-13)/101
  np.testing.assert_array_equal(meta[:, 1], [-1, 1, 0, 1])
  np.testing.assert_array_equal(meta[:, 2:7], np.eye(5)[[0, 4, 2, 1]])
  # (cos lat cos lon, cos lat sin lon, sin lat) mapped from [-1, 1] to [0, 1]:
  np.testing.assert_allclose(meta[:, 7:], [[0.5, 1.0, 0.5],   # equator, 90 E: +y
                                           [0.5, 0.5, 1.0],   # north pole: +z
                                           [1.0, 0.5, 0.5],   # equator, Greenwich: +x
                                           [0.5, 0.5, 0.0]],  # south pole: -z
                             atol=1e-7)


def _digest(arrays):
  """A hash of arrays that survives last-bit float differences (floats rounded to 1e-5)."""
  h = hashlib.sha256()
  for name in sorted(arrays):
    a = np.asarray(arrays[name])
    if a.dtype.kind == "f":
      a = np.round(a.astype(np.float64), 5)
    h.update(name.encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def test_generated_data_is_pinned():
  """The tiny world's parameters and posts, as generator version 3 draws them.

  A refactor of the generator must leave these unchanged (else bump GENERATOR_VERSION, so
  cached datasets are rebuilt, and update the pins). numpy's Generator streams are pinned by
  constraints.txt; a numpy upgrade may change them.
  """
  world = World.create(PRESETS["tiny"], 0)
  assert _digest(world.params) == "7981c0e95c5430d1"
  posts = {f"{u}/{k}": np.concatenate(v) if isinstance(v, list) else v
           for u in (0, 57, 99) for k, v in world.generate_user_posts(u).items()}
  assert _digest(posts) == "22983e2bacc19b57"
  assert _digest({"g": world.group_topics}) == "da0d806d228a0e76"


@pytest.fixture(scope="module")
def world():
  return World.create(PRESETS["default"], 0)  # 2,500 users: enough for the statistics below


def test_group_topics_replayed_by_a_loaded_world(world, tmp_path):
  small = World.create(PRESETS["tiny"], 3)
  small.reorder_tags(np.random.default_rng(0).permutation(small.num_tags)).save(tmp_path / "w")
  loaded = World.load(tmp_path / "w")
  assert "group_topics" not in loaded.params and "group_topics" not in small.params
  np.testing.assert_array_equal(loaded.group_topics, small.group_topics)
  assert small.group_topics.shape == (PRESETS["tiny"].num_groups, PRESETS["tiny"].num_concepts)


def test_group_probabilities_are_the_draws_distribution(world):
  p = world.params
  probs = su.group_probabilities(world.config, p, p["user_age"], p["user_gender"],
                                 p["user_country"])
  np.testing.assert_allclose(probs.sum(1), 1.0)
  # The users' groups were drawn from these: the frequencies match the mean probabilities, and
  # the groups' own probabilities are larger than chance would give.
  freq = np.bincount(p["user_group"], minlength=world.config.num_groups) / len(p["user_group"])
  np.testing.assert_allclose(freq, probs.mean(0), atol=0.02)
  mean_own = probs[np.arange(len(probs)), p["user_group"]].mean()
  assert mean_own > (probs ** 2).sum(1).mean() - 0.02


def test_draw_habits_matches_make_users_given_age_and_gender(world):
  """One draw per real user from draw_habits has the statistics of the real users' habits."""
  p, cfg = world.params, world.config
  rng = np.random.default_rng(5)
  drawn = [su.draw_habits(rng, cfg, p, a, g, 1) for a, g in zip(p["user_age"], p["user_gender"])]
  drawn = {k: np.concatenate([d[k] for d in drawn]) for k in drawn[0]}
  real = {"location": p["user_location_propensity"], "social": p["user_social_propensity"],
          "generic": p["user_generic_propensity"], "generic_mix": p["user_generic_mix"]}
  female = p["user_gender"] == su.GENDER_FEMALE
  young = p["user_age"] < 25
  for name in ("location", "social", "generic"):
    for group in (female, ~female, young, ~young):  # the age and gender factors
      a, b = drawn[name][group], real[name][group]
      se = np.sqrt(a.var() / len(a) + b.var() / len(b))
      assert abs(a.mean() - b.mean()) < 4 * se, (name, a.mean(), b.mean())
  # The generic mix leans on age and gender the same way.
  for group in (female & young, ~female & ~young):
    np.testing.assert_allclose(drawn["generic_mix"][group].mean(0),
                               real["generic_mix"][group].mean(0), atol=0.02)
  expected = sv.demographic_mix(p, "generic", p["user_age"], p["user_gender"]).mean(0)
  np.testing.assert_allclose(drawn["generic_mix"].mean(0), expected, atol=0.01)


def test_draw_topics_follows_the_group(world):
  p, cfg = world.params, world.config
  rng = np.random.default_rng(0)
  for g in (0, 3):
    theta = su.draw_topics(rng, cfg, p["concept_popularity"], world.group_topics,
                           np.full(20_000, g))
    alpha = su.topic_alpha(cfg, p["concept_popularity"], world.group_topics[[g]])[0]
    np.testing.assert_allclose(theta.mean(0), alpha / alpha.sum(), atol=0.005)
    # The real users of group g have these tastes too.
    real = p["user_topic"][p["user_group"] == g]
    np.testing.assert_allclose(real.mean(0), alpha / alpha.sum(),
                               atol=4 * theta.std(0).max() / np.sqrt(len(real)))
