"""The sampled softmax: the proposals against their formulas, the logits and the loss against
numpy, its gradient against the full softmax's as S grows, the objective end to end, and the
jaxpr of a step at K = 100,003 for any [posts x K] array."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from hashjax.data.spec import DatasetSpec
from hashjax.losses import sampled_softmax as ss
from hashjax.losses import targets
from hashjax.models import denton
from hashjax.models.durand import Durand
from hashjax.models.flax_adapter import FlaxTwoTower
from hashjax.training import objectives
from tests import toy_models


def _log_uniform(num_tags):
  k = np.arange(num_tags, dtype=np.float64)
  return np.log((k + 2) / (k + 1)) / np.log(num_tags + 1)


def _chi_square(counts, expected):
  return float(((counts - expected) ** 2 / expected).sum())


# -- the proposals -----------------------------------------------------------------------------

@pytest.mark.parametrize("num_tags", [1, 7, 1000, 100_003])
def test_log_uniform_probabilities_are_the_formula_and_sum_to_one(num_tags):
  log_q = ss.proposal_log_prob(jnp.arange(num_tags), num_tags, "log_uniform")
  q = np.exp(np.asarray(log_q, np.float64))
  np.testing.assert_allclose(q, _log_uniform(num_tags), rtol=2e-6)
  assert abs(q.sum() - 1) < 1e-5
  uniform = np.exp(np.asarray(ss.proposal_log_prob(jnp.arange(num_tags), num_tags, "uniform")))
  np.testing.assert_allclose(uniform, 1 / num_tags, rtol=1e-6)


@pytest.mark.parametrize("proposal,num_tags", [("uniform", 50), ("log_uniform", 1000)])
def test_draw_frequencies_follow_the_proposal(proposal, num_tags):
  draws = 200_000
  q = _log_uniform(num_tags) if proposal == "log_uniform" else np.full(num_tags, 1 / num_tags)
  candidates = ss.sample_candidates(jax.random.key(0), draws, num_tags, proposal)
  ids = np.asarray(candidates.ids)
  assert ids.min() >= 0 and ids.max() < num_tags
  np.testing.assert_allclose(candidates.log_expected_count, np.log(draws * q[ids]), rtol=1e-5)
  # The plain sequential reference: one draw at a time by the inverse CDF in float64. Both
  # samplers' chi-square statistics against Q must sit in the band of a chi-square with K - 1
  # degrees of freedom (mean K - 1, sd sqrt(2 (K - 1))): 5 sd.
  rng = np.random.default_rng(0)
  cdf = np.cumsum(q)
  reference = np.empty(draws, np.int64)
  for i, u in enumerate(rng.random(draws)):
    reference[i] = min(np.searchsorted(cdf, u, side="right"), num_tags - 1)
  dof = num_tags - 1
  for sample in (ids, reference):
    counts = np.bincount(sample, minlength=num_tags)
    assert abs(_chi_square(counts, draws * q) - dof) < 5 * np.sqrt(2 * dof)


def test_log_uniform_is_exact_by_octave_at_the_papers_vocabulary():
  # K = 442k (Durand et al.'s training vocabulary): the octave masses, and the shape inside
  # the last full octave (r = k + 1 in [2^17, 2^18)), where a float32 inverse CDF would
  # quantise each tag's probability (~1e-6) to whole steps of u.
  num_tags, draws, chunk = 442_000, 1_000_000, 100_000
  sample = jax.jit(lambda k: ss.sample_candidates(k, chunk, num_tags).ids)  # [chunk, tries] each
  ids = np.concatenate([sample(jax.random.fold_in(jax.random.key(1), i))
                        for i in range(draws // chunk)])
  assert ids.min() >= 0 and ids.max() < num_tags
  q = _log_uniform(num_tags)
  r = ids + 1
  edges = [2 ** m for m in range(19)] + [num_tags + 1]
  counts = np.histogram(r, edges)[0]
  mass = np.array([q[lo - 1:hi - 1].sum() for lo, hi in zip(edges[:-1], edges[1:])])
  sd = np.sqrt(draws * mass * (1 - mass))
  assert np.all(np.abs(counts - draws * mass) < 5 * sd)
  inner = np.linspace(2 ** 17, 2 ** 18, 9).astype(int)
  counts = np.histogram(r, inner)[0]
  mass = np.array([q[lo - 1:hi - 1].sum() for lo, hi in zip(inner[:-1], inner[1:])])
  assert np.all(np.abs(counts - draws * mass) < 5 * np.sqrt(draws * mass))


def test_unknown_proposals_and_empty_vocabularies_are_refused():
  with pytest.raises(ValueError, match="proposal must be one of"):
    ss.sample_candidates(jax.random.key(0), 4, 10, "unigram")
  with pytest.raises(ValueError, match="at least one hashtag"):
    ss.sample_candidates(jax.random.key(0), 4, 0, "uniform")


# -- the logits and the loss -------------------------------------------------------------------

def _tiny(proposal="log_uniform"):
  rng = np.random.default_rng(3)
  num_tags = 6
  table = rng.normal(size=(num_tags, 2)).astype(np.float32)
  queries = rng.normal(size=(3, 2)).astype(np.float32)
  labels = np.array([2, 0, 4], np.int32)
  ids = np.array([2, 5, 2, 0], np.int32)  # post 0 hits twice, post 1 once, post 2 never
  log_q = np.asarray(ss.proposal_log_prob(ids, num_tags, proposal), np.float64)
  candidates = ss.Candidates(jnp.asarray(ids), jnp.asarray(log_q + np.log(4), jnp.float32))
  return queries, table, labels, candidates


@pytest.mark.parametrize("proposal", ["uniform", "log_uniform"])
@pytest.mark.parametrize("remove", [True, False])
def test_logits_and_loss_are_the_hand_computation(proposal, remove):
  queries, table, labels, candidates = _tiny(proposal)
  ids = np.asarray(candidates.ids)
  q = _log_uniform(6)[ids] if proposal == "log_uniform" else np.full(4, 1 / 6)
  expected = np.empty((3, 5))
  for n in range(3):
    expected[n, 0] = queries[n] @ table[labels[n]]
    for j in range(4):
      hit = remove and ids[j] == labels[n]
      expected[n, 1 + j] = -np.inf if hit else queries[n] @ table[ids[j]] - np.log(4 * q[j])
  logits = ss.sampled_logits(queries, table[labels], labels, candidates, table[ids], remove)
  np.testing.assert_allclose(logits, expected, rtol=1e-5)
  if remove:
    assert np.isneginf(np.asarray(logits)[[0, 0, 1], [1, 3, 4]]).all()
  m = expected.max(axis=1, keepdims=True)
  loss = np.log(np.exp(expected - m).sum(axis=1)) + m[:, 0] - expected[:, 0]
  np.testing.assert_allclose(ss.sampled_softmax_loss(queries, table[labels], labels, candidates,
                                                     table[ids], remove), loss, rtol=1e-5)


def test_a_post_whose_every_sample_is_a_hit_has_loss_zero_and_a_zero_gradient():
  queries, table, _, _ = _tiny()
  labels = np.array([3, 3, 3], np.int32)
  candidates = ss.Candidates(jnp.array([3, 3]), jnp.zeros(2))
  loss_fn = lambda q: ss.sampled_softmax_loss(q, table[labels], labels, candidates,
                                              table[[3, 3]]).sum()
  np.testing.assert_allclose(loss_fn(queries), 0.0, atol=1e-7)
  np.testing.assert_allclose(jax.grad(loss_fn)(queries), 0.0, atol=1e-7)


def test_gradients_match_central_differences():
  queries, table, labels, candidates = _tiny()
  ids = np.asarray(candidates.ids)
  loss_fn = lambda q, pos, samp: ss.sampled_softmax_loss(q, pos, labels, candidates, samp).sum()
  check_grads(loss_fn, (queries, table[labels], table[ids]), order=2, modes=("rev",),
              eps=1e-2, atol=2e-2, rtol=2e-2)
  # And through a shared table: the positive's and the samples' rows are the same parameters.
  on_table = lambda q, t: ss.sampled_softmax_loss(q, t[labels], labels, candidates, t[ids]).sum()
  check_grads(on_table, (queries, table), order=1, modes=("rev", "fwd"), eps=1e-2,
              atol=2e-2, rtol=2e-2)


def test_the_expected_gradient_tends_to_the_full_softmaxs():
  # Small vocabulary, many draws: the mean over R draws of the sampled gradient (w.r.t. the
  # queries and the whole table) against the full softmax's. The bias is O(1/S); the Monte
  # Carlo error of the mean is ~0.1% of |g| at S = 500 (R = 4000).
  num_tags, num_posts, dim, draws = 20, 6, 4, 4000
  rng = np.random.default_rng(0)
  queries = jnp.asarray(rng.normal(size=(num_posts, dim)), jnp.float32)
  table = jnp.asarray(rng.normal(size=(num_tags, dim)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, num_tags, num_posts), jnp.int32)
  zeros = jnp.zeros(num_posts, jnp.int32)

  def flat(grads):
    return jnp.concatenate([g.ravel() for g in grads])

  full = flat(jax.grad(lambda q, t: optax.softmax_cross_entropy_with_integer_labels(
      q @ t.T, labels).mean(), argnums=(0, 1))(queries, table))

  def sampled(q, t, key, num_samples, tf_form):
    candidates = ss.sample_candidates(key, num_samples, num_tags, "uniform")
    logits = ss.sampled_logits(q, t[labels], labels, candidates, t[candidates.ids])
    if tf_form:  # TF's sampled_softmax_loss: the positive's logit corrected too
      logits = logits.at[:, 0].add(-np.log(num_samples / num_tags))
    return optax.softmax_cross_entropy_with_integer_labels(logits, zeros).mean()

  def error(num_samples, tf_form=False):
    keys = jax.random.split(jax.random.key(1), draws)
    grads = jax.jit(jax.vmap(lambda k: flat(jax.grad(sampled, argnums=(0, 1))(
        queries, table, k, num_samples, tf_form))))(keys)
    return float(jnp.linalg.norm(grads.mean(axis=0) - full) / jnp.linalg.norm(full))

  errors = {s: error(s) for s in (5, 50, 500)}
  print("relative error of the mean sampled gradient:", errors)  # 0.14, 0.018, 0.0019 measured
  assert errors[5] > errors[50] > errors[500]
  assert errors[500] < 0.01
  # TF's form is the softmax over the candidates: it does not tend to the full softmax.
  assert error(500, tf_form=True) > 0.05


# -- the objective -----------------------------------------------------------------------------

SPEC = DatasetSpec(feature_dim=6, user_meta_dim=0, num_tags=9, num_users=4, num_seen_tags=6)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  tag_ids = np.array([[1, 4, -1], [0, -1, -1], [8, 2, 5], [3, -1, -1], [6, 7, -1]])
  return {"features": jnp.asarray(rng.standard_normal((5, 6)), jnp.float32),
          "tag_ids": jnp.asarray(tag_ids), "tag_mask": jnp.asarray(tag_ids >= 0)}


def _bilinear():
  model = denton.Bilinear(d=4, init_std=0.5)
  return model, model.init(jax.random.key(0), SPEC)


def _by_hand(queries, table, labels, has_positive, ids, num_tags, proposal):
  """Per-post sampled loss in numpy float64, over the posts with a positive."""
  queries, table = np.asarray(queries, np.float64), np.asarray(table, np.float64)
  q = _log_uniform(num_tags)[ids] if proposal == "log_uniform" else np.full(len(ids), 1 / num_tags)
  out = []
  for n in np.flatnonzero(has_positive):
    positive = queries[n] @ table[labels[n]]
    sampled = queries[n] @ table[ids].T - np.log(len(ids) * q)
    sampled = sampled[ids != labels[n]]
    out.append(np.log(np.exp(positive) + np.exp(sampled).sum()) - positive)
  return np.array(out)


@pytest.mark.parametrize("proposal", ["uniform", "log_uniform"])
@pytest.mark.parametrize("vocabulary", ["all", "seen"])
def test_objective_is_the_sampled_loss_of_the_drawn_positives(proposal, vocabulary):
  model, variables = _bilinear()
  batch = _batch()
  key = jax.random.key(4)
  objective = objectives.make_objective({"name": "sampled_softmax", "num_samples": 7,
                                         "proposal": proposal, "vocabulary": vocabulary}, SPEC)
  loss, aux, updates = jax.jit(lambda v, k: objective(model, v, batch, k))(variables, key)
  num_tags = 6 if vocabulary == "seen" else 9
  label_key, _ = jax.random.split(key)
  mask = batch["tag_mask"] & (batch["tag_ids"] < num_tags)
  labels, has = targets.uniform_positive(label_key, batch["tag_ids"], mask)
  ids = np.asarray(ss.sample_candidates(jax.random.fold_in(key, 2), 7, num_tags, proposal).ids)
  assert ids.max() < num_tags
  per_post = _by_hand(model.query(variables, batch), model.tags(variables), np.asarray(labels),
                      np.asarray(has), ids, num_tags, proposal)
  np.testing.assert_allclose(loss, per_post.mean(), rtol=1e-5)
  assert updates == {} and 0 <= aux["accidental_hits"] <= 1


@pytest.mark.parametrize("vocabulary", ["all", "seen"])
def test_objective_tends_to_the_softmax_objective_with_many_samples(vocabulary):
  model, variables = _bilinear()
  batch = _batch()
  key = jax.random.key(5)
  full = objectives.Softmax(vocabulary=vocabulary).for_dataset(SPEC)
  sampled = objectives.SampledSoftmax(num_samples=50_000, proposal="uniform",
                                      vocabulary=vocabulary).for_dataset(SPEC)
  a, _, _ = full(model, variables, batch, key)  # same key: the same drawn positives
  b = jax.jit(lambda v: sampled(model, v, batch, key)[0])(variables)
  np.testing.assert_allclose(b, a, atol=0.02)


def _sequences():
  rng = np.random.default_rng(2)
  seq_mask = np.array([[True, True, True, False], [True, True, False, False]])
  target_mask = np.array([[False, True, True, False], [True, False, False, False]])
  tag_ids = rng.integers(0, 9, (2, 4, 2))
  return {"features": jnp.asarray(rng.standard_normal((2, 4, 6)), jnp.float32),
          "seq_mask": jnp.asarray(seq_mask), "target_mask": jnp.asarray(target_mask),
          "tag_ids": jnp.asarray(tag_ids),
          "tag_mask": jnp.asarray(seq_mask[..., None] & np.array([True, False]))}


def test_objective_averages_over_users_on_sequences():
  model = toy_models.HistoryMean(d=4)
  variables = model.init(jax.random.key(1), SPEC)
  batch = _sequences()
  key = jax.random.key(6)
  objective = objectives.SampledSoftmax(num_samples=5, proposal="log_uniform", average="users")
  loss, _, _ = jax.jit(lambda v: objective(model, v, batch, key))(variables)
  queries = model.query(variables, batch).reshape(8, -1)
  labels = np.asarray(batch["tag_ids"][..., 0]).reshape(8)  # one hashtag per post
  counted = np.asarray(batch["target_mask"]).reshape(8)
  ids = np.asarray(ss.sample_candidates(jax.random.fold_in(key, 2), 5, 9, "log_uniform").ids)
  per_post = _by_hand(queries, model.tags(variables), labels, np.ones(8, bool), ids, 9,
                      "log_uniform")
  # User 0 has two target posts (1, 2), user 1 one (4): eq. 9 weighs the users equally.
  expected = (per_post[[1, 2]].mean() + per_post[4]) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert per_post[counted].mean() != pytest.approx(expected)  # the mean over posts differs
  # And in the limit, the softmax objective's eq. 9.
  many = objectives.SampledSoftmax(num_samples=50_000, proposal="uniform", average="users")
  a, _, _ = objectives.Softmax(average="users")(model, variables, batch, key)
  b = jax.jit(lambda v: many(model, v, batch, key)[0])(variables)
  np.testing.assert_allclose(b, a, atol=0.02)


def test_objective_checks_its_options_and_skips_posts_without_hashtags():
  with pytest.raises(ValueError, match="loss 'sampled_softmax': proposal must be"):
    objectives.make_objective({"name": "sampled_softmax", "proposal": "unigram"})
  with pytest.raises(ValueError, match="loss 'sampled_softmax': average must be"):
    objectives.make_objective({"name": "sampled_softmax", "average": "tags"})
  with pytest.raises(ValueError, match="num_samples must be >= 1"):
    objectives.make_objective({"name": "sampled_softmax", "num_samples": 0})
  model, variables = _bilinear()
  with pytest.raises(ValueError, match="needs the dataset's spec"):
    objectives.SampledSoftmax(vocabulary="seen")(model, variables, _batch(), jax.random.key(0))
  with pytest.raises(ValueError, match="averaged over users needs user sequences"):
    objectives.SampledSoftmax(average="users")(model, variables, _batch(), jax.random.key(0))
  batch = _batch()
  emptied = dict(batch, tag_mask=batch["tag_mask"].at[1].set(False))
  objective = objectives.SampledSoftmax(num_samples=16)
  grads = jax.jit(jax.grad(lambda v: objective(model, v, emptied, jax.random.key(5))[0]))(
      variables)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


# -- the tag rows and the cost -----------------------------------------------------------------

BIG = 100_003
BIG_WORDS = np.random.default_rng(0).normal(size=(BIG, 3)).astype(np.float32)
BIG_SPEC = DatasetSpec(feature_dim=5, user_meta_dim=0, num_tags=BIG, num_users=4,
                       word_vector_dim=3, max_tags_per_post=2)


def _durand(**kwargs):
  # joint_dim 2, not w = 3: the tower's [K, d] output must not look like psi's [K, w] param.
  return Durand(words=BIG_WORDS, post_dim=4, user_dim=4, image_dim=4, fused_dim=4, joint_dim=2,
                tag_hidden=5, mutan_rank=2, **kwargs)


def _big_sequences():
  rng = np.random.default_rng(1)
  seq_mask = np.array([[True, True, True], [True, True, False]])
  return {"features": jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32),
          "seq_mask": jnp.asarray(seq_mask), "target_mask": jnp.asarray(seq_mask),
          "tag_ids": jnp.asarray(rng.integers(0, BIG, (2, 3, 2)), jnp.int32),
          "tag_mask": jnp.asarray(seq_mask[..., None] & np.array([True, True]))}


@pytest.mark.parametrize("word_vectors", ["fixed", "learned"])
def test_durand_tags_for_is_the_tag_table_at_those_ids(word_vectors):
  model = _durand(word_vectors=word_vectors)
  variables = model.init(jax.random.key(0), BIG_SPEC)
  ids = jnp.array([[0, 7], [BIG - 1, 7]])
  np.testing.assert_allclose(model.tags_for(variables, ids), model.tags(variables)[ids],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(objectives.tag_rows(model, variables, ids),
                             model.tags(variables)[ids], rtol=1e-5, atol=1e-6)
  # The flax adapter's default, the gather from the whole table, agrees.
  np.testing.assert_allclose(FlaxTwoTower.tags_for(model, variables, ids),
                             model.tags(variables)[ids], rtol=1e-5, atol=1e-6)


def _shapes(jaxpr):
  """Every array shape in a (closed) jaxpr, nested jaxprs (pjit, custom_jvp, scan...) too."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  shapes = [v.aval.shape for v in list(jaxpr.invars) + list(jaxpr.constvars)]
  for eqn in jaxpr.eqns:
    shapes += [getattr(v.aval, "shape", ()) for v in list(eqn.invars) + list(eqn.outvars)]
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
          shapes += _shapes(sub)
  return shapes


def _with_vocabulary_axis(objective, model, variables, batch):
  """Shapes with a dimension K in the jaxpr of a training step's loss and gradient, other
  than the parameters' own (a [K, d] table and its gradient are the model, not the loss)."""
  step = jax.value_and_grad(lambda v: objective(model, v, batch, jax.random.key(0))[0])
  params = {np.shape(p) for p in jax.tree.leaves(variables)}
  return {s for s in _shapes(jax.make_jaxpr(step)(variables)) if BIG in s and s not in params}


@pytest.mark.parametrize("proposal", ["uniform", "log_uniform"])
def test_no_array_spans_the_vocabulary(proposal):
  objective = objectives.SampledSoftmax(num_samples=64, proposal=proposal)
  # A learned table (the gather default) on posts...
  model = denton.Bilinear(d=4)
  variables = model.init(jax.random.key(0), BIG_SPEC)
  batch = {"features": jnp.ones((5, 5)), "tag_ids": jnp.array([[1, BIG - 1]] * 5),
           "tag_mask": jnp.ones((5, 2), bool)}
  assert _with_vocabulary_axis(objective, model, variables, batch) == set()
  # ... where the full softmax has its [posts x K] scores (the check can see them).
  assert (5, BIG) in _with_vocabulary_axis(objectives.Softmax(), model, variables, batch)
  # Durand's computed tag tower, on user sequences: phi_tag on the sampled ids only.
  model = _durand()
  variables = model.init(jax.random.key(0), BIG_SPEC)
  batch = _big_sequences()
  assert _with_vocabulary_axis(objective, model, variables, batch) == set()
  dense = _with_vocabulary_axis(objectives.Softmax(), model, variables, batch)
  assert (BIG, 2) in dense and (6, BIG) in dense  # the tower over all K, then the scores
