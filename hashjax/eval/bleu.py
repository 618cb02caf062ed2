r"""BLEU of generated hashtag sequences, the two ways #okboomer's numbers can be read.

Sentence BLEU-1, averaged over posts: what Tambwekar & Dharur report (their 0.69). Their code
calls nltk's sentence_bleu with unigram weights and no smoothing, so for a generated sequence
c against the post's true hashtags r (one reference),

    p_1  = sum_w min(count_c(w), count_r(w)) / |c|          clipped unigram precision
    BP   = 1 if |c| > |r| else exp(1 - |r| / |c|)            brevity penalty
    BLEU-1(c, r) = BP * p_1          (0 for an empty c)

and the figure is the mean over posts. Hashtags are whole tokens, so BLEU-1 is a precision of
the generated set with a penalty for generating fewer tags than the post has; word order does
not enter it.

Corpus BLEU-4 (nltk's corpus_bleu, the standard definition: clipped 1..4-gram precisions pooled
over the corpus, their geometric mean, one brevity penalty for the corpus) is reported beside
it. Over hashtag sequences, 2- to 4-grams match only where the order of the tags agrees.
"""

from __future__ import annotations

import collections
import math
from typing import Sequence
import warnings

import jax.numpy as jnp


def sentence_bleu1(candidate: Sequence, reference: Sequence) -> float:
  """BP * clipped unigram precision of one candidate against one reference (docstring)."""
  if not candidate:
    return 0.0
  counts, limit = collections.Counter(candidate), collections.Counter(reference)
  clipped = sum(min(n, limit[w]) for w, n in counts.items())
  c, r = len(candidate), len(reference)
  brevity = 1.0 if c > r else math.exp(1.0 - r / c)
  return brevity * clipped / c


def batch_sentence_bleu1(candidates, candidate_mask, references, reference_mask,
                         vocab_size: int):
  """sentence_bleu1 of every row, in jax (inside a jitted train step): [B] from token ids
  [B, T] and [B, R] with masks of the real tokens; counts are per token id (< vocab_size)."""
  def counts(ids, mask):
    one_hot = (ids[..., None] == jnp.arange(vocab_size)) & mask[..., None]
    return one_hot.sum(axis=1)

  c, r = counts(candidates, candidate_mask), counts(references, reference_mask)
  clipped = jnp.minimum(c, r).sum(axis=1)
  c_len, r_len = candidate_mask.sum(axis=1), reference_mask.sum(axis=1)
  safe = jnp.maximum(c_len, 1)
  brevity = jnp.where(c_len > r_len, 1.0, jnp.exp(1.0 - r_len / safe))
  return jnp.where(c_len > 0, brevity * clipped / safe, 0.0)


def mean_sentence_bleu1(candidates: Sequence[Sequence], references: Sequence[Sequence]) -> float:
  """#okboomer's BLEU: sentence BLEU-1 averaged over posts."""
  if len(candidates) != len(references):
    raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
  if not candidates:
    raise ValueError("no posts to score")
  return sum(map(sentence_bleu1, candidates, references)) / len(candidates)


def corpus_bleu4(candidates: Sequence[Sequence], references: Sequence[Sequence]) -> float:
  """nltk's corpus BLEU-4 (uniform 1..4-gram weights, no smoothing), one reference a post."""
  try:
    from nltk.translate.bleu_score import corpus_bleu
  except ImportError as e:
    raise ImportError("corpus BLEU-4 comes from nltk: pip install -e .") from e
  if len(candidates) != len(references):
    raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
  with warnings.catch_warnings():  # nltk warns that no n-gram matched: the score is then 0
    warnings.simplefilter("ignore", UserWarning)
    return float(corpus_bleu([[list(r)] for r in references], [list(c) for c in candidates]))


def bleu_metrics(candidates: Sequence[Sequence], references: Sequence[Sequence]) -> dict:
  """{"BLEU-1": the sentence mean (#okboomer's), "BLEU-4": corpus BLEU-4}, as fractions."""
  return {"BLEU-1": mean_sentence_bleu1(candidates, references),
          "BLEU-4": corpus_bleu4(candidates, references)}


def generated_sequences(tokens, end: int) -> list[list[int]]:
  """Each row of generated tokens up to (without) END or the first empty slot (-1)."""
  out = []
  for row in tokens.tolist():
    sequence = []
    for token in row:
      if token == end or token < 0:
        break
      sequence.append(token)
    out.append(sequence)
  return out
