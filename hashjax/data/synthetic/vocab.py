"""The hashtag side of the synthetic world: strings, kinds, word vectors, per-concept tag tables.

Every tag is built in a *layout* order (kind by kind); these layout ids are the world's canonical
ids and never change. `World` shows users a shuffled public numbering on top (see
`World.reorder_tags`), so nothing here needs to care about how ids are presented.

The per-(style group, concept) table is the heart of self-expression: for a user of group g, an
image of concept c produces tag y with probability

    P[g, c, y] = s * syn(y | g, c) + (1 - s) * tail(y | c, g),

    syn(y | g, c)  oc  zipf(rank of y among c's synonyms) * exp(style_strength * z[g, y]),
    tail(y | c, g) oc  zipf(rank of y among c's tail tags) * exp(tail_style * z'[g, y]),

with z, z' ~ N(0, 1) fixed at creation. A polysemous tag names concept a for the readers on one
side of a random split and concept b for the others (Veit's #rock: music for some users, stone
for others). Who reads it is `polysemy_by`:
  * "group" (the default): the latent style group, which metadata predicts only in part;
  * "country": the user's country, which metadata shows (#football: soccer in one country,
    American football in another). Here the tag's meaning is a user-by-image effect that is not
    additive in log-score, the kind Denton's 3-way model is built for.
How much a group likes the tag is its own style draw either way. The table is kept per (style
group g, country k), P[g, k, c, y], stored sparsely as [G * 5, C, K] ids and probabilities, row
g * 5 + k; with polysemy_by="group" the 5 country rows of a group are equal.
"""

import numpy as np

KIND_NAMES = ("concept", "polysemous", "city", "country", "social", "generic", "tail")
KIND = {name: code for code, name in enumerate(KIND_NAMES)}

_ONSETS = ("b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "ch", "sh", "th", "br", "dr", "gr", "kr", "tr", "st", "pl", "bl", "fl", "sk")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ee", "oo", "ia")
_CODAS = ("", "", "", "", "n", "r", "s", "l", "m", "k", "x", "nd", "st")


def make_strings(rng, count):
  """`count` distinct pronounceable words of 2-4 syllables (onset, vowel, optional coda).

  One generator for every kind of tag and for caption words, so a string says nothing about
  what kind of tag it is (models must learn that from co-occurrence, not from spelling).
  """
  words, seen = [], set()
  while len(words) < count:
    num_syllables = rng.choice([2, 3, 3, 4])
    word = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
                   + _CODAS[rng.integers(len(_CODAS))] for _ in range(num_syllables))
    if word not in seen:
      seen.add(word)
      words.append(word)
  return words


def vocab_layout(config):
  """Counts per kind for `config.num_tags`; the tail (rare sub-topic tags) takes what is left."""
  counts = {
      "concept": config.num_concepts * config.synonyms_per_concept,
      "polysemous": config.num_polysemous,
      "city": 5 * config.cities_per_country,
      "country": 5,
      "social": config.num_social,
      "generic": config.num_generic,
  }
  counts["tail"] = config.num_tags - sum(counts.values())
  if counts["tail"] < 0:
    raise ValueError(f"num_tags={config.num_tags} is too small for the other kinds: {counts}")
  return counts


def layout_kinds(counts):
  """tag_kinds [V] int8 in layout order and the first layout id of each kind."""
  kinds = np.concatenate([np.full(counts[name], KIND[name], np.int8) for name in KIND_NAMES])
  starts = np.cumsum([0] + [counts[name] for name in KIND_NAMES])
  return kinds, {name: int(starts[i]) for i, name in enumerate(KIND_NAMES)}


def zipf_weights(n, exponent):
  """w_r = (r + 1)^-exponent / sum, for r = 0..n-1."""
  w = (np.arange(n) + 1.0) ** -exponent
  return w / w.sum()


def tail_concepts(rng, num_tail, num_concepts):
  """Owner concept of each tail tag: round-robin, so every concept has a sub-topic tail."""
  return rng.permutation(np.arange(num_tail) % num_concepts).astype(np.int32)


def table_row(group, country, num_countries):
  """Row of concept_tag_tables' tables that users of `group` from `country` read."""
  return group * num_countries + country


def concept_tag_tables(rng, config, start, tail_owner, country_probs):
  """The sparse table P[g, k, c, :] described in the module docstring, rows g * 5 + k.

  country_probs: how common each of the 5 countries is (with polysemy_by="country" the two
  commonest read different meanings of every polysemous tag).

  Returns ids [G * 5, C, K] int32 (layout ids, padding 0), probs [G * 5, C, K] float32 (padding
  0), poly_concepts [P, 2] (the two meanings of each polysemous tag), poly_side [P, R] bool
  (True: reader r reads it as meaning 0; R readers are the G groups or the 5 countries),
  style_z [G, C*S] (synonym preferences, also used for vectors).
  """
  G, C, S = config.num_groups, config.num_concepts, config.synonyms_per_concept
  P, num_countries = config.num_polysemous, len(country_probs)
  by_country = {"group": False, "country": True}.get(config.polysemy_by)
  if by_country is None:
    raise ValueError(f"polysemy_by must be 'group' or 'country', got {config.polysemy_by!r}")
  style_z = rng.standard_normal((G, C * S))
  poly_concepts = np.stack([rng.choice(C, size=2, replace=False) for _ in range(P)]).reshape(P, 2)
  poly_side = rng.random((P, num_countries if by_country else G)) < 0.5
  # Both meanings are always in use: two readers (the commonest countries) read different ones.
  first, second = np.argsort(-np.asarray(country_probs))[:2] if by_country else (0, -1)
  poly_side[:, first], poly_side[:, second] = True, False
  poly_z = rng.standard_normal((P, G))
  tail_ids = [np.flatnonzero(tail_owner == c) + start["tail"] for c in range(C)]
  tail_z = rng.standard_normal((G, len(tail_owner)))

  rows = [[None] * C for _ in range(G * num_countries)]
  syn_rank = zipf_weights(S, config.synonym_zipf)
  for row in range(G * num_countries):
    g, k = divmod(row, num_countries)  # the inverse of table_row
    if k and not by_country:  # the group decides every meaning: its country rows are equal
      rows[row] = rows[table_row(g, 0, num_countries)]
      continue
    for c in range(C):
      ids = list(start["concept"] + c * S + np.arange(S))
      w = list(syn_rank * np.exp(config.style_strength * style_z[g, c * S:(c + 1) * S]))
      reader = k if by_country else g
      for p in range(P):  # a polysemous tag is one strong synonym of the meaning it has here
        if poly_concepts[p, 0 if poly_side[p, reader] else 1] == c:
          ids.append(start["polysemous"] + p)
          w.append(syn_rank[0] * np.exp(config.style_strength * poly_z[p, g]))
      syn = np.asarray(w) / np.sum(w)
      tail = tail_ids[c]
      if len(tail):
        tw = zipf_weights(len(tail), config.tail_zipf)
        tw = tw * np.exp(config.tail_style * tail_z[g, tail - start["tail"]])
        probs = np.concatenate([config.synonym_share * syn,
                                (1 - config.synonym_share) * tw / tw.sum()])
        ids = ids + list(tail)
      else:
        probs = syn
      rows[row][c] = (np.asarray(ids), probs)

  K = max(len(ids) for row in rows for ids, _ in row)
  table_ids = np.zeros((len(rows), C, K), np.int32)
  table_probs = np.zeros((len(rows), C, K), np.float32)
  for row in range(len(rows)):
    for c in range(C):
      ids, probs = rows[row][c]
      table_ids[row, c, :len(ids)] = ids
      table_probs[row, c, :len(ids)] = probs
  return table_ids, table_probs, poly_concepts.astype(np.int32), poly_side, style_z


def demographic_profiles(rng, prefix, num_tags, zipf):
  """Demographic profile of each social or generic tag (Denton Table 6), keys prefix_*.

  rate_t(age, gender) = base_t * exp(strength_t * sign_t * gender - (age - mu_t)^2 / (2 sigma_t^2)),
  gender in {-1 female, 0 unknown, +1 male}; sign_t = +1 favours men, -1 women, 0 neither.
  mu_t is drawn skewed young so most such tags peak among teenagers and young adults, while a
  few (the #prouddad kind) peak in middle age.
  """
  return {
      f"{prefix}_base": zipf_weights(num_tags, zipf)[rng.permutation(num_tags)],
      f"{prefix}_sign": rng.choice([-1.0, 0.0, 1.0], size=num_tags, p=[0.35, 0.3, 0.35]),
      f"{prefix}_strength": rng.uniform(0.5, 2.0, num_tags),
      f"{prefix}_mu": 13.0 + rng.gamma(2.0, 8.0, num_tags),
      f"{prefix}_sigma": rng.uniform(6.0, 18.0, num_tags),
  }


def demographic_mix(params, prefix, age, gender):
  """[B, T] softmax over the prefix's tags of log rate_t(age, gender) (demographic_profiles)."""
  age = np.asarray(age, np.float64)[:, None]
  gender = np.asarray(gender, np.float64)[:, None]
  logits = (np.log(params[f"{prefix}_base"])
            + params[f"{prefix}_strength"] * params[f"{prefix}_sign"] * gender
            - (age - params[f"{prefix}_mu"]) ** 2 / (2 * params[f"{prefix}_sigma"] ** 2))
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def word_vectors(rng, config, kinds, start, tail_owner, poly_concepts, style_z, profiles,
                 city_country):
  """[V, E] unit-norm vectors where related tags are close (the open-vocabulary signal).

  Synonyms: concept base + small noise (+ a nudge toward the style of the group that prefers the
  synonym); tail tags: concept base + larger noise (a sub-topic); polysemous: midway between the
  two meanings; cities: their country's base + noise; social and generic: a base per kind moved
  along a gender axis and an age axis by the tag's demographic profile.
  """
  E, C, S = config.word_vector_dim, config.num_concepts, config.synonyms_per_concept
  G = config.num_groups
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  noise = lambda n, scale: scale * rng.standard_normal((n, E)) / np.sqrt(E)
  concept_base = unit(rng.standard_normal((C, E)))
  group_style = unit(rng.standard_normal((G, E)))
  country_base = unit(rng.standard_normal((5, E)))
  social_base, generic_base, gender_axis, age_axis = unit(rng.standard_normal((4, E)))

  vecs = np.zeros((len(kinds), E))
  syn_concept = np.repeat(np.arange(C), S)
  favourite_group = np.argmax(style_z, axis=0)
  vecs[start["concept"]:start["polysemous"]] = (concept_base[syn_concept] + noise(C * S, 0.35)
                                                + 0.15 * group_style[favourite_group])
  vecs[start["polysemous"]:start["city"]] = (unit(concept_base[poly_concepts].sum(1))
                                             + noise(len(poly_concepts), 0.35))
  vecs[start["city"]:start["country"]] = country_base[city_country] + noise(len(city_country), 0.4)
  vecs[start["country"]:start["social"]] = country_base + noise(5, 0.2)
  for kind, base, scale in (("social", social_base, 0.4), ("generic", generic_base, 0.6)):
    age_z = (profiles[f"{kind}_mu"] - 30.0) / 15.0
    vecs[start[kind]:start[kind] + len(age_z)] = (
        base + 0.5 * profiles[f"{kind}_sign"][:, None] * gender_axis
        + 0.5 * age_z[:, None] * age_axis + noise(len(age_z), scale))
  vecs[start["tail"]:] = concept_base[tail_owner] + noise(len(tail_owner), 0.6)
  return unit(vecs).astype(np.float32)


def caption_tables(config):
  """Caption vocabulary split: the first C*W words name concepts (W each), the rest are filler.

  Returns word_concept [caption_vocab_size] int32 (-1 for filler) and filler Zipf probabilities.
  """
  C, W = config.num_concepts, config.caption_words_per_concept
  num_filler = config.caption_vocab_size - C * W
  if num_filler < 1:
    raise ValueError("caption_vocab_size must exceed num_concepts * caption_words_per_concept")
  word_concept = np.concatenate([np.repeat(np.arange(C), W), -np.ones(num_filler, int)])
  return word_concept.astype(np.int32), zipf_weights(num_filler, 1.0)
