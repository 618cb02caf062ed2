"""Veit et al.'s triplet loss: candidates, mined negatives and the gradient, against brute force.

The reference enumerates every in-batch triplet that differs from a post's positive in one
element, scores it with the plain triple sum over W, h, f and u, and decides "observed" from the
posts themselves (a hashtag of the post, with the post's image and user).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.data.spec import DatasetSpec
from hashjax.losses import triplet
from hashjax.models.tensor import Tensor
from hashjax.training import objectives

B, T, NUM_TAGS, NUM_USERS = 7, 3, 6, 4


def _batch(seed: int):
  rng = np.random.default_rng(seed)
  tag_ids = np.full((B, T), -1, np.int32)
  tag_mask = np.zeros((B, T), bool)
  for b in range(B):
    n = int(rng.integers(0 if b == B - 1 else 1, T + 1))  # the last post may have no hashtag
    tag_ids[b, :n] = rng.choice(NUM_TAGS, n, replace=False)
    tag_mask[b, :n] = True
  return {"features": rng.normal(size=(B, 5)).astype(np.float32),
          # few users, so that users repeat and the image/user exclusions matter
          "user_index": rng.integers(0, NUM_USERS, B).astype(np.int32),
          "user_train_posts": np.ones(B, np.int32), "tag_ids": tag_ids, "tag_mask": tag_mask}


# The paper's form, and the options: a shared slice W_0, per-tag biases, a linear head output.
OPTIONS = [{}, {"shared_slice": True, "tag_bias": True, "image_dim": 3}]


def _model(**options):
  return Tensor(num_users=NUM_USERS, num_tags=NUM_TAGS, hidden=(4,), tag_dim=3, user_dim=2,
                **options)


def _variables(model, seed=0):
  spec = DatasetSpec(feature_dim=5, user_meta_dim=0, num_tags=NUM_TAGS, num_users=NUM_USERS,
                     max_tags_per_post=T)
  variables = model.init(jax.random.key(seed), spec)
  if model.shared_slice:  # away from the identity, so that a wrong transpose shows
    params = dict(variables["params"])
    params["shared"] = params["shared"] + jax.random.normal(jax.random.key(9),
                                                            params["shared"].shape)
    variables = {**variables, "params": params}
  return variables


class _Reference:
  """Scores of (tag, image of post j, user) by the plain sums over the parameters."""

  def __init__(self, model, variables, batch):
    params = variables["params"]
    self.f = np.asarray(model.module().apply(variables, batch["features"], False,
                                             method=lambda m, x, t: m.image(x, t)))
    self.h = np.asarray(params["tags"]["embedding"])
    self.bias = np.asarray(params["tags"]["bias"]) if model.tag_bias else np.zeros(NUM_TAGS)
    self.u = np.asarray(params["user"]["embedding"])
    self.W = np.asarray(params["tensor"])
    self.W0 = np.asarray(params["shared"]) if model.shared_slice else None

  def __call__(self, tag, post, user):
    h, f, u, W = self.h[tag], self.f[post], self.u[user], self.W
    s = sum(W[r, a, c] * h[a] * f[c] * u[r] for r, a, c in itertools.product(*map(range, W.shape)))
    if self.W0 is not None:
      s += h @ self.W0 @ f
    return s + self.bias[tag]


def _observed(batch, tag, post, user) -> bool:
  """Is (tag, image of `post`, `user`) a triplet of the data? Only the post's own user posted
  its image, with its own hashtags."""
  own = batch["tag_ids"][post][batch["tag_mask"][post]]
  return user == batch["user_index"][post] and tag in own


def _positives(seed):
  batch = _batch(seed)
  positive = np.array([ids[mask][0] if mask.any() else 0
                       for ids, mask in zip(batch["tag_ids"], batch["tag_mask"])], np.int32)
  return batch, positive, batch["tag_mask"].any(-1)


@pytest.mark.parametrize("seed", range(4))
def test_candidates_are_exactly_the_unobserved_in_batch_triplets(seed):
  batch, positive, has = _positives(seed)
  valid = np.asarray(triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive,
                                              has, batch["user_index"]))
  users = batch["user_index"]
  for b, c in itertools.product(range(B), range(B)):
    usable = has[b] and has[c]
    assert valid[0, b, c] == (usable and not _observed(batch, positive[c], b, users[b]))
    assert valid[1, b, c] == (usable and not _observed(batch, positive[b], c, users[b]))
    assert valid[2, b, c] == (usable and not _observed(batch, positive[b], b, users[c]))
  assert not valid[:, np.arange(B), np.arange(B)].any()  # never the positive itself


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("seed", range(2))
def test_axis_scores_are_the_plain_sums_with_one_element_replaced(seed, options):
  model = _model(**options)
  variables = _variables(model, seed)
  batch, positive, _ = _positives(seed)
  (s_tag, s_img, s_user), _ = model.train_axis_scores(variables, batch, positive,
                                                      jax.random.key(0))
  score, users = _Reference(model, variables, batch), batch["user_index"]
  for b, c in itertools.product(range(B), range(B)):
    np.testing.assert_allclose(s_tag[b, c], score(positive[c], b, users[b]), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(s_img[b, c], score(positive[b], c, users[b]), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(s_user[b, c], score(positive[b], b, users[c]), rtol=1e-4,
                               atol=1e-5)
  # the two-tower query scores the same triplets: q_b . row_c = S_tag[b, c]
  queries = model.query(variables, batch)
  np.testing.assert_allclose(queries @ model.tags(variables)[positive].T, s_tag, rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("seed", range(3))
def test_hard_negatives_are_the_best_scoring_unobserved_triplets(seed, options):
  model = _model(**options)
  variables = _variables(model, seed)
  batch, positive, has = _positives(seed)
  scores = jnp.stack(model.train_axis_scores(variables, batch, positive, jax.random.key(0))[0])
  valid = triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive, has,
                                   batch["user_index"])
  negatives = triplet.choose_negatives(jax.random.key(1), scores, valid)
  score, users = _Reference(model, variables, batch), batch["user_index"]
  for b in range(B):
    if not has[b]:
      assert not np.asarray(negatives.hard_exists[:, b]).any()
      continue
    # every in-batch triplet differing from b's positive in one element, brute force
    along = {
        0: [(score(positive[c], b, users[b]), c) for c in range(B)
            if has[c] and not _observed(batch, positive[c], b, users[b])],
        1: [(score(positive[b], c, users[b]), c) for c in range(B)
            if has[c] and not _observed(batch, positive[b], c, users[b])],
        2: [(score(positive[b], b, users[c]), c) for c in range(B)
            if has[c] and not _observed(batch, positive[b], b, users[c])],
    }
    for axis, candidates in along.items():
      assert bool(negatives.hard_exists[axis, b]) == bool(candidates)
      if candidates:
        best = max(s for s, _ in candidates)
        chosen = int(negatives.hard[axis, b])
        assert chosen in [c for _, c in candidates]
        np.testing.assert_allclose(dict((c, s) for s, c in candidates)[chosen], best,
                                   rtol=1e-5, atol=1e-6)


def test_intermediate_negatives_are_uniform_over_the_valid_candidates():
  batch, positive, has = _positives(1)
  valid = triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive, has,
                                   batch["user_index"])
  scores = jnp.zeros((3, B, B))
  draws = 4000
  picks = jax.vmap(lambda k: triplet.choose_negatives(k, scores, valid).intermediate)(
      jax.random.split(jax.random.key(0), draws))  # [draws, 3, B]
  valid = np.asarray(valid)
  for axis, b in itertools.product(range(3), range(B)):
    allowed = np.flatnonzero(valid[axis, b])
    if not len(allowed):
      continue
    counts = np.bincount(np.asarray(picks[:, axis, b]), minlength=B)
    assert set(np.flatnonzero(counts)) <= set(allowed)
    expected = draws / len(allowed)  # within 5 standard deviations of a binomial
    sd = np.sqrt(draws * (1 / len(allowed)) * (1 - 1 / len(allowed)))
    assert np.all(np.abs(counts[allowed] - expected) <= 5 * sd + 1e-9), (axis, b, counts)


def test_hinge_on_a_hand_computed_case():
  scores = jnp.array([[[2.0, 1.5], [0.0, 3.0]],  # tag axis
                      [[2.0, 2.5], [4.0, 3.0]],  # image axis
                      [[2.0, 0.0], [1.0, 3.0]]])  # user axis
  idx = jnp.array([[1, 0]] * 3)
  present = jnp.array([[True, True], [True, True], [True, False]])
  negatives = triplet.Negatives(idx, present, idx, present)
  per_post, hinges = triplet.triplet_hinge(scores, negatives, margin=1.0)
  # post 0 (s+ = 2): tag 1.5 -> 0.5, image 2.5 -> 1.5, user 0 -> 0; post 1 (s+ = 3): tag 0 -> 0,
  # image 4 -> 2, user absent. Intermediate and hard chose the same here, so twice each.
  np.testing.assert_allclose(per_post, [2 * (0.5 + 1.5), 2 * 2.0])
  assert hinges.shape == (6, 2)


def _assert_same_loss_and_gradient(loss, naive, params):
  """loss and naive agree in value and gradient at params; returns loss's gradient."""
  np.testing.assert_allclose(loss(params), naive(params), rtol=1e-5)
  got, want = jax.grad(loss)(params), jax.grad(naive)(params)
  for (path, g), w in zip(jax.tree.leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  return got


@pytest.mark.parametrize("options", OPTIONS)
def test_objective_gradient_equals_autodiff_of_the_naive_triple_sum(options):
  """The loss through [B, B] contractions has the gradient of the plain B x B x B version."""
  model, objective = _model(**options), objectives.Triplet()
  variables = _variables(model, 3)
  batch = {k: jnp.asarray(v) for k, v in _batch(3).items()}
  rng = jax.random.key(7)
  label_key, negative_key, _ = jax.random.split(rng, 3)
  positive, has = objectives.targets.uniform_positive(label_key, batch["tag_ids"],
                                                      batch["tag_mask"])

  def naive(params):
    v = {**variables, "params": params}
    h = params["tags"]["embedding"][positive]
    f = model.module().apply(v, batch["features"], False, method=lambda m, x, t: m.image(x, t))
    u = params["user"]["embedding"][batch["user_index"]]
    full = jnp.einsum("rac,ia,jc,kr->ijk", params["tensor"], h, f, u)  # every in-batch triplet
    if model.shared_slice:
      full = full + jnp.einsum("ac,ia,jc->ij", params["shared"], h, f)[:, :, None]
    if model.tag_bias:
      full = full + params["tags"]["bias"][positive][:, None, None]
    b, c = jnp.arange(B)[:, None], jnp.arange(B)[None, :]
    scores = jnp.stack([full[c, b, b], full[b, c, b], full[b, b, c]])
    valid = triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive, has,
                                     batch["user_index"])
    negatives = triplet.choose_negatives(negative_key, scores, valid)
    per_post, _ = triplet.triplet_hinge(scores, negatives)
    return jnp.where(has, per_post, 0).sum() / has.sum()

  loss = lambda params: objective(model, {**variables, "params": params}, batch, rng)[0]
  got = _assert_same_loss_and_gradient(loss, naive, variables["params"])
  assert any(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(got))
  # and a central difference along a random direction (float64 would be tighter; fp32 here)
  direction = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape), got)
  eps = 1e-3
  shifted = lambda s: loss(jax.tree.map(lambda p, d: p + s * eps * d, variables["params"],
                                        direction))
  numeric = (shifted(1) - shifted(-1)) / (2 * eps)
  analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(got),
                                                jax.tree.leaves(direction)))
  np.testing.assert_allclose(numeric, analytic, rtol=2e-2, atol=1e-4)


def test_a_model_without_axis_scores_is_refused():
  from hashjax.models.mlp import MLPClassifier  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="no train_axis_scores"):
    objectives.Triplet()(MLPClassifier(num_tags=3), {}, {}, jax.random.key(0))


@pytest.mark.parametrize("seed", range(3))
def test_vocabulary_tag_candidates_are_every_hashtag_the_post_does_not_carry(seed):
  batch, positive, has = _positives(seed)
  tag_valid, image_valid, user_valid = map(np.asarray, triplet.valid_candidates(
      batch["tag_ids"], batch["tag_mask"], positive, has, batch["user_index"], NUM_TAGS))
  in_batch = np.asarray(triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive,
                                                 has, batch["user_index"]))
  for b, v in itertools.product(range(B), range(NUM_TAGS)):
    assert tag_valid[b, v] == (has[b] and not _observed(batch, v, b, batch["user_index"][b]))
  np.testing.assert_array_equal(image_valid, in_batch[1])  # the other axes are unchanged
  np.testing.assert_array_equal(user_valid, in_batch[2])


@pytest.mark.parametrize("options", OPTIONS)
def test_vocabulary_hard_tag_negatives_are_the_best_unobserved_hashtags_of_all(options):
  model = _model(**options)
  variables = _variables(model, 2)
  batch, positive, has = _positives(2)
  scores, _ = model.train_axis_scores(variables, {**batch, "tag_candidates": np.arange(NUM_TAGS)},
                                      positive, jax.random.key(0))
  valid = triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive, has,
                                   batch["user_index"], NUM_TAGS)
  negatives = triplet.choose_negatives(jax.random.key(1), scores, valid)
  score, users = _Reference(model, variables, batch), batch["user_index"]
  for b in range(B):
    np.testing.assert_allclose(scores[0][b], [score(v, b, users[b]) for v in range(NUM_TAGS)],
                               rtol=1e-4, atol=1e-5)
    candidates = {v: score(v, b, users[b]) for v in range(NUM_TAGS)
                  if has[b] and not _observed(batch, v, b, users[b])}
    assert bool(negatives.hard_exists[0, b]) == bool(candidates)
    if candidates:
      assert int(negatives.hard[0, b]) in candidates
      assert int(negatives.intermediate[0, b]) in candidates
      np.testing.assert_allclose(candidates[int(negatives.hard[0, b])],
                                 max(candidates.values()), rtol=1e-5, atol=1e-6)


def test_objective_with_vocabulary_candidates_equals_the_naive_sum_over_every_hashtag():
  model, objective = _model(), objectives.Triplet(tag_candidates="vocabulary")
  variables = _variables(model, 4)
  batch = {k: jnp.asarray(v) for k, v in _batch(4).items()}
  rng = jax.random.key(3)
  label_key, negative_key, _ = jax.random.split(rng, 3)
  positive, has = objectives.targets.uniform_positive(label_key, batch["tag_ids"],
                                                      batch["tag_mask"])

  def naive(params):
    v = {**variables, "params": params}
    table = params["tags"]["embedding"]
    f = model.module().apply(v, batch["features"], False, method=lambda m, x, t: m.image(x, t))
    u = params["user"]["embedding"][batch["user_index"]]
    every_tag = jnp.einsum("rac,ya,bc,br->by", params["tensor"], table, f, u)  # s(y, b, b)
    h = table[positive]
    full = jnp.einsum("rac,ia,jc,kr->ijk", params["tensor"], h, f, u)
    b, c = jnp.arange(B)[:, None], jnp.arange(B)[None, :]
    scores = (every_tag, full[b, c, b], full[b, b, c])
    valid = triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive, has,
                                     batch["user_index"], NUM_TAGS)
    per_post, _ = triplet.triplet_hinge(scores, triplet.choose_negatives(negative_key, scores,
                                                                         valid))
    return jnp.where(has, per_post, 0).sum() / has.sum()

  loss = lambda params: objective(model, {**variables, "params": params}, batch, rng)[0]
  got = _assert_same_loss_and_gradient(loss, naive, variables["params"])
  assert np.abs(np.asarray(got["tags"]["embedding"])).max() > 0
  with pytest.raises(ValueError, match="tag_candidates"):
    objectives.Triplet(tag_candidates="users")(model, variables, batch, rng)
