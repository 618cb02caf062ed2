"""The training loop: mesh -> data -> init/restore -> jitted step -> eval -> report.

One loop for every model, loss and input. The model declares the batch fields it reads
(`model.inputs`) and its layout (posts, or user sequences for history models); the objective
(config.loss, training/objectives.py) turns the model's outputs into a loss; the optimizer
comes from the config (training/optimizers.py); parts of the model can start from another run
(config.init_from) or stay frozen (config.frozen).

Parallelism is `jax.jit` over a ("data", "model") device mesh (training/sharding.py): the
global batch is split over "data", and XLA inserts the gradient all-reduce; parameters are
replicated, except that config.vocab_shards > 1 splits every array with a hashtag axis (tag
tables, output layers and their optimizer moments) over "model". The same code runs on one CPU,
8 simulated CPU devices, or many hosts (each host feeds its slice of the global batch through
`jax.make_array_from_process_local_data`).

A run can be killed at any moment and resumed from its workdir: orbax checkpoints hold the
parameters, model state, optimizer state, the grain iterator state (the resumed run sees the
same examples), the learning-rate schedule's state and the variables selected on validation;
the step's random key is fold_in(seed key, step).

Model selection: validation runs every eval_every steps and after the last step; the test split
is scored with the variables of the best validation evaluation (early stopping), so a result
does not depend on where the last noisy SGD step happened to land.
"""

import dataclasses
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import optax

from hashjax import models
from hashjax.data import pipeline, sources, tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.eval import evaluate, report
from hashjax.training import history as history_lib
from hashjax.training import init_from as init_from_lib
from hashjax.training import objectives, optimizers, run_config, sharding
from hashjax.training.checkpoints import Checkpoints
from hashjax.training.workdir_lock import WorkdirLock


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  step: jax.Array
  params: Any
  model_state: Any  # non-trained collections, e.g. {"batch_stats": ...}; {} for most models
  opt_state: Any
  key: jax.Array

  def variables(self) -> dict:
    return {"params": self.params, **self.model_state}


def make_train_step(model, objective, tx, frozen=()):
  """One optimizer step on the objective; returns the new state and scalar diagnostics."""

  def loss_fn(params, model_state, batch, key):
    loss, aux, updates = objective(model, {"params": params, **model_state}, batch, key)
    return loss, (aux, updates)

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(state.key, state.step)
    (loss, (aux, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.model_state, batch, key)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = model.project(optax.apply_updates(state.params, param_updates))
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    model_state = _updated_state(state.model_state, updates, frozen)
    return TrainState(state.step + 1, params, model_state, opt_state, state.key), metrics

  return train_step


def _updated_state(old: dict, updates: dict, frozen) -> dict:
  """The model's collections after a step; a frozen part keeps its state (batch statistics)."""
  new = {**old, **updates}
  for collection, tree in updates.items():
    kept = {part: old[collection][part] for part in frozen if part in old.get(collection, {})}
    new[collection] = {**tree, **kept}
  return new


def batch_fields(model, objective) -> tuple[str, ...]:
  """What the train step receives: the model's inputs, the objective's, and the truth."""
  sequence = pipeline.SEQUENCE_FIELDS if model.layout == "sequences" else ()
  return tuple(dict.fromkeys((*model.inputs, *objective.inputs, "tag_ids",
                              "tag_mask", *sequence)))


def _global_batch(batch: dict, fields, sharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in fields}


def _train_iterator(dataset, model, config, fields):
  """This process's block of every global batch (the pipeline's process slices)."""
  per_process = config.batch_size // jax.process_count()
  if model.layout == "sequences":
    return iter(pipeline.sequence_batches(
        dataset, batch_size=per_process, seed=config.seed, seq_len=config.data.seq_len,
        context_len=config.data.context_len, fields=fields, max_tags=config.max_tags))
  return iter(pipeline.train_batches(dataset, batch_size=per_process, seed=config.seed,
                                     fields=fields, max_tags=config.max_tags))


def _evaluate(name, model, variables, dataset, split, keep, config, mesh) -> dict[str, float]:
  # A vocabulary-sharded table is ranked on its shards in one process; several processes
  # evaluate different numbers of batches, so they rank a gathered copy each (a sharded
  # program would have to run in step on all of them).
  vocab_mesh = None
  if mesh.shape["model"] > 1 and jax.process_count() == 1:
    vocab_mesh = mesh
  else:
    variables = sharding.gather_replicated(variables, mesh)
  scorer = evaluate.model_scorer(name, model, variables, seq_len=config.data.seq_len,
                                 context_len=config.data.context_len, vocab_mesh=vocab_mesh)
  return evaluate.evaluate_scorers([scorer], dataset, split, ks=tuple(config.eval.ks),
                                   vocabularies=tuple(config.eval.vocabularies),
                                   batch_size=config.eval.batch_size, keep=keep)[name]


def run_label(config, model) -> str:
  """The run's row name in reports: config.label if the experiment sets one (the same model
  trained two ways: "MCLL"), else the model's; a run started from another one (init_from)
  names it too, as the paper's rows do: "Tensor (MCLL)"."""
  label = config.get("label") or model.label
  if config.init_from.workdir:
    label += f" ({init_from_lib.source_label(config.init_from.workdir)})"
  return label


def _write_config(workdir: str, config) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=2, sort_keys=True))


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _check_finite_state(step: int, state: TrainState, last_saved: int) -> None:
  """Never checkpoint NaN/inf: it would rotate the good checkpoints out (max_to_keep)."""
  if not bool(_all_finite((state.params, state.model_state, state.opt_state))):
    raise FloatingPointError(
        f"step {step}: the train state holds NaN or inf, so it was not checkpointed (the last "
        f"checkpoint, step {last_saved or 'none'}, is kept); lower the learning rate or check "
        "the input features")


def train_and_evaluate(config, workdir: str, dataset: PostDataset | None = None) -> dict:
  """Trains config.model on config.data, evaluates on the test split, writes the report.

  One job per workdir (WorkdirLock); a resume must use the config its checkpoints were written
  with, up to the fields run_config allows to change.
  """
  run_config.validate(config)
  os.makedirs(workdir, exist_ok=True)
  with WorkdirLock(workdir, jax.process_index()):
    return _train_and_evaluate(config, workdir, dataset)


def _train_and_evaluate(config, workdir: str, dataset: PostDataset | None) -> dict:
  dataset = dataset or sources.resolve_dataset(config.data)
  model = models.make_model(config.model, dataset.spec, dataset)
  objective = objectives.make_objective(config.loss, dataset.spec)
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, config.data.dist)
  mesh = sharding.make_mesh(config.num_devices, config.vocab_shards)
  data_sharding = sharding.batch_sharding(mesh)
  data_rows = mesh.shape["data"]  # counts every process's devices
  if config.batch_size % data_rows:
    raise ValueError(f"batch_size {config.batch_size} must divide evenly over the {data_rows} "
                     f"data-parallel rows of {mesh.size} devices ({jax.process_count()} "
                     f"processes, vocab_shards {config.vocab_shards})")

  init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))  # raw keys checkpoint
  variables = model.init(init_key, dataset.spec)
  if config.init_from.workdir:
    variables = init_from_lib.load_parts(config.init_from, variables)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  tx = optimizers.make_optimizer(config, params)
  # From host numpy: jax 0.10.2 builds a broken array when device_put gets a jax.Array and a
  # sharding that spans processes.
  state = jax.device_get(TrainState(jnp.zeros((), jnp.int32), params, model_state,
                                    tx.init(params), state_key))
  state_sharding = sharding.state_shardings(state, mesh, dataset.spec.num_tags)
  state = jax.device_put(state, state_sharding)
  if config.vocab_shards > 1:
    split = [s.spec for s in jax.tree.leaves(state_sharding) if "model" in s.spec]
    logging.info("vocab_shards %d: %d train-state arrays split over 'model' (mesh %s)",
                 config.vocab_shards, len(split), dict(mesh.shape))
  fields = batch_fields(model, objective)
  train_iter = _train_iterator(dataset, model, config, fields)
  # "best" drives the plateau rule (improvement by min_delta); "selected_*" is the strict best
  # validation score and its step, whose variables (`selected`) are the ones tested.
  schedule = {"learning_rate": config.learning_rate, "best": -1.0, "bad_evals": 0,
              "selected_value": -1.0, "selected_step": 0}
  selected = jax.tree.map(jnp.copy, state.variables())  # the step donates the state's buffers
  checkpoints = Checkpoints(workdir)
  run = run_config.run_record(config, dataset.metadata)
  restored = checkpoints.restore_latest(state, train_iter, selected)
  start_step = 0
  if restored:
    start_step, state, schedule, selected, saved_run = restored
    run_config.check_resume(saved_run, config, dataset.metadata, start_step, workdir)
    logging.info("resumed from step %d (%s)", start_step, schedule)
  _write_config(workdir, config)  # after the check: a refused resume leaves the workdir as it was
  # out_shardings: the state keeps its layout from step to step (one compilation).
  train_step = jax.jit(make_train_step(model, objective, tx, tuple(config.frozen)),
                       donate_argnums=0,
                       out_shardings=(state_sharding, sharding.replicated(mesh)))
  multiplier = optimizers.schedule_multiplier(config)

  history = history_lib.History(workdir, resume_step=start_step)
  examples_per_step = config.batch_size * (config.data.seq_len if model.layout == "sequences"
                                           else 1)
  timer = history_lib.Throughput(start_step, config.train_steps, examples_per_step)
  try:
    for step in range(start_step + 1, config.train_steps + 1):
      batch = tag_distribution.apply(next(train_iter), keep)
      state, metrics = train_step(state, _global_batch(batch, fields, data_sharding))
      if step % config.log_every == 0 or step == config.train_steps:
        metrics = jax.device_get(metrics)  # also a sync point (see DESIGN: CPU collectives)
        history_lib.check_finite(step, metrics)
        rate = schedule["learning_rate"] * float(multiplier(step))
        history.log(step, dict(metrics, **timer.update(step), learning_rate=rate))
      if step % config.eval_every == 0 or step == config.train_steps:
        val = _evaluate("val", model, state.variables(), dataset, "val", keep, config, mesh)
        value = val[config.plateau_metric]
        if value > schedule["selected_value"]:
          selected = jax.tree.map(jnp.copy, state.variables())
          schedule.update(selected_value=value, selected_step=step)
        schedule = optimizers.lower_on_plateau(schedule, value, step, config)
        state = dataclasses.replace(state, opt_state=optimizers.set_learning_rate(
            state.opt_state, schedule["learning_rate"]))
        history.log(step, {f"val/{k}": v for k, v in val.items()})
      if step % config.checkpoint_every == 0 or step == config.train_steps:
        _check_finite_state(step, state, checkpoints.latest_step())
        checkpoints.save(step, state, train_iter, schedule, selected, run)
  finally:
    checkpoints.close()
    history.close()

  name = run_label(config, model)
  logging.info("testing the variables of step %d (validation %s %.4f)",
               schedule["selected_step"], config.plateau_metric, schedule["selected_value"])
  test = _evaluate(name, model, selected, dataset, "test", keep, config, mesh)
  results = report.write_run_report(workdir, config, dataset, name, test, keep,
                                    selected_step=schedule["selected_step"],
                                    columns=model.report_columns())
  return {"test": test, "variables": state.variables(), "selected_variables": selected,
          "selected_step": schedule["selected_step"], "results": results, "model": model}
