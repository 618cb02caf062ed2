"""What a dataset is, in the numbers a model needs to build itself: one spec, read once.

`PostDataset.spec` fills it from metadata.json; models take it in `init(rng, spec)` and size
their layers from it, so nothing else builds these numbers by hand.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Sizes of a dataset.

  feature_dim: n, the length of a post's image feature vector.
  user_meta_dim: m, the length of the user-metadata vector (0: none, e.g. HetRec).
  num_tags: Y, the hashtag vocabulary.
  num_users: U, users in the dataset; `user_index` in a batch is in [0, U).
  word_vector_dim: w, the length of a hashtag's word vector (0: the dataset has none).
  caption_vocab_size: caption token ids are in [0, caption_vocab_size) (0: no captions).
  max_tags_per_post: the longest hashtag list.
  max_caption_len: the longest caption, in tokens (0: no captions).
  num_seen_tags: hashtags used in the training split (ids are by training frequency, so they
    are ids [0, num_seen_tags)); the rest appear only in val / test (an open vocabulary's
    unseen hashtags). 0: unknown, taken as num_tags.
  feature_views: ((name, width), ...), the named column blocks of the feature vector in order
    (e.g. object and scene CNN features); () for one unnamed view.
  """
  feature_dim: int
  user_meta_dim: int
  num_tags: int
  num_users: int
  word_vector_dim: int = 0
  caption_vocab_size: int = 0
  max_tags_per_post: int = 1
  max_caption_len: int = 0
  num_seen_tags: int = 0
  feature_views: tuple[tuple[str, int], ...] = ()

  def view_columns(self, views) -> np.ndarray:
    """bool [feature_dim]: the columns of the named views (the others are zero-padded by a
    model that reads only those views)."""
    known = dict(self.feature_views)
    unknown = [v for v in views if v not in known]
    if unknown:
      raise ValueError(f"unknown feature views {unknown}; the dataset has "
                       f"{list(known) or 'no named views'}")
    keep, start = np.zeros(self.feature_dim, bool), 0
    for name, width in self.feature_views:
      keep[start:start + width] = name in views
      start += width
    return keep

  @property
  def seen_tags(self) -> int:
    return self.num_seen_tags or self.num_tags

  def example_batch(self, fields, *, batch_size: int = 1, sequence_length: int = 0) -> dict:
    """Zero-valued inputs of the right shapes and dtypes (to initialise flax modules).

    With sequence_length > 0 every field gets a [batch_size, sequence_length] leading shape,
    the layout of `pipeline.sequence_batches`.
    """
    lead = (batch_size, sequence_length) if sequence_length else (batch_size,)
    shapes = {
        "features": ((self.feature_dim,), np.float32),
        "user_meta": ((self.user_meta_dim,), np.float32),
        "user_index": ((), np.int32),
        "user_train_posts": ((), np.int32),
        "in_train": ((), bool),
        "user_id": ((), np.int64),
        "post_id": ((), np.int64),
        "timestamp": ((), np.int64),
        "tag_ids": ((self.max_tags_per_post,), np.int32),
        "tag_mask": ((self.max_tags_per_post,), bool),
        "caption_ids": ((max(self.max_caption_len, 1),), np.int32),
        "caption_mask": ((max(self.max_caption_len, 1),), bool),
        "seq_mask": ((), bool),
        "target_mask": ((), bool),
    }
    unknown = sorted(set(fields) - set(shapes))
    if unknown:
      raise KeyError(f"no example for batch fields {unknown}; known: {sorted(shapes)}")
    return {f: np.zeros(lead + shapes[f][0], shapes[f][1]) for f in fields}
