"""Mixtures of a world's true hashtag distribution over users, in matmuls (World inherits them).

    p(y | post, u) = m(y; u) / N(u),       m the unnormalised terms of World._components.

Mixed with weights pi(u), each term is linear in per-user quantities once pi(u) / N(u) is
known: the image term only reads the user's tag-table row, the location term their city and
country, the social and generic terms their mixes. So sum_u pi(u) p(y | post, u) is a few
[B, U] @ [U, .] products instead of U full distributions (the oracles that do not know the
poster, hashjax.eval.oracles). `ConceptLikelihood` is log P(c_1..c_k | theta) of the concept
draw, the evidence a post's latent gives about who drew it.
"""

import functools

import numpy as np
import scipy.sparse

from hashjax.data.synthetic import users as su
from hashjax.data.synthetic import vocab as sv


class UserMixtures:
  """World's mixture methods; they read its _params, config, _start and _latents."""

  # p(y | post, u) = m(y; u) / N(u), m the unnormalised terms of _components. Mixed with weights
  # pi(u), each term is linear in per-user quantities once pi(u) / N(u) is known: the image term
  # only reads the user's tag-table row, the location term their city and country, the social
  # and generic terms their mixes. So the mixture is a few [B, U] @ [U, .] products.
  def user_traits(self, user_ids):
    """What p(y | post, u) reads of each user: table row, city, country, propensities, mixes."""
    p = self._params
    u = np.asarray(user_ids, np.int64).reshape(-1)
    return {"row": sv.table_row(p["user_group"][u], p["user_country"][u], len(su.COUNTRIES)),
            "city": p["user_city"][u], "country": p["user_country"][u],
            "location": p["user_location_propensity"][u],
            "social": p["user_social_propensity"][u], "generic": p["user_generic_propensity"][u],
            "social_mix": sv.demographic_mix(p, "social", p["user_age"][u], p["user_gender"][u]),
            "generic_mix": p["user_generic_mix"][u]}

  @functools.cached_property
  def _row_sums(self):
    """[R, C] float64: the mass of each tag-table row (1 up to float32 rounding)."""
    return self._params["concept_table_probs"].astype(np.float64).sum(-1)

  @functools.cached_property
  def _concept_blocks(self):
    """Per concept: its tags (canonical ids) and the dense [R, K_c] table of every row."""
    ids, probs = self._params["concept_table_ids"], self._params["concept_table_probs"]
    blocks = []
    for c in range(ids.shape[1]):
      rows, slots = np.nonzero(probs[:, c] > 0)
      tags, col = np.unique(ids[rows, c, slots], return_inverse=True)
      dense = np.zeros((ids.shape[0], len(tags)))
      np.add.at(dense, (rows, col), probs[rows, c, slots].astype(np.float64))
      blocks.append((tags, dense))
    return blocks

  def _user_terms(self, users):
    """Per-user constants of the mixture (normaliser terms, weighted tag masses, index maps)."""
    if self._terms is not None and self._terms[0] is users:  # the same users, batch after batch
      return self._terms[1]
    cfg, U = self.config, len(users["row"])

    def index_map(index, n, values=None):  # [n, U] sparse: user u -> its index value
      values = np.ones(U) if values is None else values
      return scipy.sparse.csr_matrix((values, (index, np.arange(U))), shape=(n, U))

    location = np.asarray(users["location"], np.float64)
    social_terms = np.asarray(users["social"], np.float64)[:, None] * users["social_mix"]
    generic_terms = (np.asarray(users["generic"], np.float64)[:, None]
                     * users["generic_mix"].astype(np.float64))
    terms = {"location": (cfg.city_share + (1 - cfg.city_share)) * location,
             "social": social_terms.sum(1), "generic": generic_terms.sum(1),
             "social_terms": social_terms, "generic_terms": generic_terms,
             "rows": index_map(users["row"], self._row_sums.shape[0]),
             "cities": index_map(users["city"], 5 * cfg.cities_per_country, location),
             "countries": index_map(users["country"], len(su.COUNTRIES), location)}
    self._terms = (users, terms)
    return terms

  def mixture_parts(self, log_weights, users, concept_ids, concept_weights):
    """The per-post statistics of sum_u pi(u) p(y | post, u) that `assemble_mixture` expands.

    log_weights [B, U]: log pi(u) up to a per-post constant (-inf: not in the mixture); users:
    `user_traits` of the U users (any traits, e.g. hypothetical users). Returns a dict of [B, .]
    float64 arrays: "row" (image mass per tag-table row), "city", "country", "social",
    "generic" (the tags' masses). Parts of different posts can be concatenated.
    """
    a = np.array(log_weights, np.float64)  # becomes pi(u) / N(u) [B, U], in place
    B, cfg = a.shape[0], self.config
    c, w = self._latents(concept_ids, concept_weights, B)
    c = np.maximum(c, 0)
    scene, people = self._context_strength(c, w)
    terms = self._user_terms(users)
    a -= a.max(axis=1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=1, keepdims=True)
    # N(u): the mass of user u's unnormalised terms (1 up to rounding), image part by table row.
    norm = np.einsum("bj,rbj->br", w, self._row_sums[:, c])[:, users["row"]]
    norm += scene[:, None] * terms["location"]
    norm += people[:, None] * terms["social"]
    norm += terms["generic"]
    a /= norm
    by = lambda index_map: np.asarray((index_map @ a.T).T)  # [B, n]: summed per index value
    return {"row": by(terms["rows"]),
            "city": cfg.city_share * scene[:, None] * by(terms["cities"]),
            "country": (1 - cfg.city_share) * scene[:, None] * by(terms["countries"]),
            "social": people[:, None] * (a @ terms["social_terms"]),
            "generic": a @ terms["generic_terms"]}

  def assemble_mixture(self, parts, concept_ids, concept_weights):
    """float32 [B, V] in public ids: the distributions whose statistics `parts` holds."""
    start = self._start
    B = parts["row"].shape[0]
    c, w = self._latents(concept_ids, concept_weights, B)
    out = np.zeros((B, self.num_tags))
    for concept in np.unique(c[c >= 0]):
      posts, slot = np.nonzero(c == concept)  # a concept appears at most once in a post
      tags, dense = self._concept_blocks[concept]
      out[posts[:, None], tags[None]] += (parts["row"][posts] * w[posts, slot, None]) @ dense
    for kind, values in (("city", parts["city"]), ("country", parts["country"]),
                         ("social", parts["social"]), ("generic", parts["generic"])):
      out[:, start[kind]:start[kind] + values.shape[1]] += values
    out /= out.sum(axis=1, keepdims=True)
    return out[:, self._tag_order].astype(np.float32)

  def mixture_distribution(self, user_weights, concept_ids, concept_weights, users=None):
    """sum_u pi(u) p(y | post, u), float32 [B, V] in public ids, pi = user_weights normalised.

    user_weights [B, U] >= 0 over the world's users (or over `users`, a user_traits dict).
    Equals the weighted sum of true_tag_distribution over users, in O(B U) instead of O(B U V).
    """
    users = self.user_traits(np.arange(self.config.num_users)) if users is None else users
    with np.errstate(divide="ignore"):
      log_weights = np.log(np.asarray(user_weights, np.float64))
    parts = self.mixture_parts(log_weights, users, concept_ids, concept_weights)
    return self.assemble_mixture(parts, concept_ids, concept_weights)


class ConceptLikelihood:
  """World.concept_log_likelihood for a fixed set of users, with their logs computed once."""

  def __init__(self, topics):
    t = np.asarray(topics, np.float64)
    self._theta = np.ascontiguousarray(t.T)  # [C, U]: a concept's row is one gather
    with np.errstate(divide="ignore"):
      self._log_theta = np.log(self._theta)
    self._total = t.sum(1)
    self._log_total = np.log(self._total)

  def __call__(self, concept_ids):
    c = np.asarray(concept_ids, np.int64)
    out = self._log_theta[c[:, 0]] - self._log_total  # every post has a first concept
    drawn = self._theta[c[:, 0]]
    for j in range(1, c.shape[1]):
      posts = np.flatnonzero(c[:, j] >= 0)
      out[posts] += (self._log_theta[c[posts, j]]
                     - np.log(self._total - drawn[posts]))
      if j + 1 < c.shape[1]:
        drawn[posts] += self._theta[c[posts, j]]
    return out
