r"""Denton et al.'s Table 6: which hashtags a model predicts more for one group of users than
for another (gender within an age band, age within a gender, home city), as numpy functions.

On synthetic data the world knows what was planted (each social / generic tag's demographic
profile, each city's tags), so the probing is also scored against it: how many listed tags sit
on the planted side, and whether every planted tag's rank moves the planted way.
Conventions as in analysis.py (dataset tag ids; ties go to the lower id).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.stats

from hashjax.data.synthetic import users as synthetic_users
from hashjax.data.synthetic import vocab as synthetic_vocab
from hashjax.eval.analysis import sort_desc

# ----------------------------------------------------------------------------------------------
# Table 6: demographic probing.


def cosine_similarities(features, probe) -> np.ndarray:
  """cos(x_i, probe) for the rows of features [N, D] (zero rows give 0)."""
  features = np.asarray(features, np.float64)
  probe = np.asarray(probe, np.float64)
  norms = np.linalg.norm(features, axis=1) * np.linalg.norm(probe)
  return features @ probe / np.maximum(norms, 1e-12)


def nearest(similarities, n: int) -> np.ndarray:
  """Indices of the n largest similarities, most similar first (ties: lower index)."""
  similarities = np.asarray(similarities)
  return sort_desc(similarities, np.arange(len(similarities)))[:n]


def choose_probe_concept(dominant_concept, trait, *, min_posts: int = 20) -> int:
  """argmax_c trait[c] over the concepts that dominate >= min_posts of the posts.

  A probe image is a typical image of the most people-like concept (trait = the world's
  concept_sociality: selfies, where social tags live) or of the most scene-like one
  (concept_locality: the paper's cityscape for location).
  """
  counts = np.bincount(np.asarray(dominant_concept), minlength=len(trait))
  candidates = np.flatnonzero(counts >= min_posts)
  if not candidates.size:
    candidates = np.flatnonzero(counts == counts.max())
  return int(sort_desc(np.asarray(trait, np.float64), candidates)[0])


def medoid(features) -> int:
  """Index of the row nearest (cosine) the mean of the L2-normalised rows: a typical image."""
  x = np.asarray(features, np.float64)
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  return int(nearest(cosine_similarities(x, x.mean(axis=0)), 1)[0])


def top_k_ids(scores, k: int) -> np.ndarray:
  """[B, k] ids of the k highest scores per row, best first, ties by lower id."""
  return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]


def ranks(scores) -> np.ndarray:
  """[B, V] rank of every tag per row (1 = best; ties by lower id, as top_k_ids)."""
  order = np.argsort(-np.asarray(scores), axis=1, kind="stable")
  out = np.empty_like(order)
  np.put_along_axis(out, order, np.arange(1, order.shape[1] + 1)[None], axis=1)
  return out


def count_in_top_k(pred_ids, num_tags: int) -> np.ndarray:
  """counts[y] = #rows whose top-k contains y (a row lists an id at most once)."""
  return np.bincount(np.asarray(pred_ids).ravel(), minlength=num_tags)


def contrast(counts_a, size_a: int, counts_b, size_b: int, *, n: int = 10) -> dict:
  r"""The hashtags predicted most often for one group relative to the other (Table 6, step iv).

    diff(y) = counts_a(y) / |A| - counts_b(y) / |B|

  the difference of the shares of A's and B's images with y in their top k (the paper compares
  counts; with subsets of unequal size shares are the comparable quantity, and for equal sizes
  the order is the same). Returns {"diff" [V], "a": up to n ids of the largest positive diff
  (largest first), "b": up to n ids of the most negative}.
  """
  diff = np.asarray(counts_a) / max(size_a, 1) - np.asarray(counts_b) / max(size_b, 1)
  ids = np.arange(len(diff))
  return {"diff": diff, "a": sort_desc(diff, ids[diff > 0])[:n],
          "b": sort_desc(-diff, ids[diff < 0])[:n]}


ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (features, user_meta) -> [B, V]


def probe_observed(score_fn: ScoreFn, features, meta, in_a, in_b, *, k: int = 10,
                   n: int = 10) -> dict:
  """The paper's procedure on the neighbours of a probe image: subset A (in_a) and B (in_b) of
  the neighbours, each image scored with its own poster's metadata, top-k counted, contrasted."""
  in_a, in_b = np.asarray(in_a, bool), np.asarray(in_b, bool)
  scores = np.asarray(score_fn(np.asarray(features), np.asarray(meta)))
  top = top_k_ids(scores, k)
  size_a, size_b = int(in_a.sum()), int(in_b.sum())
  out = contrast(count_in_top_k(top[in_a], scores.shape[1]), size_a,
                 count_in_top_k(top[in_b], scores.shape[1]), size_b, n=n)
  return dict(out, size_a=size_a, size_b=size_b)


def probe_counterfactual(score_fn: ScoreFn, features, meta_a, meta_b, *, k: int = 10,
                         n: int = 10) -> dict:
  """The same images under A's and under B's metadata (everything else equal): the difference
  is the model's effect of the attribute, with no image-content difference between subsets.

  Besides the top-k contrast, rank_gain(y) = mean_i (rank_B,i(y) - rank_A,i(y)) > 0 when y
  ranks higher with A's metadata: it covers every tag, also those that never reach a top k.
  """
  scores_a = np.asarray(score_fn(features, meta_a))
  scores_b = np.asarray(score_fn(features, meta_b))
  num_tags, size = scores_a.shape[1], scores_a.shape[0]
  out = contrast(count_in_top_k(top_k_ids(scores_a, k), num_tags), size,
                 count_in_top_k(top_k_ids(scores_b, k), num_tags), size, n=n)
  gain = (ranks(scores_b) - ranks(scores_a)).mean(axis=0)
  return dict(out, size_a=size, size_b=size, rank_gain=gain)


def counterfactual_meta(users: dict, user_ids, **fields) -> np.ndarray:
  """Denton's descriptor (synthetic users.user_meta) of the given users with some demographics
  replaced: age=, gender=, country=, lat=, lon= (scalars or per-user arrays).

  users: the world's per-user arrays (World.users: age, gender, country, lat, lon, ...).
  """
  ids = np.asarray(user_ids)
  columns = {f"user_{key}": np.asarray(users[key])[ids]
             for key in ("age", "gender", "country", "lat", "lon")}
  for key, value in fields.items():
    if f"user_{key}" not in columns:
      raise KeyError(f"unknown demographic field {key!r}")
    old = columns[f"user_{key}"]
    columns[f"user_{key}"] = np.broadcast_to(value, ids.shape).astype(
        np.result_type(old.dtype, np.asarray(value).dtype))
  return synthetic_users.user_meta(columns, np.arange(len(ids)))


# ----------------------------------------------------------------------------------------------
# What was planted, and how much of it the probing recovers.


def planted_tag_effects(world) -> dict[str, np.ndarray]:
  """The world's demographic and location effects per public tag id [V]. Social and generic
  tags have a rate profile (synthetic vocab.demographic_profiles)

    rate_t(age, gender) = base_t exp(strength_t sign_t gender - (age - mu_t)^2 / (2 sigma_t^2));

  every other tag has NaN in these columns:

    kind                     synthetic_vocab.KIND_NAMES codes
    gender_sign              +1 favours men, -1 women, 0 neither
    gender_strength          strength_t
    peak_age, age_sigma      mu_t, sigma_t
    city, country            city tags: their city and its country; country tags: -1 and their
                             country; -1 for every other tag
  """
  kinds = np.asarray(world.tag_kinds)
  canonical = np.asarray(world.tag_order)
  start = synthetic_vocab.layout_kinds(synthetic_vocab.vocab_layout(world.config))[1]
  params = world.params
  out = {"kind": kinds, "city": np.full(len(kinds), -1), "country": np.full(len(kinds), -1)}
  columns = {"gender_sign": "sign", "gender_strength": "strength", "peak_age": "mu",
             "age_sigma": "sigma"}
  for column in columns:
    out[column] = np.full(len(kinds), np.nan)
  for name in ("social", "generic"):
    tags = np.flatnonzero(kinds == synthetic_vocab.KIND[name])
    for column, param in columns.items():
      out[column][tags] = params[f"{name}_{param}"][canonical[tags] - start[name]]
  cities = np.flatnonzero(kinds == synthetic_vocab.KIND["city"])
  out["city"][cities] = canonical[cities] - start["city"]
  out["country"][cities] = params["city_country"][out["city"][cities]]
  countries = np.flatnonzero(kinds == synthetic_vocab.KIND["country"])
  out["country"][countries] = canonical[countries] - start["country"]
  return out


def planted_gender(effects, gender_a: int, gender_b: int) -> np.ndarray:
  """log rate_t(A) - log rate_t(B) = strength_t sign_t (gender_a - gender_b): > 0 where the
  world favours side A, < 0 side B, 0 neither, NaN where nothing is planted."""
  return effects["gender_strength"] * effects["gender_sign"] * (gender_a - gender_b)


def planted_age(effects, age_a: float, age_b: float) -> np.ndarray:
  """log rate_t(age_a) - log rate_t(age_b) = ((age_b - mu_t)^2 - (age_a - mu_t)^2) / 2 sigma_t^2:
  > 0 when A's age is nearer the tag's peak mu_t. NaN where nothing is planted."""
  mu, sigma = effects["peak_age"], effects["age_sigma"]
  return ((age_b - mu) ** 2 - (age_a - mu) ** 2) / (2 * sigma ** 2)


def planted_location(effects, city_a: int, city_b: int, country_a: int,
                     country_b: int) -> np.ndarray:
  """City tags: +1 for A's city, -1 for B's, 0 other cities; country tags likewise; NaN for
  every tag that is not a location tag (in the world only a city's users write its tag)."""
  kinds = effects["kind"]
  out = np.full(len(kinds), np.nan)
  city = kinds == synthetic_vocab.KIND["city"]
  country = kinds == synthetic_vocab.KIND["country"]
  out[city] = ((effects["city"] == city_a).astype(float) - (effects["city"] == city_b))[city]
  out[country] = ((effects["country"] == country_a).astype(float)
                  - (effects["country"] == country_b))[country]
  return out


def listed_agreement(a_ids, b_ids, planted) -> dict[str, float]:
  """Of the tags the probing lists for A and for B that carry a planted effect (not NaN):
  right = on the side the world favours, neutral = planted 0, wrong = the other side;
  fraction = right / listed (NaN if none is listed). chance = the expected fraction if each
  side's listed tags were drawn at random from the tags with a planted effect:
  (n_A P(planted > 0) + n_B P(planted < 0)) / (n_A + n_B)."""
  planted = np.asarray(planted, np.float64)
  side = np.concatenate([np.ones(len(a_ids)), -np.ones(len(b_ids))])
  value = planted[np.concatenate([a_ids, b_ids]).astype(np.int64)]
  has = ~np.isnan(value)
  right = int(np.sum(has & (np.sign(value) == side)))
  neutral = int(np.sum(has & (value == 0)))
  total = int(has.sum())
  pool = planted[~np.isnan(planted)]
  n_a, n_b = int(np.sum(has & (side > 0))), int(np.sum(has & (side < 0)))
  chance = ((n_a * np.mean(pool > 0) + n_b * np.mean(pool < 0)) / total
            if total and pool.size else float("nan"))
  return {"right": right, "neutral": neutral, "wrong": total - right - neutral, "listed": total,
          "fraction": right / total if total else float("nan"), "chance": float(chance)}


def effect_agreement(effect, planted) -> dict[str, float]:
  """Over every tag with a planted direction (planted not NaN and != 0): the fraction whose
  measured effect (e.g. probe_counterfactual's rank_gain, > 0 = favours A) has the planted
  sign (an effect of exactly 0 counts as a miss), and rho, the Spearman correlation of effect
  and planted size over those tags (NaN for fewer than 3 tags)."""
  planted, effect = np.asarray(planted, np.float64), np.asarray(effect, np.float64)
  tags = np.flatnonzero(~np.isnan(planted) & (planted != 0))
  agree = int(np.sum(np.sign(effect[tags]) == np.sign(planted[tags])))
  rho = float("nan")
  if tags.size >= 3 and np.ptp(effect[tags]) > 0 and np.ptp(planted[tags]) > 0:
    rho = float(scipy.stats.spearmanr(effect[tags], planted[tags])[0])
  return {"agree": agree, "tags": int(tags.size),
          "fraction": agree / tags.size if tags.size else float("nan"), "rho": rho}


def table6_contrasts(world, test_user_ids, *, young=(13, 17), old=(43, 47)) -> list[dict]:
  """Table 6's five contrasts on a synthetic world, each {"title", "probe" ("people" or
  "scene": which probe image), "sides" (names), "groups" (a group spec per side, see
  in_group), "planted" [V] (> 0: the world favours side A)}:

    gender within the young and within the old age band (female vs male),
    age within each gender (young vs old band),
    home city: the two cities with the most test users among different countries.
  """
  effects = planted_tag_effects(world)
  params = world.params
  city_of = np.asarray(world.users["city"])[np.unique(test_user_ids)]
  count = np.bincount(city_of, minlength=len(params["city_country"]))
  city_a = int(sort_desc(count, np.arange(len(count)))[0])
  others = np.flatnonzero(params["city_country"] != params["city_country"][city_a])
  city_b = int(sort_desc(count, others)[0])
  band = lambda b: f"{b[0]}-{b[1]}"
  out = [{"title": f"gender, age {band(b)}", "probe": "people", "sides": ("female", "male"),
          "groups": ({"gender": -1, "age": b}, {"gender": 1, "age": b}),
          "planted": planted_gender(effects, -1, 1)} for b in (young, old)]
  out += [{"title": f"age, {name}", "probe": "people", "sides": (band(young), band(old)),
           "groups": ({"gender": g, "age": young}, {"gender": g, "age": old}),
           "planted": planted_age(effects, np.mean(young), np.mean(old))}
          for g, name in ((-1, "female"), (1, "male"))]
  country = [int(params["city_country"][c]) for c in (city_a, city_b)]
  out.append({"title": "home city", "probe": "scene",
              "sides": tuple(f"city {c} ({synthetic_users.COUNTRIES[k]})"
                             for c, k in zip((city_a, city_b), country)),
              "groups": ({"city": city_a}, {"city": city_b}),
              "planted": planted_location(effects, city_a, city_b, *country)})
  return out


def in_group(users: dict, user_ids, spec: dict) -> np.ndarray:
  """Which of the users fit a group spec {"gender": g, "age": (lo, hi) inclusive, "city": c}."""
  ids = np.asarray(user_ids)
  fits = np.ones(len(ids), bool)
  for key, value in spec.items():
    column = np.asarray(users[key])[ids]
    fits &= ((column >= value[0]) & (column <= value[1])) if key == "age" else column == value
  return fits


def group_fields(world, spec: dict) -> dict:
  """The counterfactual demographics of a group spec, for counterfactual_meta: the gender, the
  centre of the age band, a city's country and GPS (its centre)."""
  fields = {}
  if "gender" in spec:
    fields["gender"] = spec["gender"]
  if "age" in spec:
    fields["age"] = float(np.mean(spec["age"]))
  if "city" in spec:
    params = world.params
    fields.update(country=params["city_country"][spec["city"]],
                  lat=params["city_lat"][spec["city"]], lon=params["city_lon"][spec["city"]])
  return fields
