"""Tests for hashjax.losses.warp: the vectorised WARP sampler against its sequential specification."""

import fractions

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from scipy import stats

from hashjax.losses import warp

P_MIN = 1e-3  # chi-square tests fail below this p-value


def warp_sample_reference(rng: np.random.Generator, scores_row: np.ndarray, pos_ids, pos_index: int,
                          margin: float, max_trials: int, include_positives: bool = False):
  """The specification, for one positive: draw until a violator or max_trials draws.

  Returns (number of draws, violating tag id) or (max_trials, None).
  include_positives=True is a deliberately wrong sampler (draws from all tags) used to
  show that the distribution tests can fail.
  """
  tags = np.arange(len(scores_row))
  candidates = tags if include_positives else np.setdiff1d(tags, pos_ids)
  threshold = np.float32(scores_row[pos_ids[pos_index]]) - np.float32(margin)
  for n in range(1, max_trials + 1):
    y = candidates[rng.integers(len(candidates))]
    if scores_row[y] > threshold:
      return n, int(y)
  return max_trials, None


# ----------------------------------------------------------------------------
# One post, fixed scores: the distribution of (N, violator) against the exact law.
# ----------------------------------------------------------------------------

Y = 20
POST = [2, 7, 15]           # the post's positives
PAD_ID = 0                  # padding id: a real tag, and a violator of tag 2 (must stay drawable)
MAX_TRIALS = 5              # small, so that "no violator" has real mass
MARGIN = 0.1
SCORES = np.linspace(-3.0, 0.5, Y).astype(np.float32)
# The positives: 7 would violate for 2 if it were drawable; every negative violates for 15.
SCORES[[2, 7, 15]] = [1.0, 3.0, -10.0]
SCORES[0] = 5.0             # violates for 2 and 7
SCORES[9] = 1.5             # violates for 2
SCORES[19] = 0.95           # violates for 2 (threshold 0.9)
SCORES[3] = 0.89            # just below 2's threshold
NEGATIVES = np.setdiff1d(np.arange(Y), POST)


def exact_law(pos_index: int):
  """Probabilities of the outcomes [no violator, N = 1, ..., N = MAX_TRIALS] and the violator
  set, for positive POST[pos_index]: N is geometric with p = #violators / #negatives,
  truncated at MAX_TRIALS, and the violator is uniform over the violators."""
  threshold = np.float32(SCORES[POST[pos_index]]) - np.float32(MARGIN)
  violators = NEGATIVES[SCORES[NEGATIVES] > threshold]
  p = len(violators) / len(NEGATIVES)
  n = np.arange(1, MAX_TRIALS + 1)
  return np.append((1 - p) ** MAX_TRIALS, (1 - p) ** (n - 1) * p), violators


def chi_square_p(observed, probs):
  """Goodness of fit; an outcome of probability 0 gives p = 0, else such categories are left out."""
  observed, probs = np.asarray(observed, float), np.asarray(probs, float)
  if observed[probs == 0].sum() > 0:
    return 0.0
  observed, probs = observed[probs > 0], probs[probs > 0]
  if len(probs) == 1:
    return 1.0
  return stats.chisquare(observed, probs / probs.sum() * observed.sum()).pvalue


def outcome_counts(num_draws, found):
  """Counts of [no violator, N = 1, ..., N = MAX_TRIALS, N > MAX_TRIALS (impossible)]."""
  outcome = np.where(found, np.minimum(num_draws, MAX_TRIALS + 1), 0)
  return np.bincount(outcome, minlength=MAX_TRIALS + 2)


def law_p_values(num_draws, neg_ids, found, pos_index: int):
  """p-values of (N incl. 'not found', violator id) against the exact law."""
  probs, violators = exact_law(pos_index)
  id_counts = np.bincount(neg_ids[found], minlength=Y)
  id_probs = np.isin(np.arange(Y), violators).astype(float)
  return (chi_square_p(outcome_counts(num_draws, found), np.append(probs, 0.0)),
          chi_square_p(id_counts, id_probs))


def run_reference(num: int, pos_index: int, seed: int, include_positives: bool = False):
  rng = np.random.default_rng(seed)
  draws = [warp_sample_reference(rng, SCORES, POST, pos_index, MARGIN, MAX_TRIALS,
                                 include_positives) for _ in range(num)]
  num_draws = np.array([n for n, _ in draws])
  found = np.array([y is not None for _, y in draws])
  neg_ids = np.array([-1 if y is None else y for _, y in draws])
  return num_draws, neg_ids, found


def run_vectorised(num: int, seed: int, **kwargs):
  """num copies of the post in one batch, plus a padding slot."""
  pos_ids = np.tile(POST + [PAD_ID], (num, 1)).astype(np.int32)
  pos_mask = np.tile([True, True, True, False], (num, 1))
  scores = np.tile(SCORES, (num, 1))
  sample = warp.warp_sample(jax.random.key(seed), scores, pos_ids, pos_mask, margin=MARGIN,
                              max_trials=MAX_TRIALS, **kwargs)
  return jax.tree.map(np.asarray, sample)


NUM = 8000  # per positive


# (2, 37): blocks of 2 draws (the last one runs past MAX_TRIALS), a buffer refilled
# hundreds of times; (MAX_TRIALS, 10**6): every draw of every positive at once.
@pytest.mark.parametrize("chunk_size,buffer_size", [(2, 37), (MAX_TRIALS, 10**6)])
def test_vectorised_sampler_follows_exact_law_and_reference(chunk_size, buffer_size):
  sample = run_vectorised(NUM, seed=chunk_size, chunk_size=chunk_size, buffer_size=buffer_size)
  assert not sample.found[:, 3].any() and (sample.num_draws[:, 3] == 0).all()  # padding
  assert (sample.weight == warp.rank_weight_table(Y, MAX_TRIALS)[sample.num_draws]
          * sample.found).all()
  for t in range(len(POST)):
    vec = sample.num_draws[:, t], sample.neg_ids[:, t], sample.found[:, t]
    ref = run_reference(NUM, t, seed=100 + t)
    p_vec, p_ref = law_p_values(*vec, t), law_p_values(*ref, t)
    print(f"positive {POST[t]}: vectorised p(N)={p_vec[0]:.3f} p(id)={p_vec[1]:.3f}; "
          f"reference p(N)={p_ref[0]:.3f} p(id)={p_ref[1]:.3f}")
    assert min(p_vec) > P_MIN and min(p_ref) > P_MIN
    # Two-sample: vectorised vs reference outcomes (N, or 'none'), where both vary.
    table = np.array([outcome_counts(n, f) for n, _, f in (vec, ref)])
    table = table[:, table.sum(0) > 0]
    p_two = stats.chi2_contingency(table).pvalue if table.shape[1] > 1 else 1.0
    print(f"  vectorised vs reference (two-sample) p(N)={p_two:.3f}")
    assert p_two > P_MIN
    assert (vec[0][~vec[2]] == MAX_TRIALS).all()


def test_distribution_check_rejects_a_sampler_that_draws_positives():
  """The tests above have power: drawing from all Y tags (positives included) fails them."""
  p_values = law_p_values(*run_reference(NUM, 0, seed=1, include_positives=True), 0)
  assert min(p_values) < 1e-6, p_values


# ----------------------------------------------------------------------------
# Exact complement, padding, duplicates.
# ----------------------------------------------------------------------------


def test_nth_non_positive_enumerates_the_complement():
  rng = np.random.default_rng(0)
  num_posts, num_tags, num_slots = 300, 25, 6
  ids = rng.integers(0, num_tags, size=(num_posts, num_slots))   # with duplicates
  ids[np.arange(num_posts), rng.integers(num_slots, size=num_posts)] = rng.choice(
      [0, num_tags - 1], size=num_posts)                          # the edges
  mask = rng.random((num_posts, num_slots)) < 0.7
  _, offsets, num_neg = warp._positive_sets(jnp.asarray(ids), jnp.asarray(mask), num_tags)
  r = jnp.tile(jnp.arange(num_tags), (num_posts, 1))
  nth = np.asarray(warp._nth_non_positive(r, offsets))
  for b in range(num_posts):
    complement = np.setdiff1d(np.arange(num_tags), ids[b, mask[b]])
    assert int(num_neg[b]) == len(complement)
    np.testing.assert_array_equal(nth[b, :len(complement)], complement)


def test_uniform_over_complement_with_duplicates_and_padding():
  """Equal scores: every draw violates, so the first draw is the negative; it must be uniform."""
  num, pos = 20000, [0, 19, 5, 5, 7]      # 5 listed twice, 7 is padding
  pos_ids = np.tile(pos, (num, 1)).astype(np.int32)
  pos_mask = np.tile([True, True, True, True, False], (num, 1))
  sample = jax.tree.map(np.asarray, warp.warp_sample(
      jax.random.key(3), np.zeros((num, Y), np.float32), pos_ids, pos_mask, max_trials=10))
  assert sample.found[:, :3].all() and (sample.num_draws[:, :3] == 1).all()
  # The duplicate and the padding slot are not positives of their own.
  assert not sample.found[:, 3:].any() and (sample.neg_ids[:, 3:] == -1).all()
  counts = np.bincount(sample.neg_ids[:, :3].ravel(), minlength=Y)
  complement = np.setdiff1d(np.arange(Y), [0, 19, 5])
  p = chi_square_p(counts, np.isin(np.arange(Y), complement))
  print(f"uniform over the 17-tag complement: p={p:.3f}")
  assert p > P_MIN


def test_negatives_never_positives_and_always_violate():
  rng = np.random.default_rng(1)
  batch, num_slots, num_tags, margin = 512, 8, 30, 0.1
  pos_ids = rng.integers(0, num_tags, size=(batch, num_slots)).astype(np.int32)  # with duplicates
  pos_mask = rng.random((batch, num_slots)) < 0.6
  pos_mask[0] = True
  pos_ids[1] = np.arange(num_slots)
  pos_ids[1, :2] = [-5, 10**6]            # out-of-range ids on padding slots
  pos_mask[1, :2] = False
  scores = rng.standard_normal((batch, num_tags)).astype(np.float32)
  sample = jax.tree.map(np.asarray, warp.warp_sample(
      jax.random.key(0), scores, pos_ids, pos_mask, margin=margin, max_trials=50, chunk_size=4,
      buffer_size=100))
  assert sample.found.sum() > 1000
  for b in range(batch):
    positives = set(pos_ids[b, pos_mask[b]])
    for t in range(num_slots):
      if sample.found[b, t]:
        neg = sample.neg_ids[b, t]
        assert 0 <= neg < num_tags and neg not in positives
        assert scores[b, neg] > np.float32(scores[b, pos_ids[b, t]]) - np.float32(margin)
        assert 1 <= sample.num_draws[b, t] <= 50
      else:
        assert sample.neg_ids[b, t] == -1 and sample.weight[b, t] == 0


def test_post_whose_positives_cover_the_vocabulary():
  scores = np.zeros((2, 4), np.float32)
  pos_ids = np.array([[0, 1, 2, 3], [1, 0, 0, 0]], np.int32)
  pos_mask = np.array([[True] * 4, [True, False, False, False]])
  sample = warp.warp_sample(jax.random.key(0), scores, pos_ids, pos_mask, max_trials=5)
  assert not np.asarray(sample.found[0]).any()
  assert bool(sample.found[1, 0]) and int(sample.neg_ids[1, 0]) in (0, 2, 3)


def test_buffer_size_does_not_change_the_sample():
  rng = np.random.default_rng(2)
  scores = rng.standard_normal((16, 40)).astype(np.float32)
  pos_ids = rng.integers(0, 40, size=(16, 5)).astype(np.int32)
  pos_mask = rng.random((16, 5)) < 0.7
  # Buffer of 1: positives strictly one after another; 1000: all at once.
  samples = [warp.warp_sample(jax.random.key(7), scores, pos_ids, pos_mask, max_trials=30,
                                chunk_size=4, buffer_size=r) for r in (1, 1000)]
  jax.tree.map(np.testing.assert_array_equal, *samples)


# ----------------------------------------------------------------------------
# Rank weights.
# ----------------------------------------------------------------------------


def test_rank_weight_table_hand_values():
  table = warp.rank_weight_table(num_tags=11, max_trials=12)
  h10 = float(sum(fractions.Fraction(1, i) for i in range(1, 11)))   # 7381/2520
  np.testing.assert_allclose(table[[0, 1, 3, 5, 10, 11, 12]],
                             [0, h10, 11 / 6, 1.5, 1.0, 0.0, 0.0], rtol=1e-7)


def test_harmonic_numbers_past_the_table():
  for k in [1023, 1024, 1025, 5000, 100_000]:
    exact = np.sum(1.0 / np.arange(1, k + 1)[::-1])
    np.testing.assert_allclose(warp.harmonic_numbers(k), exact, rtol=1e-13)


def test_sample_rank_and_weight_follow_num_draws():
  rng = np.random.default_rng(4)
  scores = rng.standard_normal((64, 300)).astype(np.float32)
  pos_ids = rng.integers(0, 300, size=(64, 3)).astype(np.int32)
  sample = jax.tree.map(np.asarray, warp.warp_sample(
      jax.random.key(1), scores, pos_ids, np.ones((64, 3), bool), max_trials=400))
  found = sample.found
  assert found.any() and (sample.num_draws[found] > 1).any()
  np.testing.assert_array_equal(sample.rank[found], 299 // sample.num_draws[found])
  np.testing.assert_allclose(sample.weight[found],
                             warp.harmonic_numbers(sample.rank[found]), rtol=1e-6)
  assert (sample.rank[~found] == 0).all() and (sample.weight[~found] == 0).all()


# ----------------------------------------------------------------------------
# Loss values and gradients.
# ----------------------------------------------------------------------------


def test_warp_loss_hand_case():
  found = np.array([[True, True, False, True]])
  sample = warp.WarpSample(neg_ids=np.array([[4, 5, -1, 6]], np.int32),
                             num_draws=np.array([[3, 1, 5, 2]], np.int32), found=found,
                             rank=np.array([[3, 10, 0, 5]], np.int32),
                             weight=np.array([[11 / 6, 2.9289683, 0.0, 2.2833333]], np.float32))
  pos = np.array([[0.5, 1.0, 0.0, 2.0]], np.float32)
  neg = np.array([[0.45, 0.2, 9.0, 1.0]], np.float32)   # hinge 0.05, 0 (margin met), -, 0
  mask = np.array([[True, True, True, False]])
  loss = warp.warp_loss(pos, neg, sample, mask)
  np.testing.assert_allclose(loss, [[11 / 6 * 0.05, 0.0, 0.0, 0.0]], rtol=1e-5, atol=1e-7)


TWO_TOWER_KWARGS = dict(max_trials=20, chunk_size=8, buffer_size=8)


def two_tower_case(seed: int, scale: float):
  rng = np.random.default_rng(seed)
  queries = scale * rng.standard_normal((8, 6)).astype(np.float32)
  table = rng.standard_normal((50, 6)).astype(np.float32)
  pos_ids = rng.integers(0, 50, size=(8, 4)).astype(np.int32)
  pos_mask = rng.random((8, 4)) < 0.75
  return jnp.asarray(queries), jnp.asarray(table), pos_ids, pos_mask


def test_two_tower_gradient_equals_dense_gradient():
  queries, table, pos_ids, pos_mask = two_tower_case(0, scale=0.3)
  key = jax.random.key(5)

  def gathered(q, v):
    per, sample = warp.warp_loss_two_tower(key, q, v, pos_ids, pos_mask, **TWO_TOWER_KWARGS)
    return per.sum(), sample

  grad_fn = jax.value_and_grad(gathered, argnums=(0, 1), has_aux=True)
  (value, sample), grads = grad_fn(queries, table)

  def dense(q, v):  # the naive formula: differentiate the full score matrix
    scores = q @ v.T
    pos = jnp.take_along_axis(scores, jnp.asarray(pos_ids), axis=1)
    neg = jnp.take_along_axis(scores, jnp.maximum(sample.neg_ids, 0), axis=1)
    return warp.warp_loss(pos, neg, sample, pos_mask).sum()

  dense_value, dense_grads = jax.value_and_grad(dense, argnums=(0, 1))(queries, table)
  assert int(sample.found.sum()) >= 5 and float(value) > 0
  np.testing.assert_allclose(value, dense_value, rtol=1e-5)
  for g, d in zip(grads, dense_grads):
    assert np.abs(d).max() > 0
    np.testing.assert_allclose(g, d, rtol=1e-5, atol=1e-6)


def test_no_violator_means_zero_loss_and_zero_gradient():
  # Same shapes and settings as two_tower_case (one compilation for all these tests).
  table = np.zeros((50, 6), np.float32)
  table[:6] = np.eye(6)                  # tags 0..5: unit vectors; the others score 0
  queries = 10.0 * np.eye(6, dtype=np.float32)[np.arange(8) % 6]   # post b scores tag b % 6
  pos_ids = np.zeros((8, 4), np.int32)
  pos_ids[:, 0], pos_ids[:, 1] = np.arange(8) % 6, 9
  pos_mask = np.zeros((8, 4), bool)
  pos_mask[:, 0] = True

  def loss(q, v):
    per, sample = warp.warp_loss_two_tower(jax.random.key(0), q, v, pos_ids, pos_mask,
                                             **TWO_TOWER_KWARGS)
    return per.sum(), sample

  (value, sample), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(queries, table)
  assert not np.asarray(sample.found).any()
  np.testing.assert_array_equal(sample.num_draws, np.where(pos_mask, 20, 0))
  assert float(value) == 0.0
  for g in grads:
    assert not np.asarray(g).any()


def test_jit_matches_eager():
  queries, table, pos_ids, pos_mask = two_tower_case(1, scale=0.5)
  key = jax.random.key(2)
  run = lambda q, v: warp.warp_loss_two_tower(key, q, v, pos_ids, pos_mask, **TWO_TOWER_KWARGS)
  jitted = jax.jit(run)(queries, table)
  eager = run(queries, table)
  jax.tree.map(np.testing.assert_array_equal, jitted[1], eager[1])
  np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-6)
  # warp_sample is jitted by its decorator; its undecorated body runs op by op
  # (the while loop's body still compiles as one primitive).
  scores = queries @ table.T
  unjitted = warp.warp_sample.__wrapped__(key, scores, pos_ids, pos_mask, **TWO_TOWER_KWARGS)
  jax.tree.map(np.testing.assert_array_equal, unjitted, eager[1])


# ----------------------------------------------------------------------------
# Sharding.
# ----------------------------------------------------------------------------


def test_same_sample_on_one_device_and_sharded_over_eight():
  assert len(jax.devices()) == 8, "tests/conftest.py sets 8 simulated CPU devices"
  # Each positive draws from its own key, fold_in(key, slot index): the sample does
  # not depend on the placement (it held with jax_threefry_partitionable False too).
  rng = np.random.default_rng(3)
  batch, num_tags = 16, 200
  queries = rng.standard_normal((batch, 8)).astype(np.float32)
  table = rng.standard_normal((num_tags, 8)).astype(np.float32)
  pos_ids = rng.integers(0, num_tags, size=(batch, 5)).astype(np.int32)
  pos_mask = rng.random((batch, 5)) < 0.6
  run = jax.jit(lambda k, q, v, i, m: warp.warp_loss_two_tower(k, q, v, i, m, max_trials=100,
                                                                 chunk_size=8, buffer_size=16))
  key = jax.random.key(11)
  single = jax.devices()[0]
  one = run(key, *jax.device_put((queries, table, pos_ids, pos_mask), single))
  mesh = Mesh(np.array(jax.devices()), ("data",))
  rows, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  sharded_inputs = (jax.device_put(queries, rows), jax.device_put(table, replicated),
                    jax.device_put(pos_ids, rows), jax.device_put(pos_mask, rows))
  assert len(sharded_inputs[0].sharding.device_set) == 8
  eight = run(key, *sharded_inputs)
  assert np.asarray(one[1].found).sum() > 10
  jax.tree.map(np.testing.assert_array_equal, one[1], eight[1])
  np.testing.assert_allclose(one[0], eight[0], rtol=1e-6)
