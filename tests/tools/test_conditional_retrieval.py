"""The user-conditional retrieval command end to end on tiny runs: its numbers against a direct
computation from each model, a score function that knows the true meaning, and its outputs."""

import os
import subprocess
import sys

import numpy as np
import pytest

from hashjax.data.synthetic import build
from hashjax.data.synthetic import vocab as sv
from hashjax.eval import conditional_retrieval as cr
from hashjax.tools import conditional_retrieval as tool
from hashjax.tools import runs as runs_lib
from hashjax.training import trainer
from tests.dataset_fixtures import REPO_ROOT, tiny_train_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOP = 5


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dataset):
  """A tiny MCLL run and a tiny tensor started from it (user-disjoint tiny world)."""
  root = tmp_path_factory.mktemp("conditional_retrieval")
  mcll, tensor = str(root / "mcll"), str(root / "tensor")
  trainer.train_and_evaluate(tiny_train_config("veit", "model=mcll,hidden=16", steps=10), mcll,
                             tiny_dataset)
  trainer.train_and_evaluate(tiny_train_config(
      "veit", f"model=tensor,init={mcll},hidden=16,D=8,E=2", steps=10), tensor, tiny_dataset)
  return {"mcll": mcll, "tensor": tensor, "root": str(root)}


@pytest.fixture(scope="module")
def result(runs):
  return tool.measure(runs["tensor"], runs["mcll"], top=TOP, users_per_group=3)


def _planted_meaning(world, tag, user):
  """poly_side[p, reader] True -> the tag's first concept (vocab.concept_tag_tables)."""
  start = sv.layout_kinds(sv.vocab_layout(world.config))[1]["polysemous"]
  side = world.params["poly_side"][world.tag_order[tag] - start,
                                   world.users[world.config.polysemy_by][user]]
  return world.tag_concepts[tag][0 if side else 1]


def _direct_scores(workdir, dataset, user, tags):
  """Every test image's scores [N, len(tags)] from the model itself (query . tag rows), with
  the user fields of `user`'s first post (None: the model reads none)."""
  run = runs_lib.load_run(workdir)
  rows = dataset.split_rows("test")
  batch = dataset.read(rows, fields=list(run.model.inputs))
  if user is not None:
    own = dataset.read(dataset.user_rows(user)[:1], fields=list(run.model.inputs))
    for field in run.model.inputs:
      if field != "features":
        batch[field] = np.repeat(own[field], len(rows), axis=0)
  return (np.asarray(run.model.query(run.variables, batch), np.float64)
          @ np.asarray(run.model.tags(run.variables), np.float64)[tags].T)


def _direct_rate(scores, dataset, latents, meaning):
  """The share of the top TOP test images by `scores` that show `meaning`."""
  rows = dataset.split_rows("test")
  top = np.argsort(-scores, kind="stable")[:TOP]
  return np.mean((latents[rows[top]] == meaning).any(axis=1))


def test_rates_match_a_direct_computation(result, runs, tiny_dataset):
  world, latents, _ = build.load_oracle(tiny_dataset.directory)
  model, baseline = result["labels"]
  assert model.startswith("Tensor") and baseline == "MCLL"
  tags, users, groups = result["tags"], result["users"], result["user_group"]
  assert len(tags) == world.config.num_polysemous
  assert set(groups) == set(range(world.config.num_groups))  # every group has trained users
  train = np.bincount(tiny_dataset.user_ids[tiny_dataset.split_rows("train")],
                      minlength=world.config.num_users)
  assert np.all(train[users] > 0) and np.all(world.users["group"][users] == groups)
  assert np.all(np.bincount(groups) <= 3)
  agnostic = _direct_scores(runs["mcll"], tiny_dataset, None, tags)
  for j, (u, g) in enumerate(zip(users, groups)):
    specific = _direct_scores(runs["tensor"], tiny_dataset, u, tags)
    for i, t in enumerate(tags):
      meaning = _planted_meaning(world, t, u)
      assert result["meanings"][i, g] == meaning
      assert result["per_user"][model][i, j] == _direct_rate(specific[:, i], tiny_dataset,
                                                             latents, meaning)
      assert result["per_user"][baseline][i, j] == _direct_rate(agnostic[:, i], tiny_dataset,
                                                                latents, meaning)
  for i in range(len(tags)):
    for g in np.unique(groups):
      assert result["rates"][model][i, g] == pytest.approx(
          result["per_user"][model][i, groups == g].mean())
  # The oracle knows the reader: every retrieved image shows the meaning wherever the test
  # images hold at least TOP of them.
  enough = result["base"] * result["test_images"] >= TOP
  present = np.isin(np.arange(result["meanings"].shape[1]), groups)[None]
  assert (result["rates"][tool.ORACLE][enough & present] == 1.0).all()


def test_a_score_that_knows_the_meaning_rates_one(result, tiny_dataset):
  world, concept_ids, concept_weights = build.load_oracle(tiny_dataset.directory)

  def knows(tag, user, rows):  # 1 on the images that show what the tag means for this user
    return cr.shows(concept_ids[rows], int(_planted_meaning(world, tag, user))).astype(float)

  def ignores(tag, user, rows):  # 1 on the images of the tag's first meaning, for everyone
    return cr.shows(concept_ids[rows], int(world.tag_concepts[tag][0])).astype(float)

  got = tool.measure_scores(world, tiny_dataset, (concept_ids, concept_weights),
                            {"knows": (knows, False), "ignores": (ignores, True)}, top=TOP,
                            users_per_group=3, with_oracles=False)
  assert set(got["rates"]) == {"knows", "ignores"}
  np.testing.assert_array_equal(got["users"], result["users"])  # the same seeded draw
  cells = tuple(np.array(tool.cells(got)).T)
  assert (got["base"][cells] * got["test_images"] >= TOP).all()  # enough images to fill the top
  np.testing.assert_array_equal(got["rates"]["knows"][cells], 1.0)
  # The user-agnostic one serves the groups that read the first meaning; for the others it
  # scores only the images that happen to show both meanings.
  rows = tiny_dataset.split_rows("test")
  for i, g in tool.cells(got):
    t, meaning = got["tags"][i], got["meanings"][i, g]
    top = np.argsort(-ignores(t, None, rows), kind="stable")[:TOP]
    want = np.mean((concept_ids[rows[top]] == meaning).any(axis=1))
    assert got["rates"]["ignores"][i, g] == want
    assert (want == 1.0) if meaning == world.tag_concepts[t][0] else (want < 1.0)
  text = tool.markdown(got)
  assert "| mean |" in text and "100.0" in text


def test_command_writes_markdown_and_png(runs, result):
  out = os.path.join(runs["root"], "out")
  proc = subprocess.run([sys.executable, "-m", "hashjax.tools.conditional_retrieval",
                         f"--workdir={runs['tensor']}", f"--baseline={runs['mcll']}",
                         f"--top={TOP}", "--users_per_group=3", f"--out={out}"],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = open(os.path.join(out, "conditional_retrieval.md")).read()
  assert proc.stdout == text
  assert text == tool.markdown(result, os.path.join(out, "conditional_retrieval.png"))
  with open(os.path.join(out, "conditional_retrieval.png"), "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  mean = [line for line in text.splitlines() if line.startswith("| mean |")][0]
  model, baseline = result["labels"]
  assert f"{100 * tool.overall(result, model):.1f}" in mean
  assert f"{100 * tool.overall(result, baseline):.1f}" in mean


def test_the_runs_must_be_user_specific_then_user_agnostic(runs):
  with pytest.raises(ValueError, match="reads no user field"):
    tool.measure(runs["mcll"], runs["mcll"])
  with pytest.raises(ValueError, match="give a user-agnostic run"):
    tool.measure(runs["tensor"], runs["tensor"])
