"""Table 6 probing: hand-computed contrasts, a handmade gender effect, the planted effects."""

import numpy as np
import pytest

from hashjax.data.synthetic import build, users as synthetic_users, vocab as synthetic_vocab
from hashjax.eval import probing

K = synthetic_vocab.KIND
NAN = np.nan


def _effects():
  return {"kind": np.array([K["social"], K["social"], K["generic"], K["city"], K["city"],
                            K["country"], K["country"], K["concept"]]),
          "gender_sign": np.array([-1.0, 1.0, 0.0, NAN, NAN, NAN, NAN, NAN]),
          "gender_strength": np.array([2.0, 0.5, 1.0, NAN, NAN, NAN, NAN, NAN]),
          "peak_age": np.array([16.0, 50.0, 31.0, NAN, NAN, NAN, NAN, NAN]),
          "age_sigma": np.array([10.0, 5.0, 1.0, NAN, NAN, NAN, NAN, NAN]),
          "city": np.array([-1, -1, -1, 4, 7, -1, -1, -1]),
          "country": np.array([-1, -1, -1, 0, 1, 0, 1, -1])}



def test_nearest_medoid_and_probe_concept():
  features = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.1], [1.0, 0.1]])
  sims = probing.cosine_similarities(features, np.array([2.0, 0.0]))
  np.testing.assert_allclose(sims[:2], [1.0, 0.0])
  np.testing.assert_array_equal(probing.nearest(sims, 3), [0, 3, 2])
  # The normalised rows average to a vector closest in angle to row 2 (the diagonal).
  assert probing.medoid(features) == 2
  # Concept 2 has the highest trait but dominates only one post: concept 0 is next.
  dominant = np.array([0, 0, 1, 1, 1, 2])
  assert probing.choose_probe_concept(dominant, np.array([0.5, 0.2, 0.9]), min_posts=2) == 0
  assert probing.choose_probe_concept(dominant, np.array([0.5, 0.2, 0.9]), min_posts=1) == 2


def test_top_k_ranks_and_counts():
  scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 1.0, 2.0, 0.0]])
  np.testing.assert_array_equal(probing.top_k_ids(scores, 2), [[1, 3], [0, 2]])  # tie: id 1
  np.testing.assert_array_equal(probing.ranks(scores), [[4, 1, 3, 2], [1, 3, 2, 4]])
  np.testing.assert_array_equal(probing.count_in_top_k([[1, 3], [0, 3]], 5), [1, 1, 0, 2, 0])


def test_contrast_uses_shares_and_lists_each_side():
  counts_a = np.array([4, 0, 2, 1])   # |A| = 4
  counts_b = np.array([1, 2, 2, 0])   # |B| = 2
  out = probing.contrast(counts_a, 4, counts_b, 2, n=2)
  # diff = [1 - 0.5, 0 - 1, 0.5 - 1, 0.25 - 0] = [0.5, -1, -0.5, 0.25]
  np.testing.assert_allclose(out["diff"], [0.5, -1.0, -0.5, 0.25])
  np.testing.assert_array_equal(out["a"], [0, 3])
  np.testing.assert_array_equal(out["b"], [1, 2])
  assert list(probing.contrast(counts_a, 4, counts_a, 4)["a"]) == []  # no difference, no list


def _gendered_scorer(features, meta):
  """A handmade two-tower scorer over 4 tags: tags 0, 1 are image tags (feature 0 and 1),
  tag 2 is written by women (meta[:, 1] = gender = -1), tag 3 by men; the image always wins
  over the gender term (1.0 vs 0.5)."""
  gender = meta[:, 1]
  return np.stack([features[:, 0], features[:, 1], 0.5 * (gender < 0), 0.5 * (gender > 0)], 1)


def test_counterfactual_probe_recovers_a_handmade_gender_effect():
  features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  female = np.array([[0.2, -1.0], [0.5, -1.0], [0.3, -1.0]])
  male = female * np.array([1.0, -1.0])
  out = probing.probe_counterfactual(_gendered_scorer, features, female, male, k=2, n=5)
  # Top 2 of every image: its image tag, then the gender's tag. So tag 2 is in all 3 female
  # top-2s and no male one: diff +1; tag 3 the reverse; image tags are on both sides.
  np.testing.assert_allclose(out["diff"], [0, 0, 1, -1])
  np.testing.assert_array_equal(out["a"], [2])
  np.testing.assert_array_equal(out["b"], [3])
  assert out["size_a"] == out["size_b"] == 3
  # Ranks of image 0: female scores (1, 0, .5, 0) rank the tags 0, 2, 1, 3 (the tie at 0 goes
  # to the lower id), male scores (1, 0, 0, .5) rank them 0, 3, 1, 2: tag 2 gains 4 - 2 = 2,
  # tag 3 loses 2. Image 2 (tag 1's image): 1, 2, 0, 3 vs 1, 3, 0, 2, the same gains.
  gain = out["rank_gain"]
  np.testing.assert_allclose(gain, [0, 0, 2, -2])
  # Planted: tag 2 favours women, tag 3 men; the measured effects agree with both.
  planted = np.array([NAN, NAN, 1.0, -1.0])
  agreement = probing.effect_agreement(gain, planted)
  assert (agreement["agree"], agreement["tags"], agreement["fraction"]) == (2, 2, 1.0)


def test_observed_probe_uses_each_posters_own_metadata_and_sizes():
  features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
  meta = np.array([[0.1, -1.0], [0.1, -1.0], [0.1, 1.0], [0.1, 0.0]])
  in_a = np.array([True, True, False, False])   # the two women
  in_b = np.array([False, False, True, False])  # the man; the unknown-gender post is unused
  out = probing.probe_observed(_gendered_scorer, features, meta, in_a, in_b, k=2, n=5)
  assert (out["size_a"], out["size_b"]) == (2, 1)
  # A's top 2: {0, 2} and {1, 2}; B's: {1, 3}. Shares: A = [.5, .5, 1, 0], B = [0, 1, 0, 1].
  np.testing.assert_allclose(out["diff"], [0.5, -0.5, 1.0, -1.0])
  np.testing.assert_array_equal(out["a"], [2, 0])
  np.testing.assert_array_equal(out["b"], [3, 1])


def test_counterfactual_meta_replaces_only_the_given_fields():
  users = {"age": np.array([20, 60]), "gender": np.array([1, -1], np.int8),
           "country": np.array([0, 3]), "lat": np.array([40.0, -33.0]),
           "lon": np.array([-75.0, 151.0])}
  meta = probing.counterfactual_meta(users, [1, 0], gender=-1, age=15.0)
  expected = synthetic_users.user_meta(
      {"user_age": np.array([15, 15]), "user_gender": np.array([-1, -1], np.int8),
       "user_country": np.array([3, 0]), "user_lat": np.array([-33.0, 40.0]),
       "user_lon": np.array([151.0, -75.0])}, np.arange(2))
  np.testing.assert_allclose(meta, expected)
  assert meta[0, 0] == pytest.approx((15 - 13) / (114 - 13)) and meta[0, 1] == -1
  np.testing.assert_allclose(meta[:, 2:7], np.eye(5)[[3, 0]])  # the countries are kept
  with pytest.raises(KeyError, match="height"):
    probing.counterfactual_meta(users, [0], height=2)


# ----------------------------------------------------------------------------------------------
# What was planted, and its recovery.


def test_planted_directions_hand_computed():
  effects = _effects()
  # Women vs men: log rate difference strength * sign * (-1 - 1).
  np.testing.assert_array_equal(probing.planted_gender(effects, -1, 1)[:3], [4, -1, 0])
  assert np.isnan(probing.planted_gender(effects, -1, 1)[3:]).all()
  # Ages 15 vs 45: ((45 - mu)^2 - (15 - mu)^2) / (2 sigma^2). Tag 0 peaks at 16, near 15:
  # (841 - 1) / 200; tag 1 at 50: (25 - 1225) / 50; tag 2 at 31, just nearer 45: (196 - 256) / 2.
  np.testing.assert_allclose(probing.planted_age(effects, 15, 45)[:3], [4.2, -24, -30])
  loc = probing.planted_location(effects, city_a=4, city_b=9, country_a=0, country_b=1)
  # City 4's tag +1; city 7 is neither city (0); country 0 +1, country 1 -1; others NaN.
  np.testing.assert_array_equal(loc[3:7], [1, 0, 1, -1])
  assert np.isnan(loc[:3]).all() and np.isnan(loc[7])


def test_listed_and_effect_agreement_hand_computed():
  planted = np.array([1.0, -1.0, 0.0, 2.0, NAN, -3.0])
  # A lists 0 (right), 2 (neutral), 4 (nothing planted: not counted), 5 (wrong); B lists 1
  # (right) and 3 (wrong).
  out = probing.listed_agreement([0, 2, 4, 5], [1, 3], planted)
  assert {k: out[k] for k in ("right", "neutral", "wrong", "listed")} == {
      "right": 2, "neutral": 1, "wrong": 2, "listed": 5}
  assert out["fraction"] == pytest.approx(2 / 5)
  # Chance: 3 planted-A-side tags listed for A, 2 for B; P(planted > 0) = 2/5, P(< 0) = 2/5.
  assert out["chance"] == pytest.approx((3 * 0.4 + 2 * 0.4) / 5)
  assert np.isnan(probing.listed_agreement([4], [], planted)["fraction"])
  effect = np.array([0.3, -0.1, 5.0, 0.0, 1.0, 0.2])
  # Planted directions on tags 0, 1, 3, 5: agree on 0 and 1; 3 has effect 0 (a miss); 5 wrong.
  out = probing.effect_agreement(effect, planted)
  assert {k: out[k] for k in ("agree", "tags", "fraction")} == {"agree": 2, "tags": 4,
                                                                "fraction": 0.5}
  # Spearman over those tags: effects (.3, -.1, 0, .2) rank (4, 1, 2, 3), planted (1, -1, 2, -3)
  # rank (3, 2, 4, 1): rho = 1 - 6 (1 + 1 + 4 + 4) / (4 (16 - 1)) = 0.
  assert out["rho"] == pytest.approx(0.0)
  graded = np.array([0.1, 0.5, 0.9])
  assert probing.effect_agreement(np.array([1.0, 2.0, 3.0]), graded)["rho"] == pytest.approx(1)
  assert probing.effect_agreement(np.array([3.0, 2.0, 1.0]), graded)["rho"] == pytest.approx(-1)


def test_planted_tag_effects_match_the_data(tiny_dataset):
  world = build.load_world(tiny_dataset.directory)
  effects = probing.planted_tag_effects(world)
  kinds = world.tag_kinds
  np.testing.assert_array_equal(effects["kind"], kinds)
  profiled = np.isin(kinds, [K["social"], K["generic"]])
  assert not np.isnan(effects["gender_sign"][profiled]).any()
  assert np.isnan(effects["gender_sign"][~profiled]).all()
  assert sorted(effects["gender_sign"][kinds == K["social"]]) == sorted(
      world.params["social_sign"])
  assert sorted(effects["peak_age"][kinds == K["generic"]]) == sorted(world.params["generic_mu"])
  np.testing.assert_array_equal(np.sort(effects["country"][kinds == K["country"]]), np.arange(5))
  # In the posts, a city tag is only ever written by users of that city, a country tag only by
  # users of that country: the id mapping is right.
  dataset = tiny_dataset
  batch = dataset.read(np.arange(dataset.num_posts), fields=("user_id",))
  user = np.broadcast_to(batch["user_id"][:, None], batch["tag_ids"].shape)[batch["tag_mask"]]
  tags = batch["tag_ids"][batch["tag_mask"]]
  city = kinds[tags] == K["city"]
  country = kinds[tags] == K["country"]
  assert city.sum() > 0 and country.sum() > 0
  np.testing.assert_array_equal(effects["city"][tags[city]], world.users["city"][user[city]])
  np.testing.assert_array_equal(effects["country"][tags[city | country]],
                                world.users["country"][user[city | country]])


def test_table6_contrasts_and_groups(tiny_dataset):
  world = build.load_world(tiny_dataset.directory)
  users = world.users
  test_users = np.unique(tiny_dataset.user_ids)
  contrasts = probing.table6_contrasts(world, test_users)
  assert [c["title"] for c in contrasts] == ["gender, age 13-17", "gender, age 43-47",
                                             "age, female", "age, male", "home city"]
  city_a, city_b = (g["city"] for g in contrasts[-1]["groups"])
  counts = np.bincount(users["city"][test_users])
  assert counts[city_a] == counts.max()  # the commonest home city ...
  country = world.params["city_country"]
  assert country[city_a] != country[city_b]  # ... against the commonest of another country
  assert counts[city_b] == counts[country != country[city_a]].max()
  # Groups select by band (inclusive) and value; fields are the band centre and city GPS.
  ids = np.arange(len(users["age"]))
  fits = probing.in_group(users, ids, {"gender": -1, "age": (13, 17)})
  np.testing.assert_array_equal(fits, (users["gender"] == -1) & (users["age"] >= 13)
                                & (users["age"] <= 17))
  assert probing.group_fields(world, {"gender": 1, "age": (43, 47)}) == {"gender": 1,
                                                                          "age": 45.0}
  fields = probing.group_fields(world, {"city": city_a})
  assert fields["country"] == country[city_a]
  assert fields["lat"] == world.params["city_lat"][city_a]


# ----------------------------------------------------------------------------------------------
# Table 5 and Figure 7.


