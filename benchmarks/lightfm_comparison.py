r"""LightFM's WARP (Cython, a widely used bilinear model) next to hashjax's bilinear model, same data.

LightFM lives in its own venv, so the project never depends on it:

  python3 -m venv /tmp/lfm && /tmp/lfm/bin/pip install setuptools wheel cython numpy scipy \
      && /tmp/lfm/bin/pip install --no-build-isolation lightfm

Then, from the project venv:

  python -m benchmarks.lightfm_comparison --out=/tmp/lightfm_comparison.json \
      [--lightfm_python=/tmp/lfm/bin/python] [--epochs=5]

This process builds (or reuses, in --data_dir) the synthetic 'default' world with feature_dim =
1024 and the user_disjoint split, writes the train interactions, train features and test features
to an .npz, and runs this same file under the LightFM interpreter in worker mode (that mode
imports only numpy, scipy and lightfm; it can also be run by hand):

  /tmp/lfm/bin/python benchmarks/lightfm_comparison.py --lightfm_worker IN.npz OUT.npz

LightFM setting: users = posts (each training post is a user row whose user features are its
L2-normalised image features; no identity features), items = hashtags (no item features, so
identity embeddings), loss='warp', no_components=64, adagrad with learning_rate 0.05,
max_sampled=1000 (as WARP's max_trials here), num_threads=2, one fit_partial per epoch (timed).
Test scores: user representations of the test posts' features times the item representations
(plus item biases; the per-post bias does not change a ranking), top 10, and the metrics of
hashjax.eval.metrics.ranking_metrics, after every epoch.

hashjax: the bilinear model (d = 64, the config of experiments/denton.py: SGD with momentum 0.9,
init std 0.1, margin 0.1, max_trials 1000, batches of 256) trained for the same number of epochs
with hashjax.training.trainer.train_and_evaluate (one validation pass, after the last step, so
the learning rate stays fixed and the final parameters are tested), evaluated on the same test
posts; once at the config's learning rate and once at the paper's 0.01
(--hashjax_learning_rates), and (--equal_time) at the config's for as many epochs as LightFM's
training time buys at hashjax's measured rate (capped at --max_equal_time_epochs). The frequency
baselines and the oracles of the synthetic world (from the trainer's report) are listed for
scale. Its throughput is the trainer's own examples/s (input pipeline included, median over log
intervals, the first one, which compiles, left out) times the mean number of positives per
training post. LightFM's is positive pairs (interactions) per
second of fit_partial.

Note the two are different WARP recipes, not two implementations of one: LightFM uses margin 1,
adagrad, feature and item biases and no norm constraints; the Denton recipe uses margin 0.1, SGD
with momentum, norm-constrained P and V and no biases. The table compares what each gives on the
same data at its usual settings. os.getloadavg() is recorded before and after.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

TOP_K = 10


# ---------------------------------------------------------------------------------------------
# Worker: runs under the LightFM interpreter; numpy, scipy and lightfm only.


def lightfm_worker(in_path: str, out_path: str) -> None:
  import scipy.sparse as sp  # pylint: disable=g-import-not-at-top
  from lightfm import LightFM  # pylint: disable=g-import-not-at-top

  data = np.load(in_path)
  cfg = json.loads(str(data["config"]))

  def unit(x):
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)

  train_x, test_x = sp.csr_matrix(unit(data["train_features"])), sp.csr_matrix(
      unit(data["test_features"]))
  num_posts, num_tags = train_x.shape[0], int(cfg["num_tags"])
  rows, tags = data["train_rows"], data["train_tags"]
  interactions = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, tags)),
                               shape=(num_posts, num_tags))
  model = LightFM(no_components=cfg["no_components"], loss="warp",
                  learning_rate=cfg["learning_rate"], max_sampled=cfg["max_sampled"],
                  random_state=cfg["seed"])
  out = {"epoch_seconds": [], "nnz": interactions.nnz}
  for epoch in range(cfg["epochs"]):
    start = time.perf_counter()
    model.fit_partial(interactions, user_features=train_x, epochs=1,
                      num_threads=cfg["num_threads"])
    out["epoch_seconds"].append(time.perf_counter() - start)
    _, user_emb = model.get_user_representations(test_x)
    item_bias, item_emb = model.get_item_representations()
    scores = user_emb @ item_emb.T + item_bias[None, :]
    top = np.argpartition(-scores, TOP_K, axis=1)[:, :TOP_K]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    out[f"pred_ids_{epoch + 1}"] = np.take_along_axis(top, order, axis=1).astype(np.int32)
    print(f"lightfm epoch {epoch + 1}: {out['epoch_seconds'][-1]:.1f}s, "
          f"{interactions.nnz / out['epoch_seconds'][-1]:,.0f} positives/s", flush=True)
  np.savez(out_path, epoch_seconds=np.array(out["epoch_seconds"]), nnz=out["nnz"],
           **{k: v for k, v in out.items() if k.startswith("pred_ids_")})


# ---------------------------------------------------------------------------------------------
# Main: runs in the project venv.


def define_flags() -> None:
  """The flags; defined when the script runs (not at import: other commands share flag names)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_string("lightfm_python", "/tmp/lfm/bin/python", "Interpreter with lightfm.")
  flags.DEFINE_string("data_dir", os.path.join(tempfile.gettempdir(), "hashjax_lfm_default_f1024"),
                      "Where the synthetic dataset is built (reused if already there).")
  flags.DEFINE_integer("epochs", 5, "Training epochs, for both methods.")
  flags.DEFINE_float("lightfm_learning_rate", 0.05, "LightFM adagrad learning rate.")
  flags.DEFINE_integer("seed", 0, "Dataset and training seed.")
  flags.DEFINE_list("hashjax_learning_rates", ["config", "0.01"],
                    "hashjax runs of --epochs epochs, one per learning rate; 'config' = the one of "
                    "experiments/denton.py; 0.01 = the paper's.")
  flags.DEFINE_bool("equal_time", True, "Also train hashjax (config lr) for as many epochs as "
                    "LightFM's training time buys at hashjax's measured rate.")
  flags.DEFINE_integer("max_equal_time_epochs", 200, "Cap on the equal-time run's epochs.")
  flags.DEFINE_bool("skip_lightfm", False, "Only the hashjax side (for development).")


def _build_or_reuse(directory: str, seed: int) -> None:
  """Builds the dataset unless one from exactly this recipe (same generator config) is there."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from hashjax.data import format as fmt  # pylint: disable=g-import-not-at-top
  from hashjax.data.synthetic import build as build_synthetic  # pylint: disable=g-import-not-at-top
  from hashjax.data.synthetic.world import PRESETS  # pylint: disable=g-import-not-at-top
  overrides = {"feature_dim": 1024}
  # Through JSON, as the metadata stores it (tuples become lists).
  expected = json.loads(json.dumps(dataclasses.asdict(
      dataclasses.replace(PRESETS["default"], **overrides))))
  try:
    meta = fmt.read_metadata(directory)
    prov = meta["provenance"]
    if (prov["preset"], prov["seed"], meta["split_scheme"], prov["config"]) == (
        "default", seed, "user_disjoint", expected):
      return
    print(f"{directory} holds a dataset from another recipe or generator version: rebuilding")
  except fmt.DatasetError:
    pass
  build_synthetic.build_synthetic(directory, preset="default", overrides=overrides,
                                  split_scheme="user_disjoint", seed=seed, overwrite=True)


def run_lightfm(python: str, train: dict, test: dict, num_tags: int, cfg: dict,
                tmp: str) -> dict:
  rows, slots = np.nonzero(train["tag_mask"])
  in_path, out_path = os.path.join(tmp, "lightfm_in.npz"), os.path.join(tmp, "lightfm_out.npz")
  np.savez(in_path, train_features=train["features"], test_features=test["features"],
           train_rows=rows.astype(np.int32), train_tags=train["tag_ids"][rows, slots],
           config=json.dumps(dict(cfg, num_tags=num_tags)))
  start = time.perf_counter()
  subprocess.run([python, os.path.abspath(__file__), "--lightfm_worker", in_path, out_path],
                 check=True)
  wall = time.perf_counter() - start
  out = np.load(out_path)
  epochs = {int(k.rsplit("_", 1)[1]): out[k] for k in out.files if k.startswith("pred_ids_")}
  return {"epoch_seconds": out["epoch_seconds"].tolist(), "nnz": int(out["nnz"]),
          "pred_ids": epochs, "subprocess_wall_s": wall}


def run_hashjax(dataset, epochs: int, seed: int, workdir: str,
                learning_rate: float | None = None) -> dict:
  from experiments import denton  # pylint: disable=g-import-not-at-top
  from hashjax.training import trainer as train_lib  # pylint: disable=g-import-not-at-top

  config = denton.get_config(f"model=bilinear,d=64,seed={seed}")
  config.data.dir = dataset.directory
  if learning_rate is not None:
    config.learning_rate = learning_rate
  steps_per_epoch = len(dataset.split_rows("train")) // config.batch_size
  config.train_steps = epochs * steps_per_epoch
  config.log_every = 25
  config.eval_every = config.train_steps  # one validation pass, at the end: the lr stays fixed
  config.checkpoint_every = config.train_steps
  start = time.perf_counter()
  out = train_lib.train_and_evaluate(config, workdir, dataset)
  wall = time.perf_counter() - start
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    history = [json.loads(line) for line in f]
  rates = [h["examples_per_s"] for h in history if "examples_per_s" in h]
  return {"test": out["test"], "reference": out["results"], "epochs": epochs,
          "learning_rate": config.learning_rate, "steps": config.train_steps,
          "steps_per_epoch": steps_per_epoch, "examples_per_s": float(np.median(rates[1:])),
          "examples_per_s_intervals": rates, "wall_s_train_and_evaluate": wall,
          "config": config.to_dict()}


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  from hashjax.eval import metrics  # pylint: disable=g-import-not-at-top
  from hashjax.data.reader import PostDataset  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS

  load_before = os.getloadavg()
  print(f"load average before: {load_before}", flush=True)
  _build_or_reuse(f.data_dir, f.seed)
  dataset = PostDataset(f.data_dir)
  # Features and the hashtags (tag_ids / tag_mask always come back): all either side uses.
  train = dataset.read(dataset.split_rows("train"), fields=("features",))
  test = dataset.read(dataset.split_rows("test"), fields=("features",))
  positives_per_post = float(train["tag_mask"].sum() / len(train["tag_mask"]))
  print(f"dataset {f.data_dir}: {len(train['tag_mask'])} train posts "
        f"({int(train['tag_mask'].sum())} positive pairs, {positives_per_post:.2f} per post), "
        f"{len(test['tag_mask'])} test posts, {dataset.num_tags} hashtags, "
        f"{dataset.feature_dim}-d features", flush=True)
  results = {"load_before": load_before, "dataset": {
      "dir": f.data_dir, "train_posts": len(train["tag_mask"]),
      "train_positives": int(train["tag_mask"].sum()), "test_posts": len(test["tag_mask"]),
      "num_tags": dataset.num_tags, "feature_dim": dataset.feature_dim,
      "positives_per_train_post": positives_per_post}, "nproc": os.cpu_count()}
  rows = []
  tmp = tempfile.mkdtemp(prefix="lightfm_comparison_")
  try:
    if not f.skip_lightfm:
      cfg = {"no_components": 64, "learning_rate": f.lightfm_learning_rate, "max_sampled": 1000,
             "num_threads": 2, "epochs": f.epochs, "seed": f.seed}
      lfm = run_lightfm(f.lightfm_python, train, test, dataset.num_tags, cfg, tmp)
      per_epoch = []
      for epoch, pred in sorted(lfm["pred_ids"].items()):
        m = metrics.ranking_metrics(pred, test["tag_ids"], test["tag_mask"], ks=(1, 5, 10))
        per_epoch.append({"epoch": epoch, "seconds": lfm["epoch_seconds"][epoch - 1],
                          "positives_per_s": lfm["nnz"] / lfm["epoch_seconds"][epoch - 1], **m})
      rate = lfm["nnz"] * len(lfm["epoch_seconds"]) / sum(lfm["epoch_seconds"])
      results["lightfm"] = {"config": cfg, "per_epoch": per_epoch, "positives_per_s": rate,
                            "subprocess_wall_s": lfm["subprocess_wall_s"]}
      rows.append((f"LightFM WARP (d=64, {f.epochs} epochs)", rate, per_epoch[-1]))
    results["hashjax_bilinear"] = []

    def hashjax_row(epochs: int, lr: float | None) -> dict:
      workdir = os.path.join(tmp, f"hashjax{len(results['hashjax_bilinear'])}")
      hj = run_hashjax(dataset, epochs, f.seed, workdir, lr)
      hj["positives_per_s"] = hj["examples_per_s"] * positives_per_post
      results["hashjax_bilinear"].append(hj)
      rows.append((f"hashjax bilinear WARP (d=64, lr {hj['learning_rate']:g}, {epochs} epochs)",
                   hj["positives_per_s"], hj["test"]))
      return hj

    learning_rates = [None if lr == "config" else float(lr) for lr in f.hashjax_learning_rates]
    first = hashjax_row(f.epochs, learning_rates[0])
    if f.equal_time and "lightfm" in results:
      # The first recipe, trained for LightFM's training time at the rate just measured.
      lfm_seconds = sum(e["seconds"] for e in results["lightfm"]["per_epoch"])
      budget = lfm_seconds * first["positives_per_s"] / results["dataset"]["train_positives"]
      hashjax_row(int(min(max(budget, 1), f.max_equal_time_epochs)), learning_rates[0])
    for lr in learning_rates[1:]:
      hashjax_row(f.epochs, lr)
    reference = results["hashjax_bilinear"][0]["reference"]
    for name, m in reference.items():
      if "bilinear" not in name.lower():
        rows.append((name, None, m))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  results["load_after"] = os.getloadavg()
  results["table"] = [{"method": name, "positives_per_s": rate, **{k: m[k] for k in
                       ("P@1", "R@10", "A@10")}} for name, rate, m in rows]

  print(f"\nload {load_before} -> {results['load_after']}")
  if "lightfm" in results:
    print("LightFM per epoch: " + ", ".join(
        f"{e['epoch']}: {e['positives_per_s']:,.0f}/s P@1 {e['P@1']:.3f}"
        for e in results["lightfm"]["per_epoch"]))
  print("| method | positives/s | P@1 | R@10 | A@10 |")
  print("| --- | ---: | ---: | ---: | ---: |")
  for r in results["table"]:
    rate = f"{r['positives_per_s']:,.0f}" if r["positives_per_s"] else "-"
    print(f"| {r['method']} | {rate} | {r['P@1']:.3f} | {r['R@10']:.3f} | {r['A@10']:.3f} |")
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2, default=float)


if __name__ == "__main__":
  if len(sys.argv) == 4 and sys.argv[1] == "--lightfm_worker":
    lightfm_worker(sys.argv[2], sys.argv[3])
  else:
    from absl import app  # pylint: disable=g-import-not-at-top
    define_flags()
    app.run(main)
