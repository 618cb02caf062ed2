r"""Hashtag co-occurrence in the training posts, its PPMI matrix and the PPMI-SVD embeddings.

The fixed hashtag embeddings of Veit et al.'s NCSL-PPMI model (2018, Section 3.1): the top D
singular vectors of the positive pointwise mutual information of hashtag co-occurrence.

    C_ab   = number of training posts that carry both a and b,   a != b  (C_aa = 0)
    C_a    = sum_b C_ab,   C = sum_a C_a       (a post with k hashtags adds k (k - 1) to C)
    p_ab   = C_ab / C,     p_a = C_a / C
    PPMI_ab = max(0, log(p_ab / (p_a p_b))) = max(0, log(C_ab C / (C_a C_b))),   0 if C_ab = 0

p_ab is the distribution of an ordered pair of distinct hashtags drawn from one post (posts
weighted by their number of pairs) and p_a its marginal, so sum_b p_ab = p_a and PMI compares
a pair with independent draws from the same marginals: PMI_ab > 0 when a and b share posts
more often than their overall pairing rates predict. The matrix is symmetric; a post with one
hashtag has no pair and adds nothing.

Embeddings: with PPMI ~ U_D S_D V_D^T (the best rank-D approximation), hashtag a's row is

    e_a = U_D[a] S_D^(1/2)

so that E = U_D S^(1/2) and E' = V_D S^(1/2) split the singular values evenly and E E'^T is
that approximation; as PPMI is symmetric, V_D = U_D up to the sign of the directions with
negative eigenvalues, and e_a . e_b approximates PPMI_ab on the others. Weighting by S_D instead
(U_D S_D) squares the spread of the singular values, and the few top directions then decide
every cosine; Levy, Goldberg and Dagan (2015) find the square root (or no weighting) better
than the full singular values for word similarity. The NCSL model compares embeddings by cosine
(hashjax/models/ncsl.py), so only the relative weight of the directions matters here.

The SVD is scipy.sparse.linalg.svds (ARPACK's Lanczos iteration): PPMI is Y x Y with Y up to
1e5 hashtags and sparse, and only D ~ 300 directions are needed. svds works with products of
the sparse matrix with vectors (O(nnz) each) and keeps O(Y D) numbers, where a dense SVD costs
O(Y^3) time and O(Y^2) memory (80 GB in float64 for Y = 1e5). ARPACK computes at most Y - 1
singular triplets, so D must be in [1, Y). Its starting vector v0 is fixed (seeded) and each
direction's sign is fixed (largest-magnitude entry of u positive), so the table is a function of
the training posts and D alone.

A hashtag that shares no training post with another one (absent from training, or only ever
alone) has a zero PPMI row and no direction in this space: its embedding is exactly the zero
row, set explicitly (the SVD leaves round-off there, which a cosine would blow up into an
arbitrary direction). These hashtags are counted and logged. Every other hashtag b has a
positive PMI somewhere: over a != b its conditional p_ab / p_b sums to 1 but the marginals p_a
sum to 1 - p_b < 1, so p_ab / p_b > p_a for some a; hence zero rows are exactly the isolated
hashtags.
"""

import dataclasses

from absl import logging
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

# Directions whose singular value is below this fraction of the largest are numerically zero:
# D is above the rank of the PPMI matrix, and the extra columns carry no information.
_RANK_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class TagEmbeddings:
  """embeddings float32 [Y, D]; singular_values [D], decreasing; num_zero_rows: hashtags
  with a zero PPMI row (no co-occurrence), whose embedding is zero."""
  embeddings: np.ndarray
  singular_values: np.ndarray
  num_zero_rows: int


def cooccurrence_counts(tag_ids: np.ndarray, tag_mask: np.ndarray,
                        num_tags: int) -> scipy.sparse.csr_matrix:
  """C [Y, Y] (float64, symmetric, zero diagonal) of padded hashtag lists [N, T].

  C_ab counts the posts that carry both a and b (a != b). A post lists a hashtag once (the
  reader rejects repeats), so each post adds at most 1 to an entry.
  """
  tag_ids, tag_mask = np.asarray(tag_ids), np.asarray(tag_mask, bool)
  if tag_ids.shape != tag_mask.shape or tag_ids.ndim != 2:
    raise ValueError(f"tag_ids {tag_ids.shape} and tag_mask {tag_mask.shape} must be the same "
                     "[posts, slots] shape")
  if (tag_mask & ((tag_ids < 0) | (tag_ids >= num_tags))).any():
    raise ValueError(f"hashtag ids outside the vocabulary [0, {num_tags})")
  a, b = tag_ids[:, :, None], tag_ids[:, None, :]
  pair = tag_mask[:, :, None] & tag_mask[:, None, :] & (a != b)
  a, b = np.broadcast_arrays(a, b)
  return scipy.sparse.csr_matrix((np.ones(int(pair.sum())), (a[pair], b[pair])),
                                 shape=(num_tags, num_tags))  # repeated (a, b) are summed


def training_cooccurrence(dataset, chunk: int = 8192) -> scipy.sparse.csr_matrix:
  """C [Y, Y] over the training posts of a PostDataset (read in chunks, hashtags only)."""
  counts = scipy.sparse.csr_matrix((dataset.num_tags, dataset.num_tags))
  # no max_tags: no hashtag is cut
  for _, batch in dataset.read_chunks(dataset.split_rows("train"), chunk=chunk):
    counts = counts + cooccurrence_counts(batch["tag_ids"], batch["tag_mask"], dataset.num_tags)
  return counts.tocsr()


def ppmi(counts: scipy.sparse.spmatrix) -> scipy.sparse.csr_matrix:
  """PPMI [Y, Y] (float64, sparse) of a co-occurrence count matrix (module docstring)."""
  counts = scipy.sparse.coo_matrix(counts, dtype=np.float64)
  total = counts.sum()
  if total <= 0:
    raise ValueError("no two hashtags share a post: the co-occurrence matrix is empty")
  row_sums, col_sums = _row_sums(counts), _row_sums(counts.T)
  # Only stored (C_ab > 0) entries: PMI of an unseen pair is log 0 = -inf, clipped to 0 anyway.
  nz = counts.data > 0
  r, c, n = counts.row[nz], counts.col[nz], counts.data[nz]
  pmi = np.log(n) + np.log(total) - np.log(row_sums[r]) - np.log(col_sums[c])
  out = scipy.sparse.csr_matrix((np.maximum(pmi, 0.0), (r, c)), shape=counts.shape)
  out.eliminate_zeros()
  return out


def truncated_svd(matrix: scipy.sparse.spmatrix, dim: int, seed: int = 0):
  """(u [M, D], s [D], vt [D, N]): the top `dim` singular triplets, s decreasing.

  Deterministic: svds starts from a seeded v0, and each direction's sign (svds may return u or
  -u) is set so that the largest-magnitude entry of u is positive.
  """
  size = min(matrix.shape)
  if not 1 <= dim < size:
    raise ValueError(f"embedding dimension D={dim} must be in [1, {size}): svds computes at "
                     f"most {size - 1} singular directions of a {matrix.shape[0]} x "
                     f"{matrix.shape[1]} matrix (one fewer than the hashtag vocabulary)")
  v0 = np.random.default_rng(seed).standard_normal(size)
  u, s, vt = scipy.sparse.linalg.svds(scipy.sparse.csr_matrix(matrix, dtype=np.float64), k=dim,
                                      v0=v0, solver="arpack")
  order = np.argsort(-s, kind="stable")
  u, s, vt = u[:, order], s[order], vt[order]
  sign = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(dim)])
  sign[sign == 0] = 1.0
  return u * sign, s, vt * sign[:, None]


def ppmi_embeddings(ppmi_matrix: scipy.sparse.spmatrix, dim: int) -> TagEmbeddings:
  """e_a = U_D[a] S_D^(1/2) of a PPMI matrix, zero rows where its row is zero (module docstring)."""
  u, s, _ = truncated_svd(ppmi_matrix, dim)
  embeddings = u * np.sqrt(np.maximum(s, 0.0))
  zero_rows = _row_sums(abs(ppmi_matrix)) == 0
  embeddings[zero_rows] = 0.0
  logging.info("PPMI-SVD hashtag embeddings: D=%d, singular values %.4g..%.4g; %d of %d "
               "hashtags share no training post with another: zero rows", dim, s[0], s[-1],
               int(zero_rows.sum()), ppmi_matrix.shape[0])
  rank = int((s > _RANK_TOLERANCE * s[0]).sum())
  if rank < dim:
    logging.warning("PPMI-SVD: only %d of the D=%d singular values are nonzero (the PPMI matrix "
                    "has rank %d); the other directions carry no information", rank, dim, rank)
  return TagEmbeddings(embeddings.astype(np.float32), s, int(zero_rows.sum()))


def _row_sums(matrix) -> np.ndarray:
  return np.asarray(matrix.sum(axis=1)).ravel()


def training_ppmi_embeddings(dataset, dim: int) -> TagEmbeddings:
  """The PPMI-SVD embeddings of a PostDataset's training posts: what NCSL-PPMI regresses onto."""
  return ppmi_embeddings(ppmi(training_cooccurrence(dataset)), dim)
