"""The oracle rows against brute force and hand-computed posteriors.

The mixtures over users (image only, metadata only) are computed by World.mixture_parts in
matmuls; here they are checked against the weighted sum of true_tag_distribution user by user,
the posterior weights against the sampler and hand values, and the balanced ranking.
"""

import dataclasses
import itertools

import numpy as np
import pytest

from hashjax.data import tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.data.synthetic import build
from hashjax.data.synthetic import users as su
from hashjax.data.synthetic.world import PRESETS, World
from hashjax.eval import baselines, evaluate, oracles, report

TINY = PRESETS["tiny"]


def _posts(world, users, n=None):
  posts = [world.generate_user_posts(u) for u in users]
  c = np.concatenate([p["concept_ids"] for p in posts])[:n]
  w = np.concatenate([p["concept_weights"] for p in posts])[:n]
  return c, w


def _brute_force(world, weights, c, w, users=None):
  """sum_u weights[:, u] p(y | post, u) / sum_u weights[:, u], one user at a time."""
  users = np.arange(weights.shape[1]) if users is None else users
  out = np.zeros((len(c), world.num_tags))
  for j, u in enumerate(users):
    out += weights[:, j:j + 1] * world.true_tag_distribution(np.full(len(c), u), c, w)
  return out / weights.sum(1, keepdims=True)


def _with_users(world, **arrays):
  """The same world with some user arrays replaced (a hand-built case)."""
  params = dict(world.params, **{f"user_{k}": v for k, v in arrays.items()})
  return World(world.config, world.seed, params, world.tag_order, world.group_topics)


@pytest.mark.parametrize("polysemy_by", ["group", "country"])
def test_mixture_equals_the_weighted_sum_over_users(polysemy_by):
  config = dataclasses.replace(TINY, polysemy_by=polysemy_by, num_polysemous=6)
  world = World.create(config, 0).reorder_tags(
      np.random.default_rng(1).permutation(config.num_tags))
  c, w = _posts(world, range(6), n=50)
  rng = np.random.default_rng(0)
  weights = rng.random((len(c), config.num_users)) * (rng.random((len(c), config.num_users)) < .3)
  weights[:, 7] += 1e-3  # every post has a user
  mix = world.mixture_distribution(weights, c, w)
  assert mix.dtype == np.float32 and mix.shape == (len(c), config.num_tags)
  np.testing.assert_allclose(mix, _brute_force(world, weights, c, w), rtol=1e-5, atol=1e-7)
  # A subset of users given as traits (how the oracles call it) is the same mixture.
  some = np.array([3, 7, 11, 50])
  np.testing.assert_allclose(world.mixture_distribution(weights[:, some], c, w,
                                                        users=world.user_traits(some)),
                             _brute_force(world, weights[:, some], c, w, some),
                             rtol=1e-5, atol=1e-7)
  # One user with all the weight is that user's true distribution.
  one = np.zeros_like(weights)
  one[:, 42] = 1.0
  np.testing.assert_allclose(world.mixture_distribution(one, c, w),
                             world.true_tag_distribution(np.full(len(c), 42), c, w), atol=1e-7)


def test_concept_log_likelihood_is_the_probability_of_the_samplers_draw():
  world = World.create(TINY, 0)
  user, n = 5, 400_000
  c, _ = world._sample_latents(np.random.default_rng(0), user, n)
  theta = world.params["user_topic"][[user]]
  k_probs = TINY.concept_count_probs
  outcomes, counts = np.unique(c, axis=0, return_counts=True)
  expected = np.exp(World.concept_log_likelihood(theta, outcomes))[:, 0]
  expected *= np.array(k_probs)[(outcomes >= 0).sum(1) - 1]
  assert abs(expected.sum() - 1) < 0.02  # nearly every possible draw was seen
  common = counts > 200
  se = np.sqrt(expected[common] / n)
  assert np.all(np.abs(counts[common] / n - expected[common]) < 5 * se)
  # By hand: theta = (.5, .3, .2), draw (2, 0) has probability .2 * .5 / .8.
  hand = World.concept_log_likelihood(np.array([[0.5, 0.3, 0.2]]), np.array([[2, 0, -1]]))
  assert np.exp(hand[0, 0]) == pytest.approx(0.2 * 0.5 / 0.8)


def test_image_only_posterior_by_hand():
  """Two users: the posterior weights are the prior times the Plackett-Luce probabilities."""
  world = World.create(TINY, 0)
  C = TINY.num_concepts
  topic = np.full((TINY.num_users, C), 1e-12, np.float32)
  topic[0, :2] = 0.5  # user 0 photographs concepts 0 and 1 only
  topic[1, [0, 1, 2]] = [0.25, 0.25, 0.5]  # user 1 also photographs concept 2
  topic[2, 5:] = 0.2  # user 2: concepts 5..9, disjoint from both
  world = _with_users(world, topic=topic)
  pool, log_prior = np.array([0, 1, 2]), np.log([1.0, 3.0, 2.0])
  c = np.array([[0, -1, -1], [0, 1, -1], [2, -1, -1], [7, 6, -1]])
  w = np.array([[1, 0, 0], [0.7, 0.3, 0], [1, 0, 0], [0.6, 0.4, 0]], np.float32)
  got = oracles.ImagePosterior(world, pool, log_prior).distribution(c, w)
  p = {u: world.true_tag_distribution(np.full(4, u), c, w) for u in pool}
  # Post 0, concept 0: 1 x .5 against 3 x .25: pi = (.4, .6).
  np.testing.assert_allclose(got[0], 0.4 * p[0][0] + 0.6 * p[1][0], atol=1e-6)
  # Post 1, concepts (0, 1): .5 x .5/.5 = .5 against 3 x .25 x .25/.75 = .25: pi = (2/3, 1/3).
  np.testing.assert_allclose(got[1], 2 / 3 * p[0][1] + 1 / 3 * p[1][1], atol=1e-6)
  # Post 2: only user 1 photographs concept 2; post 3: only user 2 photographs 6 and 7.
  np.testing.assert_allclose(got[2], p[1][2], atol=1e-6)
  np.testing.assert_allclose(got[3], p[2][3], atol=1e-6)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("oracle") / "tiny")
  build.build_synthetic(directory, preset="tiny", seed=2, split_scheme="user_disjoint",
                        posts_per_shard=300, log=None)
  return PostDataset(directory)


def _test_batch(ds, n=64):
  rows = ds.split_rows("test")[:n]
  return ds.read(rows, fields=("user_id",))


def test_image_only_oracle_mixes_the_training_users(dataset):
  oracle = oracles.OracleImageOnly(dataset)
  world = oracle.world
  train_users, n_train = np.unique(dataset.user_ids[dataset.split_rows("train")],
                                   return_counts=True)
  np.testing.assert_array_equal(oracle.posterior.pool, train_users)
  assert not np.isin(dataset.user_ids[dataset.split_rows("test")], oracle.posterior.pool).any()
  batch = _test_batch(dataset)
  c, w = oracle.latents(batch["row"])
  # pi(u | c) oc n_train(u) prod_j theta_{u, c_j} / (1 - sum_{i<j} theta_{u, c_i}), by loops.
  theta = world.params["user_topic"].astype(np.float64)
  weights = np.zeros((len(c), len(train_users)))
  for b, j in itertools.product(range(len(c)), range(len(train_users))):
    t, rest, like = theta[train_users[j]], theta[train_users[j]].sum(), 1.0
    for concept in c[b][c[b] >= 0]:
      like *= t[concept] / rest
      rest -= t[concept]
    weights[b, j] = n_train[j] * like
  expected = _brute_force(world, weights, c, w, train_users)
  np.testing.assert_allclose(oracle.scores(batch, 0, world.num_tags), expected, atol=1e-6)
  np.testing.assert_allclose(oracle.scores(batch, 10, 40), expected[:, 10:40], atol=1e-6)


def _metadata_enumeration(world, user, c, w):
  """The metadata posterior with the user's own habits, by enumerating the style groups."""
  p, cfg = world.params, world.config
  G = cfg.num_groups
  logits = -(p["user_age"][user] - p["group_age"]) ** 2 / 200.0
  logits += 1.2 * p["user_gender"][user] * p["group_gender"]
  logits += 1.0 * (p["user_country"][user] == p["group_country"])
  prior = np.exp(cfg.group_metadata_strength * logits)
  prior /= prior.sum()
  lam, kappa = cfg.group_topic_share, cfg.topic_concentration
  out = np.zeros((len(c), world.num_tags))
  total = np.zeros((len(c), 1))
  for g in range(G):
    alpha = kappa * ((1 - lam) * p["concept_popularity"] + lam * world.group_topics[g])
    like = np.ones(len(c))  # E[P(c | theta) | g]: Plackett-Luce in alpha
    for b in range(len(c)):
      rest = alpha.sum()
      for concept in c[b][c[b] >= 0]:
        like[b] *= alpha[concept] / rest
        rest -= alpha[concept]
    group = p["user_group"].copy()
    group[user] = g
    dist = _with_users(world, group=group).true_tag_distribution(np.full(len(c), user), c, w)
    out += (prior[g] * like)[:, None] * dist
    total += (prior[g] * like)[:, None]
  return out / total


def test_metadata_posterior_against_an_exact_enumeration(dataset, monkeypatch):
  """With every habit draw replaced by the user's own habits, only the style group and the
  topics are unknown, and the estimator must equal the exact sum over groups."""
  world = oracles.Oracle(dataset).world
  p = world.params

  def own_habits(rng, config, profiles, age, gender, n):
    del rng, config, profiles
    user = own_habits.user
    assert (age, gender) == (p["user_age"][user], p["user_gender"][user])
    return {"location": np.full(n, p["user_location_propensity"][user]),
            "social": np.full(n, p["user_social_propensity"][user]),
            "generic": np.full(n, p["user_generic_propensity"][user]),
            "generic_mix": np.tile(p["user_generic_mix"][user], (n, 1))}

  monkeypatch.setattr(su, "draw_habits", own_habits)
  posterior = oracles.MetadataPosterior(world)
  for user in dataset.user_ids[dataset.split_rows("test")][[0, -1]]:
    own_habits.user = user
    c, w = _posts(world, [user])
    got = posterior.distribution(np.full(len(c), user), c, w, num_draws=3)
    np.testing.assert_allclose(got, _metadata_enumeration(world, user, c, w), atol=1e-6)


def test_topics_integrate_out_as_plackett_luce_in_alpha():
  """E[P(c | theta)] over theta ~ the generator's floored Dirichlet(alpha_g) = PL(c; alpha_g)."""
  world = World.create(TINY, 0)
  p, cfg = world.params, world.config
  rng = np.random.default_rng(0)
  c = np.array([[3, -1, -1], [3, 1, -1], [0, 3, 8]])
  for g in range(cfg.num_groups):
    theta = su.draw_topics(rng, cfg, p["concept_popularity"], world.group_topics,
                           np.full(100_000, g))
    mc = np.exp(World.concept_log_likelihood(theta, c))  # [3, draws]
    alpha = su.topic_alpha(cfg, p["concept_popularity"], world.group_topics[[g]])
    exact = np.exp(World.concept_log_likelihood(alpha, c))[:, 0]
    se = mc.std(1) / np.sqrt(mc.shape[1])
    assert np.all(np.abs(mc.mean(1) - exact) < 5 * se + 1e-6), (g, mc.mean(1), exact)


def test_metadata_estimators_agree_and_settle(dataset):
  """The Rao-Blackwellised estimator (topics integrated, groups summed) and the plain one
  (every trait drawn, weighted by P(c | theta)) estimate the same posterior mean."""
  world = oracles.Oracle(dataset).world
  posterior = oracles.MetadataPosterior(world)
  batch = _test_batch(dataset, 40)
  c, w = oracles.Oracle(dataset).latents(batch["row"])
  reference = posterior.distribution(batch["user_id"], c, w, num_draws=4096)
  l1 = lambda q: np.abs(q - reference).sum(1)  # twice the total variation distance
  plain = posterior.distribution(batch["user_id"], c, w, num_draws=20_000, integrate_topics=False)
  assert l1(plain).max() < 0.05
  rb = posterior.distribution(batch["user_id"], c, w, num_draws=256)
  rb_small = posterior.distribution(batch["user_id"], c, w, num_draws=16)
  assert l1(rb).mean() < 0.025 < l1(rb_small).mean()  # the habit draws settle as 1 / sqrt(M)
  # Deterministic: the same draws for a user whatever else is in the batch.
  again = posterior.distribution(batch["user_id"][:5], c[:5], w[:5], num_draws=256)
  np.testing.assert_array_equal(again, rb[:5])
  np.testing.assert_allclose(rb.sum(1), 1.0, atol=1e-5)


def test_every_oracle_row_ranks_by_p_times_keep(dataset):
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, "balanced")
  assert keep.min() < 1
  batch = _test_batch(dataset, 16)
  V = dataset.num_tags
  natural, balanced = oracles.oracle_scorers(dataset), oracles.oracle_scorers(dataset, keep)
  assert [o.name for o in natural] == [o.name for o in balanced]
  for a, b in zip(natural, balanced):
    np.testing.assert_allclose(b.scores(batch, 0, V), a.scores(batch, 0, V) * keep, rtol=1e-6)
    np.testing.assert_allclose(b.scores(batch, 5, 17), a.scores(batch, 5, 17) * keep[5:17],
                               rtol=1e-6)
  scorers = baselines.reference_scorers(dataset, keep)
  assert all(s.keep is keep for s in scorers if isinstance(s, oracles.Oracle))
  assert len([s for s in scorers if isinstance(s, oracles.Oracle)]) == 4


def test_balanced_oracle_by_hand():
  """p = (.5, .3, .2) with the first tag kept 1 time in 4: the thinned truth holds tag 1 more
  often than tag 0 (.3 > .125), and the oracle ranks it first."""
  class Fixed(oracles.Oracle):
    def __init__(self, keep):  # no dataset: a fixed distribution
      self.keep, self._cached = keep, (None, None)

    def distribution(self, batch):
      return np.tile([0.5, 0.3, 0.2], (len(batch["row"]), 1))

  scores = Fixed(np.array([0.25, 1.0, 1.0])).scores({"row": np.arange(2)}, 0, 3)
  np.testing.assert_allclose(scores[0], [0.125, 0.3, 0.2])
  assert np.argmax(Fixed(None).scores({"row": np.arange(1)}, 0, 3)[0]) == 0


def test_reference_results_pass_keep_to_the_oracle(dataset):
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, "balanced")

  class Eval:
    ks, batch_size, vocabularies = (1, 10), 256, ("all",)

  config = type("Config", (), {"eval": Eval})
  balanced = report.reference_results(dataset, "test", keep, config)
  oracle = oracles.Oracle(dataset, keep)
  direct = evaluate.evaluate_scorers([oracle], dataset, "test", ks=(1, 10), keep=keep)
  assert balanced[oracle.name] == direct[oracle.name]
  sentence = report._oracle_sentence(dict(balanced, model=balanced[oracle.name]), "model",
                                     "balanced")
  assert "p(y) keep(y)" in sentence and "metadata-only" in sentence
