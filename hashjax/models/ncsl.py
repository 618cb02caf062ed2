r"""Veit et al.'s NCSL models: image embeddings regressed onto fixed hashtag embeddings (flax).

    f(x)  = W_out MLP(x) + b_out  in R^D      the image head over the precomputed features (the
                                              hidden layers ReLU, optional batch norm / dropout;
                                              the output layer linear)
    h_y   = e_y / |e_y|                       the hashtag's fixed embedding e_y, unit norm
    score(x, y) = f(x)/|f(x)| . h_y = cos(f(x), e_y)

The two models differ only in e (from_dataset's tag_embeddings): NCSL-PPMI's PPMI-SVD rows
(hashjax/data/tag_cooccurrence.py, the default) or NCSL-MS's global vectors of a multi-sense
skip-gram model (hashjax/data/multisense.py), both from hashtag co-occurrence in the training
posts; the model's label (its rows' name) says which.

The "ncsl" loss (hashjax/training/objectives.py) trains f by -cos(f(x), sum_{y in post} h_y).
Since sum_y cos(f, h_y) = f/|f| . sum_y h_y, that loss is, per post, minus the sum of the
post's own ranking scores divided by |sum_y h_y|, a constant of the post: ranking by cosine
is what it trains. Both sides are normalised in the towers so the two-tower dot product
(evaluation, retrieval) is that cosine. Normalising the tag rows also makes the target an
unweighted sum, each hashtag of a post counting once whatever the norm of its row.

The tag table depends on the dataset's training posts, not only on its sizes, so the model is
built by `from_dataset` (make_model passes the dataset). The embeddings are the params of part
"tags", so checkpoints, init_from and evaluation carry them; they must never move, since a
learned target could collapse onto the image embeddings. The table goes through stop_gradient,
so no loss moves it; an experiment also sets config.frozen = ("tags",), so that no update that
does not come from the gradient (weight decay) does either. A hashtag without co-occurrence
has the zero row and scores 0 for every image.

Parts: "image" (the head: layers.MLP with its linear "out" layer) and "tags" (the fixed table).
"""

from collections.abc import Mapping
import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.data import multisense
from hashjax.data import tag_cooccurrence
from hashjax.models import layers
from hashjax.models.flax_adapter import FlaxTwoTower

# Where the fixed table comes from (from_dataset's tag_embeddings).
TAG_EMBEDDINGS = ("ppmi", "mssg")
# Norms below sqrt(_EPS2) are not divided by: the zero rows stay zero instead of turning NaN.
_EPS2 = 1e-12


def unit_rows(x: jax.Array) -> jax.Array:
  """x / |x| along the last axis; a zero vector stays zero (and has a finite gradient)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.square(x).sum(axis=-1, keepdims=True), _EPS2))


def centered_rows(table: np.ndarray) -> np.ndarray:
  """e_y - mean of the nonzero rows, for every nonzero row; the zero rows stay zero.

  Skip-gram vectors share a common direction, and the rare hashtags' vectors are little else
  (on the default synthetic data MSSG's rarest hashtags have cosine 0.97 with the
  frequency-weighted mean row, against 0.55 for the 50 most frequent). Regressed onto sums of such rows, every
  image lands near that direction, and the rare hashtags top every ranking: NCSL-MS's test
  A@10 there is 0.2% (seed 0, 1500 steps, MSSG with 20 epochs), 46.8% with the table centred
  (NCSL-PPMI: 72.2%). Removing the mean (Mu and Viswanath's "all-but-the-top" postprocessing,
  without its top directions) leaves each row what distinguishes it.
  """
  table = np.asarray(table, np.float64)
  present = table.any(axis=1)
  if not present.any():
    return table.astype(np.float32)
  out = np.where(present[:, None], table - table[present].mean(axis=0), 0.0)
  return out.astype(np.float32)


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
  """Attributes: the fixed embeddings [Y, D] (from_dataset: PPMI-SVD or MSSG), hidden widths of
  the head (none: a linear map to R^D), dropout rate, batch norm. D is the embeddings' width."""
  # Not compared or hashed: a model's identity is its hyperparameters (and jax.jit hashes the
  # model through its bound methods); the table follows from them and the dataset.
  embeddings: np.ndarray = dataclasses.field(compare=False, repr=False)
  hidden: tuple[int, ...] = (512,)
  dropout_rate: float = 0.0
  batch_norm: bool = False
  tag_embeddings: str = "ppmi"  # where `embeddings` came from (from_dataset): its label
  name: ClassVar[str] = "ncsl"

  @property
  def label(self) -> str:
    return {"ppmi": "NCSL-PPMI", "mssg": "NCSL-MS"}[self.tag_embeddings]
  inputs: ClassVar[tuple[str, ...]] = ("features",)

  def __post_init__(self):
    object.__setattr__(self, "hidden", layers.head_widths(self.hidden, self.dropout_rate))
    object.__setattr__(self, "embeddings", np.asarray(self.embeddings, np.float32))
    if self.embeddings.ndim != 2 or min(self.embeddings.shape) < 1:
      raise ValueError(f"embeddings must be a [num_tags, D] table, got {self.embeddings.shape}")

  @classmethod
  def from_dataset(cls, dataset, dim: int = 300, tag_embeddings: str = "ppmi",
                   mssg: Mapping[str, Any] | None = None, center: bool = False,
                   **hyperparameters):
    """The model on fixed embeddings (dimension `dim`) of the dataset's training posts.

    tag_embeddings: "ppmi" (NCSL-PPMI: the PPMI-SVD rows, tag_cooccurrence.py) or "mssg"
    (NCSL-MS: the global vectors of a multi-sense skip-gram model, multisense.py, trained with
    the hyperparameters `mssg`, e.g. {"senses": 3, "epochs": 5}).
    center: subtract the mean row from the table first (centered_rows). Not in the paper.
    """
    if tag_embeddings == "ppmi":
      if mssg:
        raise ValueError(f"mssg={dict(mssg)} configures tag_embeddings='mssg', not 'ppmi'")
      table = tag_cooccurrence.training_ppmi_embeddings(dataset, dim).embeddings
    elif tag_embeddings == "mssg":
      table = multisense.training_mssg_embeddings(dataset, dim, **dict(mssg or {}))
      table = table.global_vectors  # what Veit et al. take from MSSG, not the senses
    else:
      raise ValueError(f"tag_embeddings={tag_embeddings!r}: choose one of {TAG_EMBEDDINGS}")
    return cls(embeddings=centered_rows(table) if center else table,
               tag_embeddings=tag_embeddings, **hyperparameters)

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
