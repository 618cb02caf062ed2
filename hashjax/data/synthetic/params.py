"""All parameters of a synthetic world, drawn once from the world seed (see `world.World`).

Images. Concept prototypes are non-negative and unit-norm, built as

    proto_c = normalise(relu(0.6 * family_f(c) + own_c)),

so concepts of one family (say, dogs and cats) are visually confusable. An image with latent
concepts c_1..c_k and weights w (k <= 3, sum w = 1) has the feature

    x = normalise(relu(a * common + sum_j w_j proto_{c_j} + sum_n |e_n| b * nuisance_n + s * eps)),

common: a direction every image shares (fc features are far from centred); nuisance: lighting,
background and framing directions independent of the concepts; eps ~ N(0, I/D). x >= 0 and
|x| = 1, like the fc7 descriptors Denton et al. feed to their models.
"""

import dataclasses

import numpy as np

from hashjax.data.synthetic import users as su
from hashjax.data.synthetic import vocab as sv

NUM_NUISANCE = 16


def _nonneg_directions(rng, n, dim, density):
  """n sparse non-negative unit vectors (a CNN unit fires for some concepts, not others)."""
  v = np.abs(rng.standard_normal((n, dim))) * (rng.random((n, dim)) < density)
  v[np.arange(n), rng.integers(dim, size=n)] += 1.0  # never all-zero
  return v / np.linalg.norm(v, axis=1, keepdims=True)


def image_params(rng, config):
  """Prototypes, the shared direction, nuisance directions and the per-concept context traits."""
  C, D = config.num_concepts, config.feature_dim
  num_families = max(1, C // 6)
  family = _nonneg_directions(rng, num_families, D, 0.2)
  own = _nonneg_directions(rng, C, D, 0.2)
  protos = 0.6 * family[rng.integers(num_families, size=C)] + own
  return {
      "concept_protos": (protos / np.linalg.norm(protos, axis=1, keepdims=True)).astype(np.float32),
      "feature_common": _nonneg_directions(rng, 1, D, 0.5)[0].astype(np.float32),
      "feature_nuisance": _nonneg_directions(rng, NUM_NUISANCE, D, 0.2).astype(np.float32),
      # Popularity of what people photograph: Zipf over a random order of the concepts.
      "concept_popularity": sv.zipf_weights(C, config.concept_zipf)[rng.permutation(C)],
      # Scene-like concepts invite location tags (#toronto on a skyline), people-like concepts
      # invite social tags (#love on a selfie): the user-image interaction of Denton's 3-way model.
      "concept_locality": rng.beta(0.6, 1.2, C),
      "concept_sociality": rng.beta(0.6, 1.2, C),
  }


def tag_concepts(counts, start, config, tail_owner, poly_concepts):
  """[V, 2] concept(s) each tag is about, in layout order (-1: none / no second meaning)."""
  out = -np.ones((sum(counts.values()), 2), np.int32)
  S = config.synonyms_per_concept
  out[start["concept"]:start["polysemous"], 0] = np.repeat(np.arange(config.num_concepts), S)
  out[start["polysemous"]:start["city"]] = poly_concepts
  out[start["tail"]:, 0] = tail_owner
  return out


SECOND_VIEW = "second_view_"  # the prefix of the second view's arrays in the params


def second_view_config(config):
  """The config the second view is rendered with: its own dimension, the same image knobs."""
  return dataclasses.replace(config, feature_dim=config.second_view_dim, second_view_dim=0)


def second_view(params):
  """The second view's image arrays, under the names make_features reads."""
  return {k[len(SECOND_VIEW):]: v for k, v in params.items() if k.startswith(SECOND_VIEW)}


def build_params(config, seed):
  """Every world array, in a fixed draw order from one generator seeded by `seed`.

  Returns (params, initial_order): params in canonical (layout) tag ids; initial_order is a
  random permutation used as the first public numbering, so tag ids do not reveal tag kinds.
  """
  rng = np.random.default_rng([seed, 0])
  counts = sv.vocab_layout(config)
  kinds, start = sv.layout_kinds(counts)
  V = len(kinds)
  strings = sv.make_strings(rng, V + config.caption_vocab_size)
  params = {"tag_strings": np.array(strings[:V]), "caption_strings": np.array(strings[V:]),
            "tag_kinds": kinds}
  params.update(image_params(rng, config))
  cities = su.make_cities(rng, config.cities_per_country)
  groups = su.make_groups(rng, config.num_groups)
  params.update(cities)
  params.update(groups)
  tail_owner = sv.tail_concepts(rng, counts["tail"], config.num_concepts)
  ids, probs, poly_concepts, poly_side, style_z = sv.concept_tag_tables(
      rng, config, start, tail_owner, su.COUNTRY_PROBS)
  params.update(concept_table_ids=ids, concept_table_probs=probs, poly_side=poly_side,
                tag_concepts=tag_concepts(counts, start, config, tail_owner, poly_concepts))
  profiles = sv.demographic_profiles(rng, "social", config.num_social, config.social_zipf)
  profiles.update(sv.demographic_profiles(rng, "generic", config.num_generic, config.generic_zipf))
  params.update(profiles)
  params["word_vectors"] = sv.word_vectors(rng, config, kinds, start, tail_owner, poly_concepts,
                                           style_z, profiles, cities["city_country"])
  params["caption_word_concept"], params["caption_filler_probs"] = sv.caption_tables(config)
  params.update(su.make_users(rng, config, cities, groups, params["concept_popularity"],
                              profiles))
  order = rng.permutation(V)
  if config.second_view_dim:  # its own stream: the first view's draws are unchanged
    view = image_params(np.random.default_rng([seed, 2]), second_view_config(config))
    params.update({SECOND_VIEW + k: view[k] for k in ("concept_protos", "feature_common",
                                                      "feature_nuisance")})
  return params, order


def make_features(rng, params, config, concept_ids, concept_weights):
  """x as in the module docstring, float32 [n, D], non-negative with unit L2 norm."""
  n, D = concept_ids.shape[0], config.feature_dim
  c = np.maximum(concept_ids, 0)
  x = np.einsum("nm,nmd->nd", concept_weights, params["concept_protos"][c])
  x += config.feature_common * params["feature_common"]
  nuisance = np.abs(rng.standard_normal((n, NUM_NUISANCE), dtype=np.float32))
  x += config.feature_nuisance * nuisance @ params["feature_nuisance"]
  x += (config.feature_noise / np.sqrt(D)) * rng.standard_normal((n, D), dtype=np.float32)
  np.maximum(x, 0.0, out=x)
  return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def make_captions(rng, params, config, concept_ids, concept_weights):
  """Short captions: length 1 + Poisson(L - 1) (at most 2L); each token names one of the post's
  concepts (picked by weight, then one of its W words uniformly) with probability
  `caption_concept_share`, else is a Zipf-distributed filler word."""
  n, L = concept_ids.shape[0], config.caption_length
  lengths = np.minimum(1 + rng.poisson(L - 1, n), 2 * L)
  post = np.repeat(np.arange(n), lengths)
  T = len(post)
  is_concept = rng.random(T) < config.caption_concept_share
  cum = np.cumsum(concept_weights, axis=1)[post]
  slot = np.minimum((rng.random(T)[:, None] * cum[:, -1:] > cum).sum(1), concept_ids.shape[1] - 1)
  W = config.caption_words_per_concept
  concept_word = concept_ids[post, slot] * W + rng.integers(W, size=T)
  num_concept_words = config.num_concepts * W
  filler = num_concept_words + rng.choice(len(params["caption_filler_probs"]), size=T,
                                          p=params["caption_filler_probs"])
  tokens = np.where(is_concept, concept_word, filler).astype(np.int32)
  return np.split(tokens, np.cumsum(lengths)[:-1])
