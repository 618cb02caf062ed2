"""What Veit et al.'s two user-specific models share: an image head f in R^F over the features,
hashtag embeddings in R^D, a user embedding in R^E (1/E for users unseen in training), and the
view the triplet loss needs, `train_axis_scores` (hashjax.losses.triplet).

The tensor (tensor.py, two towers) and the concatenation MLP (concat_mlp.py, scored pair by
pair) subclass UserSpecificModel, and their flax modules subclass UserSpecificModule (the head
and the user table; each adds its tag table and scorer and an `axis_scores(batch, train)`).
"""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn

from hashjax.models import layers
from hashjax.models.flax_adapter import FlaxModel


class UserSpecificModule(nn.Module):
  """The parts both models have: "image" (the head, as stage 1's) and "user" (layers.UserTable)."""
  hidden: tuple[int, ...]
  image_dim: int
  tag_dim: int
  user_dim: int
  num_users: int
  num_tags: int
  dropout_rate: float
  batch_norm: bool

  def setup(self):
    self.image = layers.MLP(self.hidden, self.dropout_rate, self.batch_norm,
                            out_features=self.image_dim)
    self.user = layers.UserTable(self.num_users, self.user_dim)

  @property
  def image_width(self) -> int:
    return self.image_dim or self.hidden[-1]


@dataclasses.dataclass(frozen=True)
class UserSpecificModel(FlaxModel):
  """Attributes: the dataset's sizes (from_spec); hidden widths of the image head (the last is
  F unless image_dim > 0), tag_dim D, user_dim E, dropout rate and batch norm of the head
  (match stage 1's, whose head init_from loads)."""
  num_users: int
  num_tags: int
  hidden: tuple[int, ...] = (300,)
  image_dim: int = 0
  tag_dim: int = 300
  user_dim: int = 50
  dropout_rate: float = 0.0
  batch_norm: bool = False
  inputs: ClassVar[tuple[str, ...]] = ("features", "user_index", "user_train_posts")

  def __post_init__(self):
    object.__setattr__(self, "hidden", layers.head_widths(self.hidden, self.dropout_rate))
    if not self.hidden and self.image_dim < 1:
      raise ValueError("the image head needs hidden layers or an image_dim")
    if self.tag_dim < 1 or self.user_dim < 1:
      raise ValueError(f"tag_dim and user_dim must be >= 1, got {self.tag_dim}, {self.user_dim}")

  @classmethod
  def from_spec(cls, spec, **hyperparameters):
    return cls(num_users=spec.num_users, num_tags=spec.num_tags, **hyperparameters)

  @property
  def image_width(self) -> int:
    """F: the width of the head's output."""
    return self.image_dim or self.hidden[-1]

  def module_fields(self) -> dict[str, Any]:
    """The UserSpecificModule fields, from these hyperparameters."""
    return {f: getattr(self, f) for f in ("hidden", "image_dim", "tag_dim", "user_dim",
                                          "num_users", "num_tags", "dropout_rate", "batch_norm")}

  def train_axis_scores(self, variables, batch: dict[str, Any], positive, rng):
    """((S_tag, S_img, S_user), state updates) in training mode; positive: tag ids [B]; with
    batch["tag_candidates"] (ids [C]) S_tag is [B, C] over those hashtags."""
    return self.apply_train(variables, "axis_scores", {**batch, "positive": positive}, rng)

  def report_columns(self) -> dict[str, Any]:
    return {"D": self.tag_dim, "E": self.user_dim, "F": self.image_width}
