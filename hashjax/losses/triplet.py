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

The tag axis may instead take its candidates from the whole vocabulary (`num_tags`): the
intermediate negative is then a hashtag drawn uniformly from the vocabulary and the hard one
the best-scoring hashtag of all, post b's own excluded. In-batch candidates are other posts'
positives, so a hashtag is a negative about as often as it is a positive and rare hashtags are
almost never pushed down; vocabulary candidates reach every hashtag (README, Veit et al.).

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


def valid_candidates(tag_ids, tag_mask, positive, has_positive, user, num_tags: int = 0):
  """(tag [B, C], image [B, B], user [B, B]) bool: valid[a][b, c] iff c may replace b's
  element on axis a (module doc). With num_tags > 0 the tag axis's candidates are the whole
  vocabulary (C = num_tags, candidate c is hashtag c), else the batch's positives (C = B).

  tag_ids int [B, T], tag_mask bool [B, T]: each post's hashtags; positive int [B] the drawn
  hashtag; has_positive bool [B]; user int [B] the dense user index.
  """
  # carries[b, c]: post c carries b's positive i_b
  carries = ((tag_ids[None, :, :] == positive[:, None, None]) & tag_mask[None]).any(-1)
  same_user = user[:, None] == user[None, :]
  image_observed = same_user & carries
  usable = has_positive[:, None] & has_positive[None, :]
  if num_tags:  # own_tag[b, v]: post b carries hashtag v
    own_tag = jnp.zeros((len(tag_ids), num_tags), bool).at[
        jnp.arange(len(tag_ids))[:, None], jnp.where(tag_mask, tag_ids, 0)].max(tag_mask)
    tag_valid = ~own_tag & has_positive[:, None]
  else:  # own_tag[b, c]: post b carries c's positive i_c
    tag_valid = ~carries.T & usable
  return tag_valid, ~image_observed & usable, ~same_user & usable


def choose_negatives(rng, scores, valid) -> Negatives:
  """One intermediate (uniform) and one hard (argmax) candidate per post and axis.

  scores: (S_tag, S_img, S_user), each [B, C_a]; valid: the same shapes, from
  valid_candidates (a stacked [3, B, B] array works for both, in-batch candidates).
  """
  out = {"uniform": [], "hard": [], "exists": []}
  for key, s, v in zip(jax.random.split(rng, len(AXES)), scores, valid):
    s = jax.lax.stop_gradient(s)
    out["exists"].append(v.any(-1))
    out["uniform"].append(jax.random.categorical(key, jnp.where(v, 0.0, -jnp.inf), axis=-1))
    out["hard"].append(jnp.argmax(jnp.where(v, s, -jnp.inf), axis=-1))
  uniform, hard, exists = (jnp.stack(out[k]) for k in ("uniform", "hard", "exists"))
  return Negatives(uniform, exists, hard, exists)


def triplet_hinge(scores, negatives: Negatives, margin: float = 1.0):
  """Per-post hinge summed over the chosen negatives [B], and the per-negative hinges [6, B]
  (intermediate tag, image, user, then hard tag, image, user). scores as choose_negatives';
  the positive s(t_b) is the diagonal of S_img (S_tag's too when its candidates are the batch)."""
  positive = jnp.diagonal(scores[1])
  hinges = []
  for chosen, exists in ((negatives.intermediate, negatives.intermediate_exists),
                         (negatives.hard, negatives.hard_exists)):
    for axis in range(len(AXES)):
      negative = jnp.take_along_axis(scores[axis], chosen[axis][:, None], axis=-1)[:, 0]
      hinges.append(jnp.where(exists[axis], jax.nn.relu(margin + negative - positive), 0.0))
  hinges = jnp.stack(hinges)
  return hinges.sum(0), hinges
