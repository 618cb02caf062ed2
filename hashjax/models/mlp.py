r"""A multi-label classifier over image features, as a two-tower model (flax).

    h = MLP(x)                          hidden layers (ReLU; optional batch norm, dropout)
    score(x, y) = h . w_y + b_y         the output layer, one row w_y and bias b_y per hashtag

The hidden representation is the query and the output layer's rows are the tag table, so the
classifier shares top-k evaluation, retrieval and every loss with the embedding models. With
two hidden layers of 4096 and sigmoid cross-entropy it is Park et al.'s HARRISON baseline;
trained with softmax over one drawn hashtag it is a (user-agnostic) MCLL image model; without
hidden layers (hidden=()) it is a linear classifier on the features themselves (Veit et al.'s
"ImageNet" row: logistic regression on frozen CNN features). It reads no user input.

With `views` (names of the dataset's feature_views, e.g. ("object",)) the model reads only
those column blocks and the others are zero-padded: Park et al.'s single-view ablations of
their object + scene features, with the input layer's shape unchanged.

Parts: "image" (the MLP) and "tags" (the output layer).
"""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import numpy as np

from hashjax.models import layers
from hashjax.models.flax_adapter import FlaxTwoTower


class _Classifier(nn.Module):
  hidden: tuple[int, ...]
  num_tags: int
  dropout_rate: float
  batch_norm: bool
  feature_dim: int
  kept_columns: tuple[tuple[int, int], ...]  # [start, stop) ranges read; () all

  def setup(self):
    self.image = layers.MLP(self.hidden, self.dropout_rate, self.batch_norm)
    width = self.hidden[-1] if self.hidden else self.feature_dim
    self.tags = layers.TagTable(self.num_tags, width, bias=True)

  def query(self, batch, train: bool):
    x = batch["features"]
    if self.kept_columns:
      keep = np.zeros(x.shape[-1], np.float32)
      for start, stop in self.kept_columns:
        keep[start:stop] = 1.0
      x = x * keep  # the views not read are zero-padded
    return layers.append_one(self.image(x, train))

  def tag_table(self):
    return self.tags()


@dataclasses.dataclass(frozen=True)
class MLPClassifier(FlaxTwoTower):
  """Attributes: num_tags and feature_dim (from the dataset), hidden widths (none: linear),
  dropout rate, batch norm."""
  num_tags: int
  feature_dim: int = 0
  hidden: tuple[int, ...] = (512,)
  dropout_rate: float = 0.0
  batch_norm: bool = False
  views: tuple[str, ...] = ()
  kept_columns: tuple[tuple[int, int], ...] = ()
  name: ClassVar[str] = "mlp"
  label: ClassVar[str] = "MLP classifier"
  inputs: ClassVar[tuple[str, ...]] = ("features",)

  def __post_init__(self):
    object.__setattr__(self, "hidden", layers.head_widths(self.hidden, self.dropout_rate))
    if not self.hidden and self.feature_dim < 1:
      raise ValueError("a linear classifier (hidden=()) needs the feature_dim")

  @classmethod
  def from_spec(cls, spec, **hyperparameters):
    views = tuple(hyperparameters.pop("views", ()))
    kept = ()
    if views:  # [start, stop) of each view read, from the dataset's named column blocks
      keep = np.concatenate([[False], spec.view_columns(views), [False]])
      edges = np.flatnonzero(np.diff(keep.astype(np.int8)))
      kept = tuple((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]))
    return cls(num_tags=spec.num_tags, feature_dim=spec.feature_dim, views=views,
               kept_columns=kept, **hyperparameters)

  def module(self) -> nn.Module:
    return _Classifier(self.hidden, self.num_tags, self.dropout_rate, self.batch_norm,
                       self.feature_dim, self.kept_columns)

  def report_columns(self) -> dict[str, Any]:
    columns = {"hidden": "x".join(map(str, self.hidden)) or "linear"}
    if self.views:  # only the ablations name theirs (older tables have no such column)
      columns["views"] = "+".join(self.views)
    return columns
