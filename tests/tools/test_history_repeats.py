"""hashjax.tools.history_repeats: the share of assignments that repeat a user's earlier tag."""

import subprocess
import sys

import numpy as np

from hashjax.data.reader import PostDataset
from hashjax.tools import history_repeats as tool
from tests.dataset_fixtures import REPO_ROOT, write_random_dataset


def test_repeat_flags_by_hand():
  # User 0 writes {1, 2} then {2, 3} then {1}; user 1 writes {3} then {3, 1}. Row 2 is not
  # scored (history only) but still counts as written.
  users = np.array([0, 0, 0, 1, 1])
  ids = np.array([[1, 2], [2, 3], [1, 0], [3, 0], [3, 1]])
  mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0], [1, 1]], bool)
  score = np.array([True, True, False, True, True])
  np.testing.assert_array_equal(tool.repeat_flags(users, ids, mask, score),
                                [[0, 0], [1, 0], [0, 0], [0, 0], [1, 0]])


def test_measure_matches_a_plain_pairwise_count(tmp_path):
  write_random_dataset(str(tmp_path / "d"), num_users=30, num_tags=12, seed=5,
                       split_scheme="temporal")
  dataset = PostDataset(str(tmp_path / "d"))
  result = tool.measure(dataset, "test")
  posts = dataset.read(np.arange(dataset.num_posts), fields=())
  tags = [set(t[m].tolist()) for t, m in zip(posts["tag_ids"], posts["tag_mask"])]
  users, times = dataset.user_index_of_row, dataset.timestamps
  seen = np.asarray(dataset.tag_counts) > 0
  expected = {"seen": [0, 0], "unseen": [0, 0]}
  for p in dataset.split_rows("test"):
    earlier = [q for q in range(dataset.num_posts)
               if users[q] == users[p] and (times[q], q) < (times[p], p)]
    for y in tags[p]:
      kind = expected["seen" if seen[y] else "unseen"]
      kind[0] += 1
      kind[1] += any(y in tags[q] for q in earlier)
  for kind, (n, r) in expected.items():
    assert (result[kind]["assignments"], result[kind]["repeats"]) == (n, r)
  assert result["seen"]["repeats"] > 0  # the case is not vacuous
  proc = subprocess.run([sys.executable, "-m", "hashjax.tools.history_repeats",
                         f"--dataset={tmp_path / 'd'}"], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  n, r = expected["seen"]
  assert f"seen: {r:,} of {n:,} test assignments" in proc.stdout
