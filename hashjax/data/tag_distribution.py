"""Natural and balanced hashtag distributions (Denton et al. Section 4.1).

Balanced: the most common hashtags are downsampled to the frequency of the first hashtag that is
not downsampled. Denton et al. downsample the top 500 of a 10k vocabulary (5%); we keep that
fraction for other vocabulary sizes. An occurrence of tag y is kept with probability

    keep(y) = count(y_c) / count(y)  for the c most frequent tags y (ids 0..c-1),  1 otherwise,

where y_c is the (c+1)-th most frequent tag. The decision for an occurrence is a deterministic
hash of (post_id, y), so the balanced dataset is one fixed dataset, the same in every epoch, for
training and evaluation alike (as in the paper, where the balanced version is a dataset).
Posts left without hashtags carry no training signal and are left out of evaluation.
"""

import numpy as np

DENTON_DOWNSAMPLED_FRACTION = 500 / 10_000
DISTRIBUTIONS = ("natural", "balanced")


def num_downsampled(num_tags: int) -> int:
  return max(1, int(round(DENTON_DOWNSAMPLED_FRACTION * num_tags)))


def keep_probabilities(tag_counts: np.ndarray, dist: str) -> np.ndarray | None:
  """Per-tag keep probability [V] for `dist`, or None for the natural distribution.

  tag_counts must be ordered by frequency (dataset ids are), so the head is ids 0..c-1.
  """
  if dist not in DISTRIBUTIONS:
    raise ValueError(f"unknown hashtag distribution {dist!r}; choose one of {DISTRIBUTIONS}")
  if dist == "natural":
    return None
  counts = np.asarray(tag_counts, np.float64)
  if np.any(np.diff(counts) > 0):
    raise ValueError("tag_counts must be in decreasing order (dataset ids are by frequency)")
  c = num_downsampled(len(counts))
  keep = np.ones(len(counts))
  keep[:c] = counts[c] / np.maximum(counts[:c], 1.0)
  return keep


def _uniform_hash(post_ids: np.ndarray, tag_ids: np.ndarray) -> np.ndarray:
  """A deterministic uniform number in [0, 1) per (post, tag): splitmix64 of the pair."""
  x = (post_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
       + tag_ids.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
  with np.errstate(over="ignore"):
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
  return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def apply(batch: dict, keep: np.ndarray | None) -> dict:
  """Drops the occurrences `keep` rejects from batch['tag_mask'] (a new dict; input unchanged)."""
  if keep is None:
    return batch
  ids = np.maximum(batch["tag_ids"], 0)
  u = _uniform_hash(np.broadcast_to(batch["post_id"][..., None], ids.shape), ids)
  return dict(batch, tag_mask=batch["tag_mask"] & (u < keep[ids]))
