r"""A multi-label classifier over image features, as a two-tower model (flax).

    h = MLP(x)                          hidden layers (ReLU; optional batch norm, dropout)
    score(x, y) = h . w_y + b_y         the output layer, one row w_y and bias b_y per hashtag

The hidden representation is the query and the output layer's rows are the tag table, so the
classifier shares top-k evaluation, retrieval and every loss with the embedding models. With
two hidden layers of 4096 and sigmoid cross-entropy it is Park et al.'s HARRISON baseline;
trained with softmax over one drawn hashtag it is a (user-agnostic) MCLL image model; without
hidden layers (hidden=()) it is a linear classifier on the features themselves (Veit et al.'s
"ImageNet" row: logistic regression on frozen CNN features). It reads no user input.

Parts: "image" (the MLP) and "tags" (the output layer).
"""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn

from hashjax.models import layers
from hashjax.models.flax_adapter import FlaxTwoTower


class _Classifier(nn.Module):
  hidden: tuple[int, ...]
  num_tags: int
  dropout_rate: float
  batch_norm: bool
  feature_dim: int

  def setup(self):
    self.image = layers.MLP(self.hidden, self.dropout_rate, self.batch_norm)
    width = self.hidden[-1] if self.hidden else self.feature_dim
    self.tags = layers.TagTable(self.num_tags, width, bias=True)

  def query(self, batch, train: bool):
    return layers.append_one(self.image(batch["features"], train))

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
  name: ClassVar[str] = "mlp"
  label: ClassVar[str] = "MLP classifier"
  inputs: ClassVar[tuple[str, ...]] = ("features",)

  def __post_init__(self):
    object.__setattr__(self, "hidden", layers.head_widths(self.hidden, self.dropout_rate))
    if not self.hidden and self.feature_dim < 1:
      raise ValueError("a linear classifier (hidden=()) needs the feature_dim")

  @classmethod
  def from_spec(cls, spec, **hyperparameters):
    return cls(num_tags=spec.num_tags, feature_dim=spec.feature_dim, **hyperparameters)

  def module(self) -> nn.Module:
    return _Classifier(self.hidden, self.num_tags, self.dropout_rate, self.batch_norm,
                       self.feature_dim)

  def report_columns(self) -> dict[str, Any]:
    return {"hidden": "x".join(map(str, self.hidden)) or "linear"}
