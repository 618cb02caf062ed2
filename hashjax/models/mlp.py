r"""A multi-label classifier over image features, as a two-tower model (flax).

    h = MLP(x)                          hidden layers (ReLU; optional batch norm, dropout)
    score(x, y) = h . w_y + b_y         the output layer, one row w_y and bias b_y per hashtag

The hidden representation is the query and the output layer's rows are the tag table, so the
classifier shares top-k evaluation, retrieval and every loss with the embedding models. With
two hidden layers of 4096 and sigmoid cross-entropy it is Park et al.'s HARRISON baseline;
trained with softmax over one drawn hashtag it is a (user-agnostic) MCLL image model. It reads
no user input.

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

  def setup(self):
    self.image = layers.MLP(self.hidden, self.dropout_rate, self.batch_norm)
    self.tags = layers.TagTable(self.num_tags, self.hidden[-1], bias=True)

  def query(self, batch, train: bool):
    return layers.append_one(self.image(batch["features"], train))

  def tag_table(self):
    return self.tags()


@dataclasses.dataclass(frozen=True)
class MLPClassifier(FlaxTwoTower):
  """Attributes: num_tags (from the dataset), hidden widths, dropout rate, batch norm."""
  num_tags: int
  hidden: tuple[int, ...] = (512,)
  dropout_rate: float = 0.0
  batch_norm: bool = False
  name: ClassVar[str] = "mlp"
  label: ClassVar[str] = "MLP classifier"
  inputs: ClassVar[tuple[str, ...]] = ("features",)

  def __post_init__(self):
    object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
    if not self.hidden or min(self.hidden) < 1:
      raise ValueError(f"hidden must be one or more positive widths, got {self.hidden}")
    if not 0 <= self.dropout_rate < 1:
      raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")

  @classmethod
  def from_spec(cls, spec, **hyperparameters):
    return cls(num_tags=spec.num_tags, **hyperparameters)

  def module(self) -> nn.Module:
    return _Classifier(self.hidden, self.num_tags, self.dropout_rate, self.batch_norm)

  def report_columns(self) -> dict[str, Any]:
    return {"hidden": "x".join(map(str, self.hidden))}
