r"""Veit et al.'s ranking loss over (hashtag, image, user) triplets with in-batch negatives.

Each post b of a batch gives one positive triplet t_b = (i_b, j_b, k_b): a hashtag i_b drawn
uniformly from the post's set, its image j_b and its user k_b. Its negatives replace one element
by the one of another batch element c, along each axis a in {tag, image, user}:

    intermediate   c drawn uniformly from the valid candidates of b along a
    hard           c = argmax over the valid candidates of S_a[b, c]

and the post's loss is the hinge summed over the (up to) six negatives,

    l_b = sum_{negatives t-} max(0, margin + s(t-) - s(t_b)),   margin = 1 in the paper,

averaged over the posts that have a hashtag. S_a[b, c] is the score of t_b with its element on
axis a replaced by c's (the model's `axis_scores`); s(t_b) is the diagonal.

A negative is never an observed triplet (a post's own hashtag with its own image and user):

    tag axis    c is valid unless i_c is one of post b's hashtags (i_c = i_b included)
    image axis  c is valid unless c's post is by user k_b and carries i_b (c = b included)
    user axis   c is valid unless k_c = k_b (an image has one user, so only k_b observes it)

and a candidate without a positive of its own (a post with no hashtag) is never used. A post
with no valid candidate on an axis gets no negative there. The choice of c is not
differentiated (the argmax and the draw see stopped scores); the chosen scores are.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

AXES = ("tag", "image", "user")


class Negatives(NamedTuple):
  """Chosen candidates [3, B] (axis order AXES) and whether each exists [3, B]."""
  intermediate: jax.Array
  intermediate_exists: jax.Array
  hard: jax.Array
  hard_exists: jax.Array


def valid_candidates(tag_ids, tag_mask, positive, has_positive, user):
  """[3, B, B] bool: valid[a, b, c] iff c may replace b's element on axis a (module doc).

  tag_ids int [B, T], tag_mask bool [B, T]: each post's hashtags; positive int [B] the drawn
  hashtag; has_positive bool [B]; user int [B] the dense user index.
  """
  # carries[b, c]: post c carries b's positive i_b
  carries = ((tag_ids[None, :, :] == positive[:, None, None]) & tag_mask[None]).any(-1)
  own_tag = carries.T  # own_tag[b, c]: post b carries c's positive i_c
  same_user = user[:, None] == user[None, :]
  image_observed = same_user & carries
  usable = has_positive[:, None] & has_positive[None, :]
  return jnp.stack([~own_tag, ~image_observed, ~same_user]) & usable[None]


def choose_negatives(rng, scores, valid) -> Negatives:
  """One intermediate (uniform) and one hard (argmax) candidate per post and axis.

  scores: [3, B, B] (S_tag, S_img, S_user); valid: [3, B, B] from valid_candidates.
  """
  scores = jax.lax.stop_gradient(scores)
  exists = valid.any(-1)
  uniform = jax.random.categorical(rng, jnp.where(valid, 0.0, -jnp.inf), axis=-1)
  hard = jnp.argmax(jnp.where(valid, scores, -jnp.inf), axis=-1)
  return Negatives(uniform, exists, hard, exists)


def triplet_hinge(scores, negatives: Negatives, margin: float = 1.0):
  """Per-post hinge summed over the chosen negatives [B], and the per-negative hinges [6, B]
  (intermediate tag, image, user, then hard tag, image, user)."""
  positive = jnp.diagonal(scores[0])
  hinges = []
  for chosen, exists in ((negatives.intermediate, negatives.intermediate_exists),
                         (negatives.hard, negatives.hard_exists)):
    negative = jnp.take_along_axis(scores, chosen[..., None], axis=-1)[..., 0]  # [3, B]
    hinges.append(jnp.where(exists, jax.nn.relu(margin + negative - positive[None]), 0.0))
  hinges = jnp.concatenate(hinges)
  return hinges.sum(0), hinges
