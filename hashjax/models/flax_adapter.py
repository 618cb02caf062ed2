"""A flax (linen) module as a hashjax model: the same pure functions, with state and randomness.

Write the towers as one linen module with two methods,

    query(batch, train: bool) -> [..., d]      the query tower on the declared batch fields
    tag_table() -> [Y, d]                      the tag tower

whose submodules are the model's parts (their names are the top-level keys of params, e.g.
"image", "user", "tags": what init_from loads and config.frozen keeps). Subclass FlaxTwoTower,
declare `inputs` and return the module from `module()`; the adapter supplies init / query /
train_query / tags. In training mode, dropout draws from the step's key and batch statistics
(any collection besides "params") are returned as state updates; inference uses the running
statistics and no dropout.

A model that is not two towers (its score of a hashtag is not a dot product: the concatenation
MLP of Veit et al.) subclasses FlaxModel instead and names the module method its init runs
through (`init_method`); it supplies its own scoring methods.
"""

from typing import Any, ClassVar

import flax.linen as nn
import jax

from hashjax.models.base import Variables


class FlaxModel:
  """Base of flax-backed models (see the module docstring). Subclasses are frozen dataclasses."""
  layout: ClassVar[str] = "posts"
  inputs: ClassVar[tuple[str, ...]] = ()

  def module(self) -> nn.Module:
    raise NotImplementedError

  def init_method(self, module: nn.Module, batch: dict[str, Any]):
    """Runs every part of `module` on an example batch, so that init creates them all."""
    raise NotImplementedError

  def init(self, rng: jax.Array, spec) -> Variables:
    params_key, dropout_key = jax.random.split(rng)
    example = spec.example_batch(self.inputs, batch_size=2,
                                 sequence_length=2 if self.layout == "sequences" else 0)
    variables = self.module().init({"params": params_key, "dropout": dropout_key}, example,
                                   method=self.init_method)
    return dict(variables)

  def apply_eval(self, variables: Variables, method: str, batch: dict[str, Any]):
    """module.method(batch, train=False): inference mode for any method."""
    return self.module().apply(variables, batch, train=False, method=method)

  def apply_train(self, variables: Variables, method: str, batch: dict[str, Any],
                  rng: jax.Array):
    """(module.method(batch, train=True), state updates): training mode for any method."""
    state = [c for c in variables if c != "params"]
    if not state:
      return self.module().apply(variables, batch, train=True, method=method,
                                 rngs={"dropout": rng}), {}
    out, updates = self.module().apply(variables, batch, train=True, method=method,
                                       rngs={"dropout": rng}, mutable=state)
    return out, dict(updates)

  def project(self, params):
    return params


class FlaxTwoTower(FlaxModel):
  """A flax module with the two methods query(batch, train) and tag_table() as a two-tower model."""

  def init_method(self, module, batch):
    return module.query(batch, train=False), module.tag_table()

  def query(self, variables: Variables, batch: dict[str, Any]) -> jax.Array:
    return self.apply_eval(variables, "query", batch)

  def train_query(self, variables: Variables, batch: dict[str, Any], rng: jax.Array):
    return self.apply_train(variables, "query", batch, rng)

  def tags(self, variables: Variables) -> jax.Array:
    return self.module().apply(variables, method="tag_table")

  def tags_for(self, variables: Variables, ids: jax.Array) -> jax.Array:
    """tags(variables)[ids], [..., d]: the rows of some hashtags only (the sampled softmax's).
    This default builds the table and gathers, which is what a learned table costs anyway; a
    model whose rows are computed from per-hashtag inputs (a tag tower) overrides it to run the
    tower on those ids alone."""
    return self.tags(variables)[ids]
