"""The user-retrieval command (Durand Table 5): its windows, the pooled vectors against hand
counts and the model's pooled towers, the GRU representation against the model's own state, a
hand-built retrieval, and the command end to end on a tiny run."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.data import pipeline
from hashjax.models import history as history_lib
from hashjax.models.durand import Durand
from hashjax.tools import runs as runs_lib
from hashjax.tools import user_retrieval as tool
from hashjax.training import trainer
from tests.dataset_fixtures import REPO_ROOT, tiny_train_config, write_random_dataset

H = 4  # posts per history: the tiny world's test users have 2 to 34 posts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_dataset):
  """A tiny model=ours run (a few steps: the representation need not be good, only its own)."""
  path = str(tmp_path_factory.mktemp("user_retrieval") / "ours")
  config = tiny_train_config("durand", "d_u=16,dims=16", steps=10)
  config.batch_size, config.data.seq_len = 8, 60
  trainer.train_and_evaluate(config, path, tiny_dataset)
  return path


def _test_rows_by_user(dataset):
  rows = np.sort(dataset.split_rows("test"))
  users = dataset.user_index_of_row[rows]
  return {int(u): rows[users == u] for u in np.unique(users)}


def test_windows_are_consecutive_non_overlapping_posts_of_one_user(tiny_dataset):
  windows, users = tool.history_windows(tiny_dataset, H)
  assert windows.shape == (len(users), H)
  assert len(np.unique(windows)) == windows.size  # each post in one history only
  by_user = _test_rows_by_user(tiny_dataset)
  assert set(users.tolist()) == {u for u, r in by_user.items() if len(r) >= 2 * H}
  for u in np.unique(users):
    mine = windows[users == u]
    rows = by_user[int(u)]
    # the user's first floor(n / H) * H test posts in time order, cut into consecutive runs
    np.testing.assert_array_equal(mine.reshape(-1), rows[:len(rows) // H * H])
    assert (tiny_dataset.user_index_of_row[mine] == u).all()
    assert (np.diff(tiny_dataset.timestamps[mine.reshape(-1)]) >= 0).all()
  # --max_windows=2: the first 2H posts in halves
  two, two_users = tool.history_windows(tiny_dataset, H, max_windows=2)
  assert (np.bincount(two_users)[np.unique(two_users)] == 2).all()
  for u in np.unique(two_users):
    np.testing.assert_array_equal(two[two_users == u].reshape(-1), by_user[int(u)][:2 * H])


def test_windows_hold_only_the_split_posts(tmp_path):
  write_random_dataset(str(tmp_path / "d"), num_users=30, split_scheme="temporal", seed=3)
  from hashjax.data.reader import PostDataset
  dataset = PostDataset(str(tmp_path / "d"))
  windows, users = tool.history_windows(dataset, 1)  # temporal: a user's last third is test
  assert np.isin(windows, dataset.split_rows("test")).all()
  assert (dataset.user_index_of_row[windows[:, 0]] == users).all()
  with pytest.raises(ValueError, match="no user of split 'test' has 6 posts"):
    tool.history_windows(dataset, 3)


def test_pooled_vectors_are_the_hand_counts_and_the_models_pooled_towers(tiny_dataset):
  windows, _ = tool.history_windows(tiny_dataset, H)
  pooled = tool.pooled_representations(tiny_dataset, windows)
  psi = np.asarray(tiny_dataset.word_vectors, np.float64)
  for r in (0, len(windows) - 1):
    counts = np.zeros(tiny_dataset.num_tags)
    vector = np.zeros(psi.shape[1])
    for row in windows[r]:
      post = tiny_dataset.read([row], fields=())
      for tag in post["tag_ids"][0][post["tag_mask"][0]]:
        counts[tag] += 1
        vector += psi[tag]
    np.testing.assert_array_equal(pooled["occurrences"][r], counts)
    np.testing.assert_array_equal(pooled["used"][r], counts > 0)
    np.testing.assert_allclose(pooled["word_sum"][r], vector, rtol=1e-10, atol=1e-12)
  # The same as the model's [C] / [D] / [E] towers after the window: the state before a padded
  # position appended to each window.
  padded = np.concatenate([windows, np.full((len(windows), 1), -1)], axis=1)
  batch = pipeline.read_sequences(tiny_dataset, padded, padded >= 0, fields=())
  for kind in tool.POOLED:
    before = history_lib.pooled_history(kind, batch, jnp.asarray(batch["seq_mask"]),
                                        num_tags=tiny_dataset.num_tags,
                                        words=jnp.asarray(tiny_dataset.word_vectors))
    np.testing.assert_allclose(np.asarray(before)[:, H], pooled[kind], rtol=1e-5, atol=1e-5)


def test_hand_built_representations_give_the_expected_accuracy_and_median_rank():
  # Users a and b: their two histories point the same way; user c's second history looks
  # like a's and its first like no one's. Ranks by hand (cosines; ties count against):
  #   a0: own a1 0.9950 < c1 0.9988                          -> rank 2
  #   a1: own a0 0.9950 < c1 0.9988                          -> rank 2
  #   b0, b1: own 0.9950, every other row <= 0.0995          -> rank 1
  #   c0: own c1 0.0 <= a0 0, a1 0, b0 0, b1 0.0995          -> rank 5
  #   c1: own c0 0.0 <= a0, a1, b0, b1 (all >= 0)            -> rank 5
  reps = np.array([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0],      # a
                   [0.0, 1.0, 0.0], [0.0, 1.0, 0.1],      # b
                   [0.0, 0.0, 1.0], [1.0, 0.05, 0.0]])    # c
  users = np.array([0, 0, 1, 1, 2, 2])
  row = tool.retrieval("hand", reps, users)
  assert row["A@1"] == pytest.approx(2 / 6)
  assert row["A@10"] == 1.0
  assert row["median_rank"] == 2.0  # ranks 2, 2, 1, 1, 5, 5
  assert row["dim"] == 3 and row["num_queries"] == 6 and row["num_skipped"] == 0
  with pytest.raises(ValueError, match="hand: 1 of 6 windows have a zero representation"):
    tool.retrieval("hand", np.vstack([reps[:5], np.zeros(3)]), users)


def test_the_shared_tag_diagnostic_counts_holders_and_drops_personal_tags():
  # Tags 0..3 over windows of users 0, 0, 1, 2: tag 0 is everyone's, tag 1 users 0 and 1's,
  # tags 2 (user 0) and 3 (user 2) are personal.
  used = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]], bool)
  users = np.array([0, 0, 1, 2])
  np.testing.assert_array_equal(tool.users_per_tag(used, users), [3, 2, 1, 1])
  counts = used.astype(np.float32)
  personal, rows = tool.shared_tag_rows(used, users, (1, 2, 3))
  assert personal == 3 / 4  # windows 0, 1 (tag 2) and 3 (tag 3)
  assert [r["label"] for r in rows] == [
      "[C] over the 4 hashtags of >= 1 users (4 windows)",
      "[C] over the 2 hashtags of >= 2 users (4 windows)",
      "[C] over the 1 hashtags of >= 3 users (4 windows)"]
  # Over every tag the same row as [C]; over tags 0 and 1 the two windows of user 0 are
  # [1, 1] and [1, 0]: each one's best own match ties with another user's window.
  assert rows[0]["A@1"] == tool.retrieval("x", counts, users)["A@1"]
  assert rows[1]["A@1"] == tool.retrieval("x", counts[:, :2], users)["A@1"]
  assert rows[2]["median_rank"] == 3.0  # one tag: every window ties with every other


def test_the_model_representation_is_the_gru_state_after_the_window(tiny_dataset, workdir):
  run = runs_lib.load_run(workdir)
  windows, _ = tool.history_windows(tiny_dataset, H)
  got = tool.model_representations(run.model, run.variables, tiny_dataset, windows,
                                   batch_size=5)  # 22 windows: a padded last batch
  assert got.shape == (len(windows), 16)
  for r in (0, 7, len(windows) - 1):
    batch = pipeline.read_sequences(tiny_dataset, windows[r:r + 1], np.ones((1, H), bool),
                                    fields=("features",))
    own = run.model.final_state(run.variables, batch)
    np.testing.assert_allclose(got[r], np.asarray(own)[0], rtol=1e-5, atol=1e-6)
    # ... which is h_0 = 0 streamed through the window's posts one at a time
    state = jnp.zeros((1, 16))
    for t in range(H):
      post = {k: batch[k][:, t] for k in ("features", "tag_ids", "tag_mask")}
      state = run.model.next_state(run.variables, state, post)
    np.testing.assert_allclose(got[r], np.asarray(state)[0], rtol=1e-4, atol=1e-5)


def test_a_model_without_a_history_gru_is_refused(tiny_dataset):
  model = Durand(words=np.asarray(tiny_dataset.word_vectors), user="occurrences", post_dim=4,
                 user_dim=4, image_dim=4, fused_dim=4, joint_dim=4, tag_hidden=4)
  variables = model.init(jax.random.key(0), tiny_dataset.spec)
  windows, _ = tool.history_windows(tiny_dataset, H)
  with pytest.raises(ValueError, match="not a GRU over the history"):
    tool.model_representations(model, variables, tiny_dataset, windows)


def test_the_command_writes_table_5(tiny_dataset, workdir, tmp_path):
  out = tmp_path / "retrieval.json"
  proc = subprocess.run([sys.executable, "-m", "hashjax.tools.user_retrieval",
                         f"--workdir={workdir}", f"--history={H}", f"--out={out}",
                         "--markdown"], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  labels = [r["label"] for r in result["rows"]]
  assert labels == ["[C] used hashtags", "[D] hashtag occurrences", "[E] sum of word vectors",
                    "Ours (image+hashtag)"]
  windows, users = tool.history_windows(tiny_dataset, H)
  assert result["num_windows"] == len(windows) and result["num_users"] == len(set(users))
  for row in result["rows"]:
    assert 0 <= row["A@1"] <= row["A@10"] <= 1 and row["median_rank"] >= 1
    assert row["num_queries"] == len(windows)
  assert [r["dim"] for r in result["rows"]] == [150, 150, 50, 16]
  # The baseline rows are the direct computation on the same windows.
  pooled = tool.pooled_representations(tiny_dataset, windows, ("used",))["used"]
  assert result["rows"][0]["A@1"] == tool.retrieval("x", pooled, users)["A@1"]
  assert proc.stdout.startswith(tool.HEADING) and "| Ours (image+hashtag) |" in proc.stdout
  assert proc.stdout == result["markdown"]
