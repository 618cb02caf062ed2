"""Tests of the synthetic world: determinism, shapes, the oracle and the planted effects."""

import dataclasses
import json

import numpy as np
import pytest

from hashjax.data.synthetic import world as synthetic
from hashjax.data.synthetic import stats as report
from hashjax.data.synthetic import vocab as sv
from hashjax.data.synthetic.vocab import KIND
from hashjax.data.synthetic.world import PRESETS, World

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def world():
  return World.create(TINY, seed=0)


@pytest.fixture(scope="module")
def posts(world):
  return report.generate_all(world)


def _assert_posts_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    if isinstance(a[key], list):
      assert len(a[key]) == len(b[key])
      for x, y in zip(a[key], b[key]):
        np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_array_equal(a[key], b[key])


def _public_ids(world, kind):
  """Public ids of one kind, in canonical (layout) order: aligned with the kind's profile arrays."""
  start = sv.layout_kinds(sv.vocab_layout(world.config))[1]
  canon = np.flatnonzero(world.params["tag_kinds"] == KIND[kind])
  assert canon[0] == start[kind]
  return np.argsort(world.tag_order)[canon]


def _one_image_for_all_users(world, concept=2):
  """p(y | post) of every user for the same single-concept image latent."""
  U = world.config.num_users
  return world.true_tag_distribution(np.arange(U), np.tile([[concept, -1, -1]], (U, 1)),
                                     np.tile([[1.0, 0.0, 0.0]], (U, 1)))


def test_same_seed_same_world_and_posts(world):
  other = World.create(TINY, seed=0)
  assert world.params.keys() == other.params.keys()
  for key in world.params:
    np.testing.assert_array_equal(world.params[key], other.params[key], err_msg=key)
  np.testing.assert_array_equal(world.tag_order, other.tag_order)
  for u in (0, 17, 99):
    _assert_posts_equal(world.generate_user_posts(u), other.generate_user_posts(u))


def test_different_seed_differs(world):
  other = World.create(TINY, seed=1)
  assert world.tag_strings != other.tag_strings
  assert not np.array_equal(world.users["age"], other.users["age"])
  a, b = world.generate_user_posts(3), other.generate_user_posts(3)
  assert a["features"].shape != b["features"].shape or not np.allclose(a["features"], b["features"])
  # The seed also drives the per-post draws, not just the parameters.
  reseeded = World(world.config, 1, world.params, world.tag_order)
  a, b = world.generate_user_posts(3), reseeded.generate_user_posts(3)
  assert not np.allclose(a["features"], b["features"])


def test_user_posts_independent_of_call_order(world):
  forward = {u: world.generate_user_posts(u) for u in (4, 9, 2)}
  fresh = World.create(TINY, seed=0)
  fresh.generate_user_posts(50)
  for u in (2, 9, 4):
    _assert_posts_equal(forward[u], fresh.generate_user_posts(u))


def test_post_shapes_dtypes_and_ranges(world):
  cfg = world.config
  for u in range(cfg.num_users):
    p = world.generate_user_posts(u)
    n = int(world.users["num_posts"][u])
    assert n >= 1 and p["timestamp"].dtype == np.int64 and p["timestamp"].shape == (n,)
    assert np.all(np.diff(p["timestamp"]) > 0) and p["timestamp"][0] > synthetic.TIME_EPOCH
    x = p["features"]
    assert x.dtype == np.float32 and x.shape == (n, cfg.feature_dim)
    assert np.all(np.isfinite(x)) and np.all(x >= 0)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    assert len(p["tags"]) == n and len(p["captions"]) == n
    for t in p["tags"]:
      assert t.dtype == np.int32 and 1 <= len(t) <= cfg.max_tags_per_post
      assert len(np.unique(t)) == len(t) and t.min() >= 0 and t.max() < cfg.num_tags
    for c in p["captions"]:
      assert c.dtype == np.int32 and len(c) >= 1
      assert c.min() >= 0 and c.max() < cfg.caption_vocab_size
    ids, w = p["concept_ids"], p["concept_weights"]
    assert ids.dtype == np.int32 and ids.shape == (n, synthetic.MAX_CONCEPTS)
    assert w.dtype == np.float32 and w.shape == ids.shape
    assert np.all(ids[:, 0] >= 0) and ids.max() < cfg.num_concepts
    assert np.all((ids >= 0) == (w > 0)) and np.all(np.diff((ids >= 0).astype(int), axis=1) <= 0)
    assert np.all(np.diff(w, axis=1) <= 0)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)


def test_corpus_statistics(world, posts):
  stats = report.summary(world, posts)
  assert 2.5 < stats["tags_per_post"] < 2.9  # 1 + Poisson(1.7), capped
  assert stats["posts"] == world.users["num_posts"].sum()
  assert all(stats["kind_share"][k] > 0 for k in sv.KIND_NAMES)
  # Users post at their own times, interleaved: neighbours in global time order are mostly
  # different users, and everything falls inside the configured span.
  by_time = np.argsort(posts["timestamp"], kind="stable")
  assert np.mean(np.diff(posts["user"][by_time]) != 0) > 0.5
  span = TINY.time_span_days * 86400
  assert posts["timestamp"].min() > synthetic.TIME_EPOCH
  # Gaps are exponential with mean (span - start) / n, so a user with few posts can overshoot
  # the span by a fraction of it; the bound only checks nothing runs away.
  assert posts["timestamp"].max() < synthetic.TIME_EPOCH + 1.5 * span
  assert len(world.caption_vocab) == len(set(world.caption_vocab)) == TINY.caption_vocab_size
  strings = world.tag_strings
  # Caption words that name a concept name one of the post's concepts; about half do.
  W = TINY.caption_words_per_concept
  named = [(c[c < TINY.num_concepts * W] // W, ids) for c, ids in zip(posts["captions"],
                                                                     posts["concept_ids"])]
  assert all(np.isin(concepts, ids).all() for concepts, ids in named)
  share = sum(len(c) for c, _ in named) / sum(len(c) for c in posts["captions"])
  assert abs(share - TINY.caption_concept_share) < 0.05
  assert len(strings) == len(set(strings)) == TINY.num_tags and all(s.isalpha() for s in strings)


def test_users_and_user_meta(world):
  users = world.users
  assert users["age"].min() >= 13 and users["age"].max() <= 114
  assert set(np.unique(users["gender"])) <= {-1, 0, 1}
  assert users["num_posts"].min() >= 1 and users["num_posts"].max() <= TINY.max_posts_per_user
  meta = world.user_meta(np.arange(TINY.num_users))
  assert meta.dtype == np.float32 and meta.shape == (TINY.num_users, 10)
  np.testing.assert_array_equal(meta[:, 1], users["gender"])
  others = np.delete(meta, 1, axis=1)
  assert others.min() >= 0 and others.max() <= 1
  np.testing.assert_array_equal(meta[:, 2:7].sum(1), 1)
  np.testing.assert_array_equal(np.argmax(meta[:, 2:7], 1), users["country"])
  # Users of one city sit together on the sphere, far from other countries.
  xyz = meta[:, 7:]
  same = users["country"][:, None] == users["country"][None]
  d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
  assert d[same].mean() < 0.3 * d[~same].mean()


def test_true_distribution_normalised_and_covers_samples(world, posts):
  users, c, w = posts["user"], posts["concept_ids"], posts["concept_weights"]
  p = world.true_tag_distribution(users, c, w)
  assert p.dtype == np.float32 and p.shape == (len(users), TINY.num_tags)
  assert p.min() >= 0
  np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
  for i, tags in enumerate(posts["tags"]):
    assert np.all(p[i, tags] > 0)


def test_sampler_matches_distribution(world):
  """First draws follow p; pairs follow sequential sampling without replacement."""
  n = 20_000
  u, c, w = np.full(n, 7), np.tile([[1, 4, -1]], (n, 1)), np.tile([[0.7, 0.3, 0.0]], (n, 1))
  p = world.true_tag_distribution(u[:1], c[:1], w[:1])[0].astype(np.float64)
  rng = np.random.default_rng(0)
  first = np.concatenate(world.sample_tags(rng, u, c, w, num_tags=1))
  freq = np.bincount(first, minlength=TINY.num_tags) / n
  assert 0.5 * np.abs(freq - p).sum() < 0.03
  pairs = np.stack(world.sample_tags(rng, u, c, w, num_tags=2))
  assert np.all(pairs[:, 0] != pairs[:, 1])
  included = np.bincount(pairs.ravel(), minlength=TINY.num_tags) / n
  # P(y among 2 draws) = p_y + sum_{x != y} p_x p_y / (1 - p_x).
  second = p * ((p / (1 - p)).sum() - p / (1 - p))
  np.testing.assert_allclose(included, p + second, atol=0.02)


def test_reorder_tags_relabels_everything(world):
  order = np.random.default_rng(0).permutation(TINY.num_tags)
  new = world.reorder_tags(order)
  new_id = np.argsort(order)  # old id -> new id
  assert new.tag_strings == [world.tag_strings[o] for o in order]
  np.testing.assert_array_equal(new.word_vectors, world.word_vectors[order])
  np.testing.assert_array_equal(new.tag_kinds, world.tag_kinds[order])
  np.testing.assert_array_equal(new.tag_concepts, world.tag_concepts[order])
  for u in (0, 5):
    a, b = world.generate_user_posts(u), new.generate_user_posts(u)
    for ta, tb in zip(a["tags"], b["tags"]):
      np.testing.assert_array_equal(tb, new_id[ta])
    np.testing.assert_array_equal(a["features"], b["features"])
    users = np.full(len(a["tags"]), u)
    pa = world.true_tag_distribution(users, a["concept_ids"], a["concept_weights"])
    pb = new.true_tag_distribution(users, b["concept_ids"], b["concept_weights"])
    np.testing.assert_array_equal(pb, pa[:, order])
  # Reordering composes, and the inverse gives back the original numbering.
  np.testing.assert_array_equal(new.reorder_tags(new_id).tag_order, world.tag_order)
  with pytest.raises(ValueError):
    world.reorder_tags(np.zeros(TINY.num_tags, int))


def test_save_load_round_trip(world, tmp_path):
  saved = world.reorder_tags(np.random.default_rng(1).permutation(TINY.num_tags))
  saved.save(tmp_path / "world")
  loaded = World.load(tmp_path / "world")
  assert loaded.config == saved.config and loaded.seed == saved.seed
  assert loaded.tag_strings == saved.tag_strings and loaded.caption_vocab == saved.caption_vocab
  np.testing.assert_array_equal(loaded.word_vectors, saved.word_vectors)
  for u in (0, 42):
    a, b = saved.generate_user_posts(u), loaded.generate_user_posts(u)
    _assert_posts_equal(a, b)
    users = np.full(len(a["tags"]), u)
    np.testing.assert_array_equal(
        saved.true_tag_distribution(users, a["concept_ids"], a["concept_weights"]),
        loaded.true_tag_distribution(users, a["concept_ids"], a["concept_weights"]))


def _mean_cosine(vectors, a, b):
  sims = vectors[a] @ vectors[b].T
  if np.array_equal(a, b):
    sims = sims[~np.eye(len(a), dtype=bool)]
  return sims.mean()


def test_word_vectors_put_related_tags_together(world):
  vec, kinds, concepts = world.word_vectors, world.tag_kinds, world.tag_concepts
  np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, rtol=1e-5)
  syn = np.flatnonzero(kinds == KIND["concept"])
  same = [_mean_cosine(vec, syn[concepts[syn, 0] == c], syn[concepts[syn, 0] == c])
          for c in range(TINY.num_concepts)]
  diff = [_mean_cosine(vec, syn[concepts[syn, 0] == c], syn[concepts[syn, 0] != c])
          for c in range(TINY.num_concepts)]
  assert np.min(same) > np.max(diff) + 0.2
  # A polysemous tag sits near both of its meanings and away from the other concepts.
  for t in np.flatnonzero(kinds == KIND["polysemous"]):
    near = [_mean_cosine(vec, [t], syn[concepts[syn, 0] == m]) for m in concepts[t]]
    far = _mean_cosine(vec, [t], syn[~np.isin(concepts[syn, 0], concepts[t])])
    assert min(near) > far + 0.2
  city = _public_ids(world, "city")  # canonical order: country-major
  country_of = np.repeat(np.arange(5), TINY.cities_per_country)
  sims = vec[city] @ vec[city].T
  same_country = country_of[:, None] == country_of[None]
  same_country &= ~np.eye(len(city), dtype=bool)
  assert sims[same_country].mean() > sims[~same_country].mean() + 0.2


@pytest.mark.parametrize("reader", ["group", "country"])
def test_polysemous_tags_change_meaning_with_the_reader(world, reader):
  """Veit's #rock (by style group) or #football (by country): each reader has one meaning."""
  if reader != world.config.polysemy_by:
    world = World.create(dataclasses.replace(TINY, polysemy_by=reader), seed=0)
  kinds, concepts = world.tag_kinds, world.tag_concepts
  readers = world.users[reader]
  poly = np.flatnonzero(kinds == KIND["polysemous"])
  assert len(poly) == TINY.num_polysemous and np.all(concepts[poly] >= 0)
  for t in poly:
    a, b = concepts[t]
    readings = set()
    for r in np.unique(readers):
      reading_of = set()
      for u in np.flatnonzero(readers == r)[:10]:  # every user of that reader reads it alike
        p = world.true_tag_distribution([u, u], [[a, -1, -1], [b, -1, -1]],
                                        [[1, 0, 0], [1, 0, 0]])
        reading_of.add(tuple(p[:, t] > 0))
      assert len(reading_of) == 1 and reading_of <= {(True, False), (False, True)}
      readings |= reading_of
    assert readings == {(True, False), (False, True)}  # both meanings are in use


def test_unknown_polysemy_reader_is_an_error():
  with pytest.raises(ValueError, match="polysemy_by"):
    World.create(dataclasses.replace(TINY, polysemy_by="age"), seed=0)


def test_synonym_choice_depends_on_style_group(world):
  """Self-expression: for the same image, groups favour different synonyms of a concept."""
  groups = world.users["group"]
  syn = np.flatnonzero((world.tag_kinds == KIND["concept"]) & (world.tag_concepts[:, 0] == 0))
  favourites = set()
  for g in np.unique(groups):
    u = np.flatnonzero(groups == g)[0]
    p = world.true_tag_distribution([u], [[0, -1, -1]], [[1, 0, 0]])[0]
    favourites.add(syn[np.argmax(p[syn])])
  assert len(favourites) > 1


def test_location_and_demographic_tags(world):
  users = world.users
  U = TINY.num_users
  p = _one_image_for_all_users(world)
  city, country = _public_ids(world, "city"), _public_ids(world, "country")
  assert np.all(p[np.arange(U), city[users["city"]]] > 0)
  assert np.all(p[np.arange(U), country[users["country"]]] > 0)
  assert np.all((p[:, city] > 0).sum(1) == 1) and np.all((p[:, country] > 0).sum(1) == 1)
  # Denton Table 6: a social tag favouring men (sign +1, the paper's code for male) is, among
  # social tags, used more by men, and one favouring women more by women.
  social = _public_ids(world, "social")
  share = p[:, social] / p[:, social].sum(1, keepdims=True)
  sign, strength = world.params["social_sign"], world.params["social_strength"]
  male, female = users["gender"] == 1, users["gender"] == -1
  for i in np.flatnonzero(strength * np.abs(sign) > 1.0):
    ratio = share[male, i].mean() / share[female, i].mean()
    assert ratio > 1.5 if sign[i] > 0 else ratio < 1 / 1.5
  # ... and one peaking in middle age is used more by older users.
  old = np.argmax(world.params["social_mu"])
  assert share[users["age"] >= 35, old].mean() > 1.5 * share[users["age"] < 20, old].mean()


def test_generic_tag_habit_is_heavy_tailed(world):
  """Most users rarely write #tbt-like tags, a few write them all the time."""
  U = TINY.num_users
  p = _one_image_for_all_users(world)
  mass = np.sort(p[:, _public_ids(world, "generic")].sum(1))
  assert mass[-U // 10:].mean() > 4 * np.median(mass)
  # Users differ in which generic tags they favour ...
  users = world.users
  mix = users["generic_mix"]
  assert len(np.unique(np.argmax(mix, 1))) > TINY.num_generic // 2
  # ... around the habits of their gender (a #wcw / #mcm kind of tag): the metadata predicts
  # the mix, so a model that sees only metadata (Denton's user-biased model) can learn it.
  # Shares are normalised per user, so a gender's total leaning moves every share; measure each
  # tag's male/female ratio against that of the gender-neutral tags, where it cancels.
  sign, strength = world.params["generic_sign"], world.params["generic_strength"]
  male, female = users["gender"] == 1, users["gender"] == -1
  gender_ratio = lambda tags: mix[male][:, tags].mean() / mix[female][:, tags].mean()
  neutral = np.flatnonzero(sign == 0)
  strong = np.flatnonzero(strength * np.abs(sign) > 1.0)
  assert len(strong) > 0 and len(neutral) > 0
  for i in strong:
    ratio = gender_ratio([i]) / gender_ratio(neutral)
    assert ratio > 1.5 if sign[i] > 0 else ratio < 1 / 1.5


def test_vocabulary_too_small_is_rejected():
  with pytest.raises(ValueError, match="num_tags"):
    World.create(dataclasses.replace(TINY, num_tags=40), seed=0)


def test_a_world_stored_in_an_older_format_is_refused(world, tmp_path):
  world.save(str(tmp_path))
  with open(tmp_path / "world.json") as f:
    meta = json.load(f)
  meta["format_version"] = synthetic.FORMAT_VERSION - 1
  with open(tmp_path / "world.json", "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match="rebuild the dataset"):
    World.load(str(tmp_path))
