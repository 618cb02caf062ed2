"""Held-out hashtags and the unseen part of a test vocabulary (Durand et al. CVPR'20, Section 3).

Open vocabulary: H_train ⊂ H_test = H. A dataset gets unseen hashtags naturally (tags that only
val / test posts use, e.g. a test user's own) and, to measure zero-shot prediction on a known
set, by holding some out: H_out, a uniform draw of floor(f |H|) tags of H, removed from every
training post (data_prep.filter_tags --hold_out_tags=f). Either way an unseen tag has training
count 0, so the writer's frequency order gives it an id >= spec.num_seen_tags.
"""

from typing import Any, Sequence

import numpy as np


def draw_held_out(num_tags: int, fraction: float, seed: int) -> np.ndarray:
  """Sorted positions in [0, num_tags) of floor(fraction * num_tags) tags, drawn uniformly.

  floor, not round: for fraction < 1 at least one tag is left to train on.
  """
  count = int(np.floor(fraction * num_tags))
  return np.sort(np.random.default_rng([seed, 0x0BE1]).choice(num_tags, count, replace=False))


def unseen_report(vocab: Sequence[str], train_counts: np.ndarray, test_counts: np.ndarray,
                  held_out: np.ndarray) -> dict[str, Any]:
  """What is unseen: H_test = the tags of test posts, unseen = training count 0.

  `train_counts`, `test_counts` [V]: each tag's assignments in training / test posts;
  `held_out` bool [V]: H_out. unseen_fraction_of_test_vocabulary = |H_test \\ H_train| / |H_test|;
  ..._of_test_assignments weighs each unseen tag by its test posts.
  """
  in_test, unseen = test_counts > 0, train_counts == 0
  num_test = int(in_test.sum())
  return {
      "vocabulary": len(vocab), "seen_in_train": int((~unseen).sum()),
      "held_out_tags": int(held_out.sum()),
      # The first 100 (Veit-style listing); the whole draw is reproducible from the options.
      "held_out": [vocab[t] for t in np.flatnonzero(held_out)][:100],
      "test_vocabulary": num_test, "unseen_in_test": int((in_test & unseen).sum()),
      "held_out_in_test": int((in_test & held_out).sum()),
      "unseen_fraction_of_test_vocabulary": float((in_test & unseen).sum() / max(num_test, 1)),
      "unseen_fraction_of_test_assignments": float(
          test_counts[unseen].sum() / max(int(test_counts.sum()), 1)),
  }
