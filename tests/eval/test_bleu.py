"""BLEU: #okboomer's sentence BLEU-1 by hand and against nltk, and corpus BLEU-4."""

import math
import warnings

import numpy as np
import pytest

from hashjax.eval import bleu

nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")


def test_sentence_bleu1_by_hand():
  # 2 of 3 generated tags are true, and 3 >= 3 true tags: no brevity penalty
  assert bleu.sentence_bleu1(["sea", "sun", "cat"], ["sea", "sun", "beach"]) == pytest.approx(2 / 3)
  # a repeated tag is clipped to its count in the reference
  assert bleu.sentence_bleu1(["sea", "sea"], ["sea", "sun"]) == pytest.approx(
      1 / 2 * math.exp(1 - 2 / 2))
  # 1 generated tag against 4: precision 1, brevity exp(1 - 4)
  assert bleu.sentence_bleu1(["sea"], ["sea", "a", "b", "c"]) == pytest.approx(math.exp(-3))
  assert bleu.sentence_bleu1([], ["sea"]) == 0.0
  assert bleu.mean_sentence_bleu1([["a"], ["b", "c"]], [["a"], ["x", "y"]]) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="2 candidates for 1 references"):
    bleu.mean_sentence_bleu1([["a"], ["b"]], [["a"]])


def test_sentence_bleu1_is_nltks_unsmoothed_unigram_bleu():
  rng = np.random.default_rng(0)
  for _ in range(200):
    cand = rng.integers(0, 8, rng.integers(1, 8)).tolist()
    ref = rng.choice(10, rng.integers(1, 8), replace=False).tolist()
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # nltk warns when nothing matches
      want = nltk_bleu.sentence_bleu([ref], cand, weights=(1,))
    assert bleu.sentence_bleu1(cand, ref) == pytest.approx(want, abs=1e-12)


def test_corpus_bleu4():
  same = [["a", "b", "c", "d", "e"], ["f", "g", "h", "i"]]
  assert bleu.corpus_bleu4(same, same) == pytest.approx(1.0)
  # pooled: 1-grams 8/9, 2-grams 6/7, 3-grams 4/5, 4-grams 2/3; 9 generated vs 9 true
  cands = [["a", "b", "c", "d", "x"], ["f", "g", "h", "i"]]
  want = math.exp(np.mean(np.log([8 / 9, 6 / 7, 4 / 5, 2 / 3])))
  assert bleu.corpus_bleu4(cands, same) == pytest.approx(want)
  metrics = bleu.bleu_metrics(cands, same)
  assert set(metrics) == {"BLEU-1", "BLEU-4"}
  tokens = np.array([[3, 3, 9, 5], [9, 1, 1, 1], [2, -1, -1, -1]])
  assert bleu.generated_sequences(tokens, end=9) == [[3, 3], [], [2]]


def test_the_jax_batch_bleu1_is_the_sentence_bleu1():
  rng = np.random.default_rng(1)
  cands = rng.integers(0, 6, (40, 7))
  cand_mask = np.arange(7)[None] < rng.integers(0, 8, (40, 1))
  refs = rng.integers(0, 6, (40, 5))
  ref_mask = np.arange(5)[None] < rng.integers(1, 6, (40, 1))
  got = np.asarray(bleu.batch_sentence_bleu1(cands, cand_mask, refs, ref_mask, 6))
  want = [bleu.sentence_bleu1(c[m].tolist(), r[n].tolist())
          for c, m, r, n in zip(cands, cand_mask, refs, ref_mask)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
