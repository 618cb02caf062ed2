"""The training loop: mesh -> data -> init/restore -> jitted step -> eval -> report.

Data parallelism is `jax.jit` over a one-axis device mesh ("data"): the global batch is split
across devices, parameters are replicated, and XLA inserts the gradient all-reduce. The same code
runs on one CPU, 8 simulated CPU devices, or many hosts (each host feeds its slice of the global
batch through `jax.make_array_from_process_local_data`).

A run can be killed at any moment and resumed from its workdir: orbax checkpoints hold the
parameters, optimizer state, the grain iterator state (the resumed run sees the same examples),
the learning-rate schedule's state and the parameters selected on validation; the step's random
key is fold_in(seed key, step).

Model selection: validation runs every eval_every steps and after the last step; the test split
is scored with the parameters of the best validation evaluation (early stopping), so a result
does not depend on where the last noisy SGD step happened to land.
"""

import dataclasses
import os
from typing import Any

from absl import logging
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from hashjax import evaluate, losses, models, report
from hashjax.data import pipeline, tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.models.base import Dims

MODEL_INPUTS = ("features", "user_meta", "tag_ids", "tag_mask")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  key: jax.Array


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  """A one-axis mesh over all devices (or the first num_devices, for tests)."""
  devices = jax.devices()[:num_devices] if num_devices else jax.devices()
  return jax.sharding.Mesh(np.array(devices), ("data",))


def make_optimizer(config) -> optax.GradientTransformation:
  """SGD with momentum; the learning rate is a hyperparameter we can lower on a plateau."""
  return optax.inject_hyperparams(optax.sgd)(learning_rate=config.learning_rate,
                                             momentum=config.momentum)


def make_train_step(model, config, tx):
  """One SGD step on the WARP loss; returns the new state and scalar diagnostics."""

  def loss_fn(params, batch, key):
    queries = model.query(params, batch)
    per_positive, sample = losses.warp_loss_two_tower(
        key, queries, model.tags(params), batch["tag_ids"], batch["tag_mask"],
        margin=config.margin, max_trials=config.max_trials)
    # Summed over positives, averaged over posts: one post's update is the paper's per-positive
    # SGD steps added up, whatever the batch size.
    loss = per_positive.sum() / batch["tag_ids"].shape[0]
    positives = jnp.maximum(batch["tag_mask"].sum(), 1)
    aux = {"violator_found": (sample.found & batch["tag_mask"]).sum() / positives,
           "mean_draws": jnp.where(batch["tag_mask"], sample.num_draws, 0).sum() / positives}
    return loss, aux

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(state.key, state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = model.project(optax.apply_updates(state.params, updates))
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    return TrainState(state.step + 1, params, opt_state, state.key), metrics

  return train_step


class Checkpoints:
  """orbax CheckpointManager over (train state, grain iterator, schedule, selected params)."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: TrainState, iterator, schedule: dict, selected) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
        schedule=ocp.args.JsonSave(schedule), selected=ocp.args.StandardSave(selected)))

  def restore(self, step: int, state: TrainState, iterator):
    """(state, schedule, selected params) saved at `step`; the iterator is restored in place."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    out = self._restore(step, state=ocp.args.StandardRestore(target),
                        data=grain.checkpoint.CheckpointRestore(iterator),
                        schedule=ocp.args.JsonRestore(),
                        selected=ocp.args.StandardRestore(target.params))
    return out.state, dict(out.schedule), out.selected

  def restore_selected(self, step: int, params_target):
    """Only the parameters selected on validation (the tested ones), shaped like the target."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, params_target)
    return self._restore(step, selected=ocp.args.StandardRestore(target)).selected

  def _restore(self, step: int, **items):
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items))
    except KeyError as e:
      raise ValueError(f"{self.manager.directory}: checkpoint {step} lacks an item this trainer "
                       f"saves ({e}); it was written by an older hashjax. Use a new workdir."
                       ) from e

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _lower_on_plateau(schedule: dict, value: float, step: int, config) -> dict:
  """Denton et al. divided the learning rate by 10 by hand when validation stopped improving.

  Here: after `plateau_patience` evaluations in a row that do not beat the best by
  `plateau_min_delta`. Evaluations before `plateau_start_step` never count as stalls: a model
  still leaving its initial plateau (the 3-way product starts near a saddle) is not converged,
  and nobody lowering the rate by hand would lower it then.
  """
  schedule = dict(schedule)
  if value > schedule["best"] + config.plateau_min_delta:
    schedule.update(best=value, bad_evals=0)
  elif step >= config.plateau_start_step:
    schedule["bad_evals"] += 1
    if schedule["bad_evals"] >= config.plateau_patience:
      schedule.update(learning_rate=schedule["learning_rate"] * config.plateau_factor, bad_evals=0)
      logging.info("validation plateau: learning rate -> %g", schedule["learning_rate"])
  return schedule


def _set_learning_rate(state: TrainState, lr: float) -> TrainState:
  opt_state = state.opt_state
  hyper = dict(opt_state.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))
  sharding = opt_state.hyperparams["learning_rate"].sharding
  hyper["learning_rate"] = jax.device_put(hyper["learning_rate"], sharding)
  return dataclasses.replace(state, opt_state=opt_state._replace(hyperparams=hyper))


def _global_batch(batch: dict, sharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in MODEL_INPUTS}


def _evaluate(name, model, params, dataset, split, keep, config) -> dict[str, float]:
  scorer = evaluate.TwoTowerScorer(name, model, params)
  return evaluate.evaluate_scorers([scorer], dataset, split, ks=tuple(config.eval.ks),
                                   batch_size=config.eval.batch_size, keep=keep)[name]


def train_and_evaluate(config, workdir: str, dataset: PostDataset | None = None) -> dict:
  """Trains config.model on config.data, evaluates on the test split, writes the report."""
  os.makedirs(workdir, exist_ok=True)
  dataset = dataset or report.resolve_dataset(config.data)
  dims = Dims(dataset.feature_dim, dataset.user_meta_dim, dataset.num_tags)
  model = models.make_model(config.model.name, **config.model.kwargs)
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, config.data.dist)
  mesh = make_mesh(config.num_devices)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  if config.batch_size % (mesh.size * jax.process_count()):
    raise ValueError(f"batch_size {config.batch_size} must divide evenly over {mesh.size} "
                     "devices")

  tx = make_optimizer(config)
  init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))  # raw keys checkpoint
  params = model.init(init_key, dims)
  state = jax.device_put(TrainState(jnp.zeros((), jnp.int32), params, tx.init(params),
                                    state_key), replicated)
  train_iter = iter(pipeline.train_batches(
      dataset, batch_size=config.batch_size // jax.process_count(), seed=config.seed,
      max_tags=config.max_tags))
  # "best" drives the plateau rule (improvement by min_delta); "selected_*" is the strict best
  # validation score and its step, whose parameters (`selected`) are the ones tested.
  schedule = {"learning_rate": config.learning_rate, "best": -1.0, "bad_evals": 0,
              "selected_value": -1.0, "selected_step": 0}
  selected = jax.tree.map(jnp.copy, state.params)  # the step donates the state's own buffers
  checkpoints = Checkpoints(workdir)
  start_step = checkpoints.latest_step() or 0
  if start_step:
    state, schedule, selected = checkpoints.restore(start_step, state, train_iter)
    logging.info("resumed from step %d (%s)", start_step, schedule)
  train_step = jax.jit(make_train_step(model, config, tx), donate_argnums=0)

  history = report.History(workdir, resume_step=start_step)
  timer = report.Throughput(start_step, config.train_steps, config.batch_size)
  for step in range(start_step + 1, config.train_steps + 1):
    batch = tag_distribution.apply(next(train_iter), keep)
    state, metrics = train_step(state, _global_batch(batch, data_sharding))
    if step % config.log_every == 0 or step == config.train_steps:
      metrics = jax.device_get(metrics)  # also a sync point (see DESIGN: CPU collectives)
      report.check_finite(step, metrics)
      history.log(step, dict(metrics, **timer.update(step), learning_rate=schedule["learning_rate"]))
    if step % config.eval_every == 0 or step == config.train_steps:
      val = _evaluate("val", model, state.params, dataset, "val", keep, config)
      value = val[config.plateau_metric]
      if value > schedule["selected_value"]:
        selected = jax.tree.map(jnp.copy, state.params)
        schedule.update(selected_value=value, selected_step=step)
      schedule = _lower_on_plateau(schedule, value, step, config)
      state = _set_learning_rate(state, schedule["learning_rate"])
      history.log(step, {f"val/{k}": v for k, v in val.items()})
    if step % config.checkpoint_every == 0 or step == config.train_steps:
      checkpoints.save(step, state, train_iter, schedule, selected)
  checkpoints.close()

  name = models.describe(config.model)
  logging.info("testing the parameters of step %d (validation %s %.4f)",
               schedule["selected_step"], config.plateau_metric, schedule["selected_value"])
  test = _evaluate(name, model, selected, dataset, "test", keep, config)
  results = report.write_run_report(workdir, config, dataset, name, test, keep,
                                    selected_step=schedule["selected_step"])
  return {"test": test, "params": state.params, "selected_params": selected,
          "selected_step": schedule["selected_step"], "results": results}
