"""Evaluation metrics for hashtag prediction and retrieval, as pure numpy functions.

Conventions shared by every function here:

* Ground truth for N posts is padded: ``true_ids`` int [N, T] and ``true_mask``
  bool [N, T]; GT(i) = {true_ids[i, t] : true_mask[i, t]} is a *set* (a tag
  listed twice counts once) and padding ids are ignored whatever their value.
  Valid ids must be >= 0. A post with an empty GT(i) is invalid data and makes
  the metrics raise ``ValueError`` (it would otherwise give 0/0 in R@k).
* Predictions are ``pred_ids`` int [N, K], row i ranked best first (e.g. the ids
  from ``hashjax.eval.topk``). Rank_k(i) is the set of the first k entries. Rows must
  not repeat an id: a repeated correct tag would be counted twice.
* Every metric is a fraction in [0, 1] (papers print percentages).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

# ----------------------------------------------------------------------------
# Input checks.
# ----------------------------------------------------------------------------


def _check_ground_truth(true_ids, true_mask, *, allow_empty: bool = False):
  true_ids = np.asarray(true_ids)
  true_mask = np.asarray(true_mask, dtype=bool)
  if true_ids.ndim != 2 or true_ids.shape != true_mask.shape:
    raise ValueError(f"true_ids {true_ids.shape} and true_mask {true_mask.shape} "
                     "must be 2-D arrays of the same shape.")
  if np.any(true_ids[true_mask] < 0):
    raise ValueError("valid ground-truth ids must be >= 0.")
  if not allow_empty:
    empty = np.flatnonzero(~true_mask.any(axis=1))
    if empty.size:
      raise ValueError(f"{empty.size} posts have an empty ground truth "
                       f"(first: post {empty[0]}); remove them before evaluating.")
  return true_ids, true_mask


def _check_rows_unique(ids: np.ndarray, what: str) -> None:
  """No id twice in a row; negative ids are empty slots (a generator's shorter list) and may
  repeat."""
  s = np.sort(ids, axis=1)
  dup = np.flatnonzero(((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)).any(axis=1))
  if dup.size:
    raise ValueError(f"{what} repeat an id in {dup.size} rows (first: row {dup[0]}).")


def _check_predictions(pred_ids, num_rows: int, ks: Sequence[int],
                       what: str = "pred_ids") -> np.ndarray:
  pred_ids = np.asarray(pred_ids)
  if pred_ids.ndim != 2 or pred_ids.shape[0] != num_rows:
    raise ValueError(f"{what} must be [{num_rows}, K], got {pred_ids.shape}.")
  if min(ks) < 1 or max(ks) > pred_ids.shape[1]:
    raise ValueError(f"ks={tuple(ks)} needs 1 <= k <= {pred_ids.shape[1]} "
                     "(the number of ranked predictions per post).")
  _check_rows_unique(pred_ids, what)
  return pred_ids


def _distinct_valid(true_ids, true_mask) -> np.ndarray:
  """Mask selecting each distinct valid id of a row once (drops GT duplicates)."""
  order = np.argsort(np.where(true_mask, true_ids, -1), axis=1, kind="stable")
  s = np.take_along_axis(np.where(true_mask, true_ids, -1), order, axis=1)
  first = np.ones_like(s, dtype=bool)
  first[:, 1:] = s[:, 1:] != s[:, :-1]
  keep_sorted = first & (s >= 0)
  keep = np.zeros_like(keep_sorted)
  np.put_along_axis(keep, order, keep_sorted, axis=1)
  return keep


# ----------------------------------------------------------------------------
# Tag prediction: per-post metrics (Denton et al. 2015).
# ----------------------------------------------------------------------------


def hits(pred_ids, true_ids, true_mask) -> np.ndarray:
  """hits[i, j] = 1[pred_ids[i, j] in GT(i)], bool [N, K]; padding never matches."""
  pred_ids = np.asarray(pred_ids)
  true_ids, true_mask = _check_ground_truth(true_ids, true_mask, allow_empty=True)
  if pred_ids.ndim != 2 or pred_ids.shape[0] != true_ids.shape[0]:
    raise ValueError(f"pred_ids {pred_ids.shape} must be [N={true_ids.shape[0]}, K].")
  match = pred_ids[:, :, None] == true_ids[:, None, :]
  return (match & true_mask[:, None, :]).any(axis=2)


def _per_post(pred_ids, true_ids, true_mask, ks):
  """Shared checks; returns (hits [N, K], |GT(i)| [N])."""
  true_ids, true_mask = _check_ground_truth(true_ids, true_mask)
  pred_ids = _check_predictions(pred_ids, true_ids.shape[0], ks)
  gt_size = _distinct_valid(true_ids, true_mask).sum(axis=1)
  return hits(pred_ids, true_ids, true_mask), gt_size


def _p_at(h, k):
  return float(np.mean(h[:, :k].sum(axis=1) / k))


def _r_at(h, gt_size, k):
  return float(np.mean(h[:, :k].sum(axis=1) / gt_size))


def _a_at(h, k):
  return float(np.mean(h[:, :k].any(axis=1)))


def precision_at_k(pred_ids, true_ids, true_mask, k: int) -> float:
  """P@k = (1/N) sum_i |Rank_k(i) ∩ GT(i)| / k.

  Denton divides by |Rank_k(i)|, which is k whenever the vocabulary has >= k
  tags, so a post with fewer than k true tags cannot reach P@k = 1.
  """
  h, _ = _per_post(pred_ids, true_ids, true_mask, (k,))
  return _p_at(h, k)


def recall_at_k(pred_ids, true_ids, true_mask, k: int) -> float:
  """R@k = (1/N) sum_i |Rank_k(i) ∩ GT(i)| / |GT(i)|  (< 1 whenever |GT(i)| > k)."""
  h, gt_size = _per_post(pred_ids, true_ids, true_mask, (k,))
  return _r_at(h, gt_size, k)


def accuracy_at_k(pred_ids, true_ids, true_mask, k: int) -> float:
  """A@k = (1/N) sum_i 1[Rank_k(i) ∩ GT(i) != {}]: at least one hit in the top k."""
  h, _ = _per_post(pred_ids, true_ids, true_mask, (k,))
  return _a_at(h, k)


def ranking_metrics(pred_ids, true_ids, true_mask,
                    ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
  """{'P@k', 'R@k', 'A@k'} for every k in ks, from one hits matrix.

  Raises:
    ValueError: if pred_ids has fewer than max(ks) columns, repeats an id in a
      row, or a post has an empty ground truth.
  """
  h, gt_size = _per_post(pred_ids, true_ids, true_mask, ks)
  out = {}
  for k in ks:
    out[f"P@{k}"] = _p_at(h, k)
    out[f"R@{k}"] = _r_at(h, gt_size, k)
    out[f"A@{k}"] = _a_at(h, k)
  return out


# ----------------------------------------------------------------------------
# Tag prediction: per-hashtag metrics.
# ----------------------------------------------------------------------------


class PerTagStats(NamedTuple):
  precision: np.ndarray      # [V] float, NaN where num_predicted == 0
  recall: np.ndarray         # [V] float, NaN where num_true == 0
  num_correct: np.ndarray    # [V] int: sum_i |Rank_k(i) ∩ GT(i) ∩ {y}|
  num_predicted: np.ndarray  # [V] int: sum_i |Rank_k(i) ∩ {y}|
  num_true: np.ndarray       # [V] int: sum_i |GT(i) ∩ {y}|


def per_tag_precision_recall(pred_ids, true_ids, true_mask, num_tags: int,
                             k: int) -> PerTagStats:
  """Precision and recall at k of each hashtag y, counted over all N posts.

      recall(y)    = C(y) / sum_i |GT(i) ∩ {y}|
      precision(y) = C(y) / sum_i |Rank_k(i) ∩ {y}|
      with C(y)    = sum_i |Rank_k(i) ∩ GT(i) ∩ {y}|  (correct predictions of y)

  How this relates to Denton et al. (2015), Sec. 4.2, as printed:

  * Both printed numerators are sum_i |Rank_k(i) ∩ {y}|, the number of times y
    is predicted, correct or not. Read literally, "recall" could exceed 1 and
    neither quantity would depend on whether predictions are right, so the
    intended numerator must be C(y), used here.
  * The printed precision denominator is sum_i |Rank_k(i)| = N k, the same for
    every y. That gives C(y) / (N k), the share of all top-k slots that are
    correct predictions of y: it is bounded by the frequency of y and cannot
    trace a precision-recall curve. We use the standard per-class precision,
    correct predictions of y over predictions of y. The printed quantity is
    ``num_correct / (N * k)`` and can be rebuilt from the returned counts.

  Entries with a zero denominator (y never true, y never predicted) are NaN;
  filter with the counts (e.g. ``num_true >= 5``) before averaging.
  """
  true_ids, true_mask = _check_ground_truth(true_ids, true_mask)
  pred_ids = _check_predictions(pred_ids, true_ids.shape[0], (k,))[:, :k]
  if pred_ids.min() < 0 or pred_ids.max() >= num_tags or true_ids[true_mask].max() >= num_tags:
    raise ValueError(f"tag ids must lie in [0, {num_tags}).")
  h = hits(pred_ids, true_ids, true_mask)
  num_predicted = np.bincount(pred_ids.ravel(), minlength=num_tags)
  num_correct = np.bincount(pred_ids[h], minlength=num_tags)
  num_true = np.bincount(true_ids[_distinct_valid(true_ids, true_mask)],
                         minlength=num_tags)
  with np.errstate(invalid="ignore", divide="ignore"):
    precision = np.where(num_predicted > 0, num_correct / num_predicted, np.nan)
    recall = np.where(num_true > 0, num_correct / num_true, np.nan)
  return PerTagStats(precision, recall, num_correct, num_predicted, num_true)


def precision_recall_curve(scores, labels):
  """Precision and recall of one hashtag at every distinct score threshold.

  A post is predicted positive at threshold t when its score is >= t. For the
  distinct scores t_1 > t_2 > ... > t_m (tied posts enter together),

      precision_j = TP(t_j) / #{i : s_i >= t_j},   recall_j = TP(t_j) / #positives.

  Like sklearn's ``precision_recall_curve`` without its extra (recall 0,
  precision 1) end point, and ordered by decreasing threshold.

  Args:
    scores: [N] the model's score for this tag on each test post.
    labels: [N] bool, whether the post carries the tag.

  Returns:
    (precision [m], recall [m], thresholds [m]), recall non-decreasing.
  """
  scores = np.asarray(scores, dtype=np.float64)
  labels = np.asarray(labels, dtype=bool)
  if scores.ndim != 1 or scores.shape != labels.shape:
    raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be 1-D "
                     "of the same length.")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN.")
  if not labels.any():
    raise ValueError("no positive label: recall is undefined.")
  order = np.argsort(-scores, kind="stable")
  s, tp = scores[order], np.cumsum(labels[order])
  # Last position of each run of equal scores: ties cross the threshold together.
  last = np.flatnonzero(np.append(s[1:] != s[:-1], True))
  precision = tp[last] / (last + 1)
  recall = tp[last] / tp[-1]
  return precision, recall, s[last]


def average_precision(scores, labels) -> float:
  """AP = sum_j (recall_j - recall_{j-1}) precision_j, recall_0 = 0.

  The step-wise (non-interpolated) area under the curve above; equal to
  sklearn's ``average_precision_score``.
  """
  precision, recall, _ = precision_recall_curve(scores, labels)
  return float(np.sum(np.diff(recall, prepend=0.0) * precision))


# ----------------------------------------------------------------------------
# Hashtag-to-image retrieval (Veit et al. 2018, eq. 8).
# ----------------------------------------------------------------------------


def tags_in_ground_truth(true_ids, true_mask) -> np.ndarray:
  """Sorted distinct tag ids that label at least one post: the retrieval queries."""
  true_ids, true_mask = _check_ground_truth(true_ids, true_mask, allow_empty=True)
  return np.unique(true_ids[true_mask])


def tag_retrieval_precision_at_k(query_tag_ids, top_post_ids, true_ids, true_mask,
                                 ks: Sequence[int] = (10,)) -> dict[str, float]:
  """Precision at k of retrieving test posts for each query hashtag.

      P@k = (1/|H|) sum_{h in H} |R_k(h) ∩ GT(h)| / k

  R_k(h) is the set of the k highest-scoring test posts for tag h (row h of
  ``top_post_ids``, e.g. from ``topk.top_k_posts_per_tag``) and GT(h) the test
  posts labelled h. H, the query set, is the tags that label at least one test
  post (``tags_in_ground_truth``); a tag outside it has an empty GT(h) and is
  rejected. A tag with fewer than k posts cannot reach P@k = 1.

  Args:
    query_tag_ids: [H] tag ids.
    top_post_ids: [H, K] indices of test posts (rows of true_ids), best first.
    true_ids, true_mask: [N, T] padded ground truth of the test posts.
    ks: cut-offs, each <= K.

  Returns:
    {'P@k': float} for each k in ks.
  """
  true_ids, true_mask = _check_ground_truth(true_ids, true_mask, allow_empty=True)
  query_tag_ids = np.asarray(query_tag_ids)
  if query_tag_ids.ndim != 1 or query_tag_ids.size == 0:
    raise ValueError("query_tag_ids must be a non-empty 1-D array.")
  top_post_ids = _check_predictions(top_post_ids, query_tag_ids.shape[0], ks,
                                    "top_post_ids")
  if top_post_ids.min() < 0 or top_post_ids.max() >= true_ids.shape[0]:
    raise ValueError(f"top_post_ids must index the {true_ids.shape[0]} test posts.")
  absent = np.setdiff1d(query_tag_ids, tags_in_ground_truth(true_ids, true_mask))
  if absent.size:
    raise ValueError(f"{absent.size} query tags label no test post (first: {absent[0]}); "
                     "use tags_in_ground_truth() to pick the queries.")
  # relevant[h, j] = 1[query tag h is in GT(top_post_ids[h, j])]; [H, K, T] gather.
  match = true_ids[top_post_ids] == query_tag_ids[:, None, None]
  relevant = (match & true_mask[top_post_ids]).any(axis=2)
  return {f"P@{k}": _p_at(relevant, k) for k in ks}


# ----------------------------------------------------------------------------
# User retrieval (Durand 2020, Sec. 4.3).
# ----------------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  x = x.astype(np.promote_types(x.dtype, np.float32))
  if x.ndim != 2 or not np.isfinite(x).all():
    raise ValueError("representations must be a finite 2-D array [M, d].")
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  if np.any(norms == 0):
    raise ValueError("a zero representation has no cosine similarity.")
  return x / norms


def user_retrieval_ranks(representations, user_ids, *, query_chunk: int = 256):
  """Rank of the best same-user match for each representation used as a query.

  Rows are l2-normalised, so the dot product is the cosine similarity. Query q
  is ranked against every other row (never itself); with s* the highest
  similarity of another row of the same user,

      rank(q) = 1 + #{j : user(j) != user(q), cos(q, j) >= s*}.

  Ties count against the query (pessimistic rank): an other-user row as similar
  as the best match is ranked before it. Ties are judged on the computed
  similarities, so rows equal up to scale may differ by rounding. Queries whose user has no other row
  are skipped. Memory is bounded by query_chunk x M similarities.

  Returns:
    (ranks [Q] int, query_index [Q] int) over the queries that were not skipped.
  """
  x = _unit_rows(representations)
  user_ids = np.asarray(user_ids)
  if user_ids.shape != (x.shape[0],):
    raise ValueError(f"user_ids must have shape ({x.shape[0]},), got {user_ids.shape}.")
  _, user, counts = np.unique(user_ids, return_inverse=True, return_counts=True)
  queries = np.flatnonzero(counts[user] >= 2)
  ranks = np.empty(queries.size, dtype=np.int64)
  for c in range(0, queries.size, query_chunk):
    q = queries[c:c + query_chunk]
    sims = x[q] @ x.T                                   # [c, M]
    other_user = user[q][:, None] != user[None, :]
    same_user = ~other_user
    same_user[np.arange(q.size), q] = False            # the query itself
    best = np.where(same_user, sims, -np.inf).max(axis=1, keepdims=True)
    ranks[c:c + query_chunk] = 1 + (other_user & (sims >= best)).sum(axis=1)
  return ranks, queries


def user_retrieval(representations, user_ids, ks: Sequence[int] = (1, 10), *,
                   query_chunk: int = 256) -> dict[str, float]:
  """Accuracy@k and median rank of user retrieval (see user_retrieval_ranks).

      A@k = (1/Q) sum_q 1[rank(q) <= k],   median_rank = median_q rank(q)

  over the Q queries whose user has at least two representations (the median
  of an even count is the mean of the middle two).

  Returns:
    {'A@k' for k in ks, 'median_rank', 'num_queries', 'num_skipped'}.
  """
  ranks, queries = user_retrieval_ranks(representations, user_ids,
                                        query_chunk=query_chunk)
  if ranks.size == 0:
    raise ValueError("no user has two representations: nothing to retrieve.")
  out = {f"A@{k}": float(np.mean(ranks <= k)) for k in ks}
  out["median_rank"] = float(np.median(ranks))
  out["num_queries"] = int(ranks.size)
  out["num_skipped"] = int(len(user_ids) - ranks.size)
  return out
