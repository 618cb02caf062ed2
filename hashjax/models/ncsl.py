r"""Veit et al.'s NCSL-PPMI model: image embeddings regressed onto fixed hashtag embeddings (flax).

    f(x)  = W_out MLP(x) + b_out  in R^D      the image head over the precomputed features (the
                                              hidden layers ReLU, optional batch norm / dropout;
                                              the output layer linear)
    h_y   = e_y / |e_y|                       the hashtag's PPMI-SVD embedding e_y, unit norm
                                              (hashjax/data/tag_cooccurrence.py), fixed
    score(x, y) = f(x)/|f(x)| . h_y = cos(f(x), e_y)

The "ncsl" loss (hashjax/training/objectives.py) trains f by -cos(f(x), sum_{y in post} h_y).
Since sum_y cos(f, h_y) = f/|f| . sum_y h_y, that loss is, per post, minus the sum of the
post's own ranking scores divided by |sum_y h_y|, a constant of the post: ranking by cosine
is what it trains. Both sides are normalised in the towers so the two-tower dot product
(evaluation, retrieval) is that cosine. Normalising the tag rows also makes the target an
unweighted sum, each hashtag of a post counting once whatever the norm of its SVD row.

The tag table depends on the dataset's training posts, not only on its sizes, so the model is
built by `from_dataset` (make_model passes the dataset). The embeddings are the params of part
"tags", so checkpoints, init_from and evaluation carry them; they must never move, since a
learned target could collapse onto the image embeddings. The table goes through stop_gradient,
so no loss moves it; an experiment also sets config.frozen = ("tags",), so that no update that
does not come from the gradient (weight decay) does either. A hashtag without co-occurrence
has the zero row and scores 0 for every image.

Parts: "image" (the head: layers.MLP with its linear "out" layer) and "tags" (the fixed table).
"""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.data import tag_cooccurrence
from hashjax.models import layers
from hashjax.models.flax_adapter import FlaxTwoTower

# Norms below sqrt(_EPS2) are not divided by: the zero rows stay zero instead of turning NaN.
_EPS2 = 1e-12


def unit_rows(x: jax.Array) -> jax.Array:
  """x / |x| along the last axis; a zero vector stays zero (and has a finite gradient)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.square(x).sum(axis=-1, keepdims=True), _EPS2))


class _FixedTagTable(nn.Module):
  """The table [Y, D] as a param (set by NCSL.init), unit rows, no gradient."""
  num_tags: int
  dim: int

  @nn.compact
  def __call__(self):
    table = self.param("embedding", nn.initializers.zeros_init(), (self.num_tags, self.dim))
    return unit_rows(jax.lax.stop_gradient(table))


class _NCSL(nn.Module):
  hidden: tuple[int, ...]
  dim: int
  num_tags: int
  dropout_rate: float
  batch_norm: bool

  def setup(self):
    # A linear last layer: the target directions have any sign.
    self.image = layers.MLP(self.hidden, self.dropout_rate, self.batch_norm,
                            out_features=self.dim)
    self.tags = _FixedTagTable(self.num_tags, self.dim)

  def query(self, batch, train: bool):
    return unit_rows(self.image(batch["features"], train))

  def tag_table(self):
    return self.tags()


@dataclasses.dataclass(frozen=True)
class NCSL(FlaxTwoTower):
  """Attributes: the PPMI-SVD embeddings [Y, D] (from_dataset), hidden widths of the head (none:
  a linear map to R^D), dropout rate, batch norm. D is the embeddings' width."""
  # Not compared or hashed: a model's identity is its hyperparameters (and jax.jit hashes the
  # model through its bound methods); the table follows from them and the dataset.
  embeddings: np.ndarray = dataclasses.field(compare=False, repr=False)
  hidden: tuple[int, ...] = (512,)
  dropout_rate: float = 0.0
  batch_norm: bool = False
  name: ClassVar[str] = "ncsl"
  label: ClassVar[str] = "NCSL-PPMI"
  inputs: ClassVar[tuple[str, ...]] = ("features",)

  def __post_init__(self):
    object.__setattr__(self, "hidden", layers.head_widths(self.hidden, self.dropout_rate))
    object.__setattr__(self, "embeddings", np.asarray(self.embeddings, np.float32))
    if self.embeddings.ndim != 2 or min(self.embeddings.shape) < 1:
      raise ValueError(f"embeddings must be a [num_tags, D] table, got {self.embeddings.shape}")

  @classmethod
  def from_dataset(cls, dataset, dim: int = 300, **hyperparameters):
    """The model on the PPMI-SVD embeddings (dimension `dim`) of the dataset's training posts."""
    table = tag_cooccurrence.training_ppmi_embeddings(dataset, dim).embeddings
    return cls(embeddings=table, **hyperparameters)

  @property
  def num_tags(self) -> int:
    return self.embeddings.shape[0]

  @property
  def dim(self) -> int:
    return self.embeddings.shape[1]

  def module(self) -> nn.Module:
    return _NCSL(self.hidden, self.dim, self.num_tags, self.dropout_rate, self.batch_norm)

  def init(self, rng: jax.Array, spec):
    if spec.num_tags != self.num_tags:
      raise ValueError(f"the tag table has {self.num_tags} rows, the dataset {spec.num_tags} "
                       "hashtags")
    variables = super().init(rng, spec)
    params = {**variables["params"], "tags": {"embedding": jnp.asarray(self.embeddings)}}
    return {**variables, "params": params}

  def report_columns(self) -> dict[str, Any]:
    return {"D": self.dim, "hidden": "x".join(map(str, self.hidden)) or "linear"}
