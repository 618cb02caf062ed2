r"""What Denton et al. show beyond Tables 3-4 (Sections 4.2-4.3), as numpy functions on arrays.

Figure 6 and 5 (per-hashtag recall and precision-recall), Table 5 (examples) and Figure 7
(t-SNE of the user vectors); Table 6 (demographic probing) is in probing.py. Plotting is in
plots.py; the command that loads runs and feeds these functions is hashjax/tools/figures.py.

Conventions: tag ids are dataset ids (ordered by training frequency); a ranking's ties go to the
lower id (as in topk.py), so every selection here is deterministic.
"""

from __future__ import annotations

import numpy as np

from hashjax.data.synthetic import vocab as synthetic_vocab
from hashjax.eval import metrics


def sort_desc(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
  """candidates sorted by values[candidates] descending, ties by lower id."""
  candidates = np.asarray(candidates)
  return candidates[np.lexsort((candidates, -np.asarray(values)[candidates]))]


# ----------------------------------------------------------------------------------------------
# Figure 6: recall at 10 of single hashtags.


def per_tag_recall(pred_ids, true_ids, true_mask, num_tags: int, k: int = 10):
  r"""R@k(y) = C(y) / \sum_i |GT(i) \cap {y}|, C(y) = \sum_i |Rank_k(i) \cap GT(i) \cap {y}|.

  The paper's R@k(y) (Sec. 4.2) with the numerator counting correct predictions of y (see
  metrics.per_tag_precision_recall for why). Returns (recall [V], NaN where y labels no post;
  num_true [V], the number of posts y labels).
  """
  stats = metrics.per_tag_precision_recall(pred_ids, true_ids, true_mask, num_tags, k)
  return stats.recall, stats.num_true


def recall_subsets(recalls: dict[str, np.ndarray], num_true, frequency, *, base: str, other: str,
                   n: int = 20, min_positives: int = 10) -> dict[str, np.ndarray]:
  """The three hashtag sets of Figure 6, each n tag ids in plotting order.

    "most frequent":        the n tags of highest `frequency` (pass the training counts: then
                            natural and balanced runs show the same tags) with a test positive;
    "best for <base>":      the n highest R@k(y) under the `base` model (bilinear in the paper),
                            tags predicted well without user information;
    "largest gain of <other>": the n largest R@k_other(y) - R@k_base(y) (3-way minus bilinear),
                            the tags whose prediction relies most on the user.

  The last two consider only tags with >= min_positives test posts: a tag seen once has recall
  0 or 1, and the top of either list would be such tags.
  """
  num_true = np.asarray(num_true)
  seen = np.flatnonzero(num_true > 0)
  enough = np.flatnonzero(num_true >= min_positives)
  gain = recalls[other] - recalls[base]
  return {"most frequent": sort_desc(np.asarray(frequency, np.float64), seen)[:n],
          f"best for {base}": sort_desc(recalls[base], enough)[:n],
          f"largest gain of {other}": sort_desc(gain, enough)[:n]}


# ----------------------------------------------------------------------------------------------
# Figure 5: precision-recall curves of chosen hashtags.

# Content tags first (the paper's #nature, #sunset: user information adds little), then the
# tags user information should help: home city and country (#nyc, #london) and the tags of a
# demographic (#wcw, #mcm, #100happydays), then the polysemous tags (meaning set by the user).
PR_KINDS = ("concept", "city", "country", "social", "generic", "polysemous")


def choose_pr_tags(tag_kinds, num_true, *, kinds=PR_KINDS, per_kind: int = 2,
                   min_positives: int = 20) -> np.ndarray:
  """For each kind in `kinds` (names of synthetic_vocab.KIND_NAMES), its `per_kind` tags with
  the most test positives, if they have >= min_positives (a curve over fewer positives is
  mostly noise). Kinds in the given order; a kind without such tags is skipped."""
  tag_kinds, num_true = np.asarray(tag_kinds), np.asarray(num_true)
  chosen = []
  for name in kinds:
    ids = np.flatnonzero((tag_kinds == synthetic_vocab.KIND[name]) & (num_true >= min_positives))
    chosen += list(sort_desc(num_true, ids)[:per_kind])
  return np.asarray(chosen, np.int64)


def pr_curves(scores, labels) -> list[dict[str, np.ndarray | float]]:
  """Per column t of scores/labels [N, T]: {"precision", "recall", "ap"} over the N posts
  (metrics.precision_recall_curve, metrics.average_precision)."""
  scores, labels = np.asarray(scores), np.asarray(labels, bool)
  out = []
  for t in range(scores.shape[1]):
    precision, recall, _ = metrics.precision_recall_curve(scores[:, t], labels[:, t])
    out.append({"precision": precision, "recall": recall,
                "ap": metrics.average_precision(scores[:, t], labels[:, t])})
  return out


# ----------------------------------------------------------------------------------------------
# Table 5: examples, and where the top 10 comes from.


def choose_examples(rows, n: int, seed: int = 0) -> np.ndarray:
  """n of the rows (fewer if there are fewer), drawn without replacement, in row order."""
  rows = np.asarray(rows)
  pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
  return rows[np.sort(pick)]


def kind_shares(pred_ids, tag_kinds) -> np.ndarray:
  """[len(KIND_NAMES)] the share of all top-k slots filled by tags of each kind."""
  kinds = np.asarray(tag_kinds)[np.asarray(pred_ids)]
  return np.bincount(kinds.ravel(), minlength=len(synthetic_vocab.KIND_NAMES)) / kinds.size


def presence(pred_ids, tag_ids) -> np.ndarray:
  """[len(tag_ids)] the fraction of rows whose top-k contains each of tag_ids."""
  pred_ids = np.asarray(pred_ids)
  return np.array([np.mean((pred_ids == t).any(axis=1)) for t in tag_ids])


# ----------------------------------------------------------------------------------------------
# Figure 7: t-SNE of the user vectors, and how much of each attribute the map keeps.


def tsne(vectors, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
  """[N, 2] scikit-learn t-SNE (PCA init, fixed seed); perplexity capped at (N - 1) / 3.

  Exact gradients below 200 points, Barnes-Hut from there: measured here, Barnes-Hut takes
  15.8 s for 25 points (exact: 0.1 s) but is the faster one at 250 (1.3 s against 3.1 s).
  """
  from sklearn.manifold import TSNE  # imported here: slow to import, only the figures need it
  vectors = np.asarray(vectors, np.float64)
  perplexity = min(perplexity, max(1.0, (len(vectors) - 1) / 3))
  method = "exact" if len(vectors) < 200 else "barnes_hut"
  return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
              learning_rate="auto", method=method).fit_transform(vectors)


def _neighbours(points, k: int) -> np.ndarray:
  """[N, k] the k nearest other points of each point (Euclidean; ties by lower index)."""
  points = np.asarray(points, np.float64)
  sq = np.sum(points ** 2, axis=1)
  dist = sq[:, None] + sq[None, :] - 2 * points @ points.T
  np.fill_diagonal(dist, np.inf)
  return np.argsort(dist, axis=1, kind="stable")[:, :k]


def _k(k: int, n: int) -> int:
  """At most half of the other points: with all of them, every point's neighbourhood is the
  rest of the set and the measures below say nothing about the map."""
  return max(1, min(k, (n - 1) // 2))


def neighbour_agreement(points, labels, k: int = 10) -> dict[str, float]:
  """A categorical attribute: the mean share of each point's k nearest others with its label,
  and chance, sum_c p_c^2 (the share if neighbours were random). N^2 memory: for maps of up to
  ~10k points."""
  labels = np.asarray(labels)
  near = _neighbours(points, _k(k, len(labels)))
  _, counts = np.unique(labels, return_counts=True)
  return {"agreement": float(np.mean(labels[near] == labels[:, None])),
          "chance": float(np.sum((counts / counts.sum()) ** 2))}


def neighbour_correlation(points, values, k: int = 10) -> float:
  """A continuous attribute: Pearson correlation of each point's value with the mean value of
  its k nearest others (0 if the map ignores the attribute, 1 if neighbours share it)."""
  values = np.asarray(values, np.float64)
  near = _neighbours(points, _k(k, len(values)))
  return float(np.corrcoef(values, values[near].mean(axis=1))[0, 1])
