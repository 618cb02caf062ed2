"""Targets for optax's losses: the uniform positive against a sequential reference, multi-hot."""

import collections

import jax
import jax.numpy as jnp
import numpy as np

from hashjax.losses import targets

TAG_IDS = jnp.array([[4, 9, 2, -1], [7, -1, -1, -1], [-1, -1, -1, -1], [1, 3, -1, -1]])
TAG_MASK = TAG_IDS >= 0


def test_uniform_positive_is_uniform_over_each_posts_hashtags():
  draws = 20_000
  keys = jax.random.split(jax.random.key(0), draws)
  labels, has = jax.vmap(lambda k: targets.uniform_positive(k, TAG_IDS, TAG_MASK))(keys)
  np.testing.assert_array_equal(has[0], [True, True, False, True])
  np.testing.assert_array_equal(labels[:, 2], 0)  # no hashtag left: a label to mask out
  np.testing.assert_array_equal(labels[:, 1], 7)
  # The sequential reference: "pick one of the post's hashtags, each with probability 1/n".
  # Every hashtag is drawn with frequency 1/n, within 4 binomial standard deviations.
  for post, tags in ((0, [4, 9, 2]), (3, [1, 3])):
    counts = collections.Counter(np.asarray(labels[:, post]).tolist())
    assert set(counts) == set(tags)
    p = 1 / len(tags)
    for tag in tags:
      assert abs(counts[tag] / draws - p) < 4 * np.sqrt(p * (1 - p) / draws)


def test_uniform_positive_is_redrawn_with_every_key():
  a, _ = targets.uniform_positive(jax.random.key(1), TAG_IDS, TAG_MASK)
  draws = {int(targets.uniform_positive(jax.random.key(s), TAG_IDS, TAG_MASK)[0][0])
           for s in range(40)}
  assert draws == {4, 9, 2} and int(a[0]) in draws


def test_multi_hot_marks_the_set_and_ignores_padding():
  hot = targets.multi_hot(TAG_IDS, TAG_MASK, 10)
  expected = np.zeros((4, 10), np.float32)
  expected[0, [4, 9, 2]] = expected[1, 7] = expected[3, [1, 3]] = 1
  np.testing.assert_array_equal(hot, expected)
