"""Targets built from a batch's padded hashtag lists, for the losses optax already has.

optax supplies the loss math itself (softmax_cross_entropy_with_integer_labels,
sigmoid_binary_cross_entropy); what it cannot know is how a post's *set* of hashtags becomes a
target. Two ways, each a pure function of (tag_ids [B, T], tag_mask [B, T]):

  uniform_positive   one hashtag drawn uniformly from the post's set, redrawn at every visit
                     (Veit et al.'s softmax target; Mahajan et al. 2018 use the same)
  multi_hot          the indicator vector of the set over the vocabulary (sigmoid
                     cross-entropy, the HARRISON classifier)
"""

import jax
import jax.numpy as jnp


def uniform_positive(key: jax.Array, tag_ids: jax.Array, tag_mask: jax.Array):
  """One of each post's hashtags, uniformly at random: (labels int32 [B], has_positive [B]).

  Draws the slot argmax_t (u_t if tag_mask[t] else -1) for u_t ~ U[0, 1): every valid slot is
  equally likely to hold the largest draw, so the label is uniform over the post's hashtags
  (a post never lists a hashtag twice: the dataset format rejects it). A post with no hashtag
  left (the balanced distribution can thin a post to nothing) has has_positive False and label
  0, to be masked out of the loss.
  """
  u = jax.random.uniform(key, tag_ids.shape)
  slot = jnp.argmax(jnp.where(tag_mask, u, -1.0), axis=-1)
  labels = jnp.take_along_axis(tag_ids, slot[..., None], axis=-1)[..., 0]
  has_positive = tag_mask.any(axis=-1)
  return jnp.where(has_positive, labels, 0).astype(jnp.int32), has_positive


def multi_hot(tag_ids: jax.Array, tag_mask: jax.Array, num_tags: int) -> jax.Array:
  """float32 [B, Y]: 1 where y is one of the post's hashtags, else 0 (padding ignored)."""
  hot = jax.nn.one_hot(jnp.where(tag_mask, tag_ids, -1), num_tags, dtype=jnp.float32)
  return jnp.clip(hot.sum(axis=-2), 0.0, 1.0)  # one_hot(-1) is all zeros
