r"""Metrics broken down by a post's or a query's bucket (Veit et al., Figs. 5 and 10), in numpy.

Fig. 5 splits test A@1 by how many training posts the poster has; Fig. 10 splits hashtag-to-image
P@10 by how frequent the query hashtag is in training. Both are a bucketing of integer values
(`bucket_edges`, `assign_buckets`) and a mean per bucket (`grouped_mean`) of a per-item score:
`accuracy_hits` per test post, `per_tag_retrieval_precision` per query hashtag. The command that
loads runs and feeds these is hashjax/tools/veit_figures.py.

Buckets are half-open integer ranges: edges e_0 < e_1 < ... < e_B, bucket b = [e_b, e_{b+1}).
Schemes (`bucket_edges`):
  "log2"        a bucket [0, 1) if some value is 0, then [1, 2), [2, 4), [4, 8), ... from the
                power of two at or below the smallest positive value to the one above the
                largest (buckets may be empty);
  "quantile:N"  up to N buckets holding about the same number of values: with s the sorted
                values, inner edges s[i * len(s) // N] for i = 1 .. N - 1 (equal edges merge,
                so heavy ties leave fewer buckets), first edge min, last edge max + 1.
"""

from __future__ import annotations

import numpy as np

from hashjax.eval import metrics


# ----------------------------------------------------------------------------------------------
# Buckets of integer values.


def _integer_values(values) -> np.ndarray:
  values = np.asarray(values)
  if values.ndim != 1 or values.size == 0:
    raise ValueError(f"values must be a non-empty 1-D array, got shape {values.shape}.")
  if not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"values must be integers, got {values.dtype}.")
  if values.min() < 0:
    raise ValueError("values must be >= 0.")
  return values.astype(np.int64)


def log2_edges(values) -> np.ndarray:
  """Edges of the "log2" scheme (module docstring) for integer values >= 0."""
  values = _integer_values(values)
  edges = [0] if (values == 0).any() else []
  positive = values[values > 0]
  if positive.size:
    low = int(positive.min()).bit_length() - 1   # 2**low <= min < 2**(low + 1)
    high = int(positive.max()).bit_length()      # max < 2**high
    edges += [2 ** b for b in range(low, high + 1)]
  else:
    edges.append(1)
  return np.asarray(edges, np.int64)


def quantile_edges(values, num_buckets: int) -> np.ndarray:
  """Edges of the "quantile:N" scheme (module docstring), N = num_buckets >= 1."""
  values = _integer_values(values)
  if num_buckets < 1:
    raise ValueError(f"num_buckets must be >= 1, got {num_buckets}.")
  s = np.sort(values)
  inner = [s[i * len(s) // num_buckets] for i in range(1, num_buckets)]
  return np.unique(np.asarray([s[0], *inner, s[-1] + 1], np.int64))


def bucket_edges(values, scheme: str = "log2") -> np.ndarray:
  """Edges for `values` by scheme name: "log2" or "quantile:N"."""
  if scheme == "log2":
    return log2_edges(values)
  name, _, n = scheme.partition(":")
  if name == "quantile" and n.isdigit():
    return quantile_edges(values, int(n))
  raise ValueError(f"unknown bucket scheme {scheme!r}: use 'log2' or 'quantile:N'")


def assign_buckets(values, edges) -> np.ndarray:
  """The bucket b of each value, edges[b] <= v < edges[b + 1]; int [N]."""
  values, edges = np.asarray(values), np.asarray(edges)
  if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
    raise ValueError(f"edges must be increasing with at least two entries, got {edges}.")
  if values.size and (values.min() < edges[0] or values.max() >= edges[-1]):
    raise ValueError(f"values in [{values.min()}, {values.max()}] fall outside the buckets "
                     f"[{edges[0]}, {edges[-1]}).")
  return np.searchsorted(edges, values, side="right") - 1


def bucket_labels(edges) -> list[str]:
  """"a" for a bucket holding one integer [a, a + 1), else "a-b" for [a, b + 1)."""
  edges = [int(e) for e in edges]
  return [f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])]


def grouped_mean(values, groups, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
  """(mean of the values in each group, NaN for an empty group; the group sizes), [G] each."""
  values = np.asarray(values, np.float64)
  groups = np.asarray(groups)
  if values.shape != groups.shape or values.ndim != 1:
    raise ValueError(f"values {values.shape} and groups {groups.shape} must be 1-D, one each.")
  if groups.size and (groups.min() < 0 or groups.max() >= num_groups):
    raise ValueError(f"group ids must lie in [0, {num_groups}).")
  counts = np.bincount(groups, minlength=num_groups)
  sums = np.bincount(groups, weights=values, minlength=num_groups)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(counts > 0, sums / counts, np.nan), counts


# ----------------------------------------------------------------------------------------------
# Fig. 5: tagging accuracy per post, by the poster's bucket.


def accuracy_hits(pred_ids, true_ids, true_mask, k: int = 1) -> np.ndarray:
  """1[Rank_k(i) ∩ GT(i) != {}] for each post, bool [N]: the term of A@k (Veit eq. 7); its
  mean is metrics.accuracy_at_k."""
  pred_ids = np.asarray(pred_ids)
  metrics.accuracy_at_k(pred_ids, true_ids, true_mask, k)  # the shared checks
  return metrics.hits(pred_ids[:, :k], true_ids, true_mask).any(axis=1)


def accuracy_by_bucket(pred_ids, true_ids, true_mask, buckets, num_buckets: int,
                       k: int = 1) -> dict[str, np.ndarray]:
  """A@k over the posts of each bucket: {"accuracy": [B] (NaN: no post), "posts": [B]}.

  buckets: int [N], each post's bucket (e.g. assign_buckets of its user's training posts).
  """
  accuracy, posts = grouped_mean(accuracy_hits(pred_ids, true_ids, true_mask, k), buckets,
                                 num_buckets)
  return {"accuracy": accuracy, "posts": posts}


# ----------------------------------------------------------------------------------------------
# Figs. 9 and 10: hashtag-to-image retrieval, per query hashtag.


def positives_per_tag(true_ids, true_mask, num_tags: int) -> np.ndarray:
  """|GT(h)|, the number of posts each tag labels (a tag listed twice in a post counts once)."""
  true_ids = np.asarray(true_ids)
  true_mask = np.asarray(true_mask, bool)
  if true_ids.shape != true_mask.shape or true_ids.ndim != 2:
    raise ValueError(f"true_ids {true_ids.shape} and true_mask {true_mask.shape} must be 2-D "
                     "arrays of the same shape.")
  post, slot = np.nonzero(true_mask)
  tags = true_ids[post, slot]
  if tags.size and (tags.min() < 0 or tags.max() >= num_tags):
    raise ValueError(f"tag ids must lie in [0, {num_tags}).")
  pairs = np.unique(np.stack([post, tags], axis=1), axis=0)
  return np.bincount(pairs[:, 1], minlength=num_tags)


def retrieval_queries(true_ids, true_mask, num_tags: int, min_positives: int = 1) -> np.ndarray:
  """The query hashtags: every tag labelling at least min_positives posts, ascending ids."""
  if min_positives < 1:
    raise ValueError(f"min_positives must be >= 1 (a query needs a relevant post), got "
                     f"{min_positives}.")
  return np.flatnonzero(positives_per_tag(true_ids, true_mask, num_tags) >= min_positives)


def retrieval_relevance(query_tag_ids, top_post_ids, true_ids, true_mask) -> np.ndarray:
  """relevant[h, j] = 1[query tag h labels post top_post_ids[h, j]], bool [H, K]."""
  query_tag_ids = np.asarray(query_tag_ids)
  top_post_ids = np.asarray(top_post_ids)
  true_ids = np.asarray(true_ids)
  true_mask = np.asarray(true_mask, bool)
  if top_post_ids.ndim != 2 or top_post_ids.shape[0] != query_tag_ids.shape[0]:
    raise ValueError(f"top_post_ids {top_post_ids.shape} must be [H={query_tag_ids.shape[0]}, K].")
  if top_post_ids.size and (top_post_ids.min() < 0 or top_post_ids.max() >= true_ids.shape[0]):
    raise ValueError(f"top_post_ids must index the {true_ids.shape[0]} posts.")
  match = true_ids[top_post_ids] == query_tag_ids[:, None, None]
  return (match & true_mask[top_post_ids]).any(axis=2)


def per_tag_retrieval_precision(query_tag_ids, top_post_ids, true_ids, true_mask,
                                k: int = 10) -> np.ndarray:
  """|R_k(h) ∩ GT(h)| / k for each query tag h, float [H]: the terms of Veit eq. 8, whose mean
  over the queries is metrics.tag_retrieval_precision_at_k."""
  top_post_ids = np.asarray(top_post_ids)
  if not 1 <= k <= top_post_ids.shape[-1]:
    raise ValueError(f"k={k} needs 1 <= k <= {top_post_ids.shape[-1]} (posts per query).")
  relevant = retrieval_relevance(query_tag_ids, top_post_ids, true_ids, true_mask)
  return relevant[:, :k].sum(axis=1) / k
