r"""Durand et al. 2020: a user represented by their posting history, and an open vocabulary.

The two towers (hashjax.models.history has the layers and their equations):

    u_t   = h_{t-1}, the GRU state after the user's posts before t (h_0 = 0: a user without
            history, and the model is user-agnostic)
    v     = ReLU(W_v f + b)                      a separate image head (not the history's f_im)
    z     = MUTAN(v, u_t)                        user-conditional image, R^{d_c} (eq. 6)
    query = phi_iu(z) = W_iu z + b               R^d
    row_y = phi_tag(psi(y)) = W_2 ReLU(W_1 psi(y) + b_1)      the tag tower (eq. 7; no
            output bias: one shared by every row adds q . b_2 to all of a post's scores, which
            no ranking or softmax sees, and Adam would turn its rounding-noise gradient into
            full-size steps)

so score(v, u, y) = phi_iu(MUTAN(v, u)) . phi_tag(psi(y)), and any string with a word vector
psi can be scored (`embed_words`): the vocabulary is open. With `word_vectors="learned"` psi
is a learned table started at random (the paper's "w/o GloVe"), and only the training
vocabulary means anything.

The user tower (`user`):

    gru           the history GRU over fusion(image, hashtags) of each earlier post (the paper's)
    used          [C] u = 1[hashtag used before], a binary vector over the vocabulary
    occurrences   [D] u = the counts of each hashtag used before
    word_sum      [E] u = the sum of the word vectors of every hashtag used before
    none          [B] u = u_0, one learned vector for every user (user-agnostic: the same
                  towers without a user). Not u = 0: MUTAN's user side tanh(B u + b) is then 0
                  at init (b starts at 0), so z = MUTAN's bias, the query ignores the image
                  and the image head's gradient is exactly 0; u_0 ~ N(0, 1) starts it off

With history="train" only posts of the training split update the state (`in_train`): a
user's history is fixed at what training saw (Table 3's "fixed history").

Beyond the paper, one user tower from everything known about the user (its conclusion proposes
metadata; Denton et al. condition on metadata, Veit et al. on a learned embedding). With
`user_meta` and / or `user_embedding`, on top of user "gru" or "none":

    u_t = h_{t-1} + W_m m_u + b_m + s_u e_u,     s_u = 1[u has training posts] (1 - drop_u)

m_u the user's metadata vector, e_u a learned embedding (R^{d_u}) of a user seen in training;
an unseen user (no training posts: every test user of a user-disjoint split) has s_u = 0. In
training every user is seen, so drop_u ~ Bernoulli(embedding_drop) per sequence drops the
embedding (without rescaling: it is an absent signal, not a noisy one) and the rest of the tower
learns to stand without it, as it must for a new user.

The model reads user sequences (layout "sequences", pipeline.sequence_batches): fields
[S, W, ...], each row of S one user's consecutive posts in time order. The query at position t
reads the image of post t and the hashtags of the posts before it only (`seq_mask` drops the
padding); one scan gives every position's user state, so a sequence of W posts costs W GRU
steps whatever their history. The hashtags of post t are its targets; they reach the queries
of t+1, t+2, ... only.

Streaming (the predict path, new users without retraining): `final_state` is the state after a
user's history, `next_state` one GRU step from a stored state with a new post, and
`query_from_state` the query of a new image for a user in that state.

Parts: "words" (psi), "history" (the post fusion and the GRU), "image" (v), "fusion" (MUTAN),
"joint" (phi_iu), "tags" (phi_tag), "no_user" (u_0 of user none).
"""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import history, layers
from hashjax.models.flax_adapter import FlaxTwoTower

USER_REPRESENTATIONS = ("gru", "used", "occurrences", "word_sum", "none")
WORD_VECTORS = ("fixed", "learned")


class WordTable(nn.Module):
  """psi: the [Y, w] word vectors; fixed (the dataset's, through stop_gradient) or learned."""
  vectors: Any  # np.ndarray [Y, w], hashed by identity
  learned: bool

  @nn.compact
  def __call__(self):
    shape = self.vectors.shape
    if self.learned:
      scale = float(np.sqrt(np.mean(np.square(self.vectors)))) or 1.0  # psi's typical entry
      return self.param("table", nn.initializers.normal(scale), shape)
    return jax.lax.stop_gradient(
        self.param("table", lambda *_: jnp.asarray(self.vectors, jnp.float32)))


class _Durand(nn.Module):
  words_init: Any
  learned_words: bool
  user: str
  fusion: str
  post_dim: int
  user_dim: int
  image_dim: int
  fused_dim: int
  joint_dim: int
  tag_hidden: int
  mutan_rank: int
  train_history: bool
  user_meta: bool = False
  num_users: int = 0  # > 0: a learned embedding per user (user_embedding)
  embedding_drop: float = 0.0

  def setup(self):
    self.words = WordTable(self.words_init, self.learned_words)
    if self.user == "gru":
      self.history = _History(self.fusion, self.post_dim, self.user_dim, self.mutan_rank)
    if self.user == "none":  # u_0 (the module docstring)
      self.no_user = self.param("no_user", nn.initializers.normal(1.0),
                                (self.user_dim,) if self.fused else (1,))
    if self.user_meta:
      self.meta = nn.Dense(self.user_dim, name="user_meta")
    if self.num_users:
      self.embedding = nn.Embed(self.num_users, self.user_dim, name="user_embedding",
                                embedding_init=nn.initializers.normal(0.1))
    self.image = layers.MLP((self.image_dim,))
    self.fusion_layer = history.Mutan(self.fused_dim, self.mutan_rank, name="fusion")
    self.joint = nn.Dense(self.joint_dim)
    self.tags = _TagTower(self.tag_hidden, self.joint_dim)

  def _num_tags(self) -> int:
    return self.words_init.shape[0]

  def user_before(self, batch, train: bool = False):
    """u_t [S, W, ...] from the posts before each position (and what else is known)."""
    update = batch["seq_mask"] & batch["in_train"] if self.train_history else batch["seq_mask"]
    if self.user in ("used", "occurrences", "word_sum"):
      return history.pooled_history(self.user, batch, update, num_tags=self._num_tags(),
                                    words=self.words())
    if self.user == "gru":
      u = self.history(self.words(), batch, update)[0]
    else:
      u = jnp.broadcast_to(self.no_user, update.shape + self.no_user.shape)
    return u + self.user_known(batch, train) if self.fused else u

  @property
  def fused(self) -> bool:
    return self.user_meta or self.num_users > 0

  def user_known(self, batch, train: bool):
    """W_m m_u + b_m + s_u e_u [S, W, d_u] (the class docstring)."""
    u = 0.0
    if self.user_meta:
      u = u + self.meta(batch["user_meta"])
    if self.num_users:
      seen = batch["user_train_posts"] > 0  # [S, W]
      if train and self.embedding_drop:
        kept = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.embedding_drop,
                                    seen.shape[:1])  # one draw per user sequence
        seen = seen & kept[:, None]
      u = u + self.embedding(batch["user_index"]) * seen[..., None]
    return u

  def _score_query(self, features, user, train: bool):
    return self.joint(self.fusion_layer(self.image(features, train), user))

  def query(self, batch, train: bool = False):
    q = self._score_query(batch["features"], self.user_before(batch, train), train)
    return q * batch["seq_mask"][..., None]  # padding scores nothing

  def tag_table(self):
    return self.embed_words({"word_vectors": self.words()})

  def tag_rows(self, ids):
    """phi_tag(psi(y)) for the hashtags ids only: the tower on [..., w] inputs, not [Y, w]."""
    return self.embed_words({"word_vectors": self.words()[ids]})

  def embed_words(self, batch, train: bool = False):
    return self.tags(batch["word_vectors"], train)

  # -- streaming (user="gru") ----------------------------------------------------------------

  def final_state(self, batch, train: bool = False):
    """The state after each sequence's last post [S, d_u] (masked positions carry it)."""
    return self.history(self.words(), batch, batch["seq_mask"])[1][:, -1]

  def next_state(self, batch, train: bool = False):
    """state [B, d_u] + one post (features [B, n], tag_ids / tag_mask [B, T]) -> [B, d_u]."""
    return self.history.step(self.words(), batch)

  def query_from_state(self, batch, train: bool = False):
    """The query [B, d] of images features [B, n] for users in state [B, d_u]."""
    return self._score_query(batch["features"], batch["state"], train)


class _TagTower(nn.Module):
  """phi_tag(psi) = W_2 ReLU(W_1 psi + b_1) (part "tags")."""
  hidden: int
  features: int

  @nn.compact
  def __call__(self, words, train: bool = False):
    return nn.Dense(self.features, use_bias=False, name="out")(
        nn.relu(nn.Dense(self.hidden, name="hidden")(words)))


class _History(nn.Module):
  """Post vectors x_t = fusion(f_im, f_tag) and the GRU over them (part "history")."""
  fusion: str
  post_dim: int
  user_dim: int
  mutan_rank: int

  def setup(self):
    self.post = history.PostFusion(self.fusion, self.post_dim, self.mutan_rank)
    self.gru = history.UserStates(self.user_dim)

  def post_vectors(self, words, batch):
    tag_sum = history.tag_vector_sum(words, batch["tag_ids"], batch["tag_mask"])
    return self.post(batch["features"], tag_sum)

  def __call__(self, words, batch, update):
    return self.gru(self.post_vectors(words, batch), update)

  def step(self, words, batch):
    update = jnp.ones(batch["state"].shape[:1], bool)
    return self.gru.step(batch["state"], self.post_vectors(words, batch), update)


@dataclasses.dataclass(frozen=True)
class Durand(FlaxTwoTower):
  """Attributes: the word vectors psi [Y, w] (from_dataset: the dataset's); the user tower and
  post fusion (above); widths d_i = d_t (post_dim), d_u, d_v, d_c, d and phi_tag's hidden
  layer; MUTAN's rank R (eq. 6 and the mutan fusion); word_vectors fixed or learned; history
  full (every earlier post) or train (only the training split's posts update the user: the
  paper's "fixed history", Table 3's Ours-FH)."""
  words: np.ndarray = dataclasses.field(repr=False, compare=False, hash=False)
  user: str = "gru"
  fusion: str = "product"
  post_dim: int = 512
  user_dim: int = 1024
  image_dim: int = 512
  fused_dim: int = 512
  joint_dim: int = 512
  tag_hidden: int = 512
  mutan_rank: int = 5
  word_vectors: str = "fixed"
  history: str = "full"
  user_meta: bool = False
  user_embedding: bool = False
  embedding_drop: float = 0.5
  num_users: int = 0  # from_dataset: the dataset's (the embedding table's rows)
  name: ClassVar[str] = "durand"
  layout: ClassVar[str] = "sequences"

  def __post_init__(self):
    if self.user not in USER_REPRESENTATIONS:
      raise ValueError(f"unknown user representation {self.user!r}; choose one of "
                       f"{USER_REPRESENTATIONS}")
    if self.fusion not in history.FUSIONS:
      raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {history.FUSIONS}")
    if self.word_vectors not in WORD_VECTORS:
      raise ValueError(f"word_vectors must be one of {WORD_VECTORS}, got {self.word_vectors!r}")
    if self.history not in ("full", "train"):
      raise ValueError(f"history must be full or train, got {self.history!r}")
    if self.words is None or np.ndim(self.words) != 2:
      raise ValueError("the Durand model needs a [num_tags, w] table of word vectors")
    if (self.user_meta or self.user_embedding) and self.user not in ("gru", "none"):
      raise ValueError(f"user_meta and user_embedding join the GRU state (user gru or none), "
                       f"not a pooled {self.user!r} vector")
    if self.user_embedding and self.num_users < 1:
      raise ValueError("user_embedding needs num_users (from_dataset sets it)")
    if not 0 <= self.embedding_drop < 1:
      raise ValueError(f"embedding_drop must be in [0, 1), got {self.embedding_drop}")
    for field in ("post_dim", "user_dim", "image_dim", "fused_dim", "joint_dim", "tag_hidden",
                  "mutan_rank"):
      if getattr(self, field) < 1:
        raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")

  @classmethod
  def from_dataset(cls, dataset, **hyperparameters):
    if dataset.word_vectors is None:
      raise ValueError(f"{dataset.directory}: the Durand model scores hashtags from their word "
                       "vectors, and the dataset has none (data_prep.filter_tags "
                       "--word_vectors=glove adds them)")
    if hyperparameters.get("user_meta") and not dataset.spec.user_meta_dim:
      raise ValueError(f"{dataset.directory}: user_meta needs user metadata; the dataset has none")
    return cls(words=np.asarray(dataset.word_vectors, np.float32),
               num_users=dataset.spec.num_users, **hyperparameters)

  @property
  def inputs(self) -> tuple[str, ...]:
    fields = ("features", "seq_mask")
    if self.user != "none":
      fields += ("tag_ids", "tag_mask")
    if self.user_meta:
      fields += ("user_meta",)
    if self.user_embedding:
      fields += ("user_index", "user_train_posts")
    return fields + ("in_train",) if self.history == "train" else fields

  @property
  def label(self) -> str:
    known = [name for name, on in (("metadata", self.user_meta),
                                   ("embedding", self.user_embedding)) if on]
    if known:
      base = ["history"] if self.user == "gru" else []
      return f"User tower: {' + '.join(base + known)}"
    if self.user != "gru":
      return {"used": "[C] used hashtags", "occurrences": "[D] hashtag occurrences",
              "word_sum": "[E] hashtag sum", "none": "[B] user agnostic"}[self.user]
    label = "Ours (hashtag)" if self.fusion == "tags" else "Ours (image+hashtag)"
    if self.fusion not in ("tags", "product"):
      label = f"Ours ({self.fusion} fusion)"
    label += " w/o word vectors" if self.word_vectors == "learned" else ""
    return label + (", fixed history" if self.history == "train" else "")

  def module(self) -> nn.Module:
    return _Durand(self.words, self.word_vectors == "learned", self.user, self.fusion,
                   self.post_dim, self.user_dim, self.image_dim, self.fused_dim, self.joint_dim,
                   self.tag_hidden, self.mutan_rank, self.history == "train", self.user_meta,
                   self.num_users if self.user_embedding else 0, self.embedding_drop)

  def report_columns(self) -> dict[str, Any]:
    user = "+".join([self.user] + ["meta"] * self.user_meta + ["embedding"] * self.user_embedding)
    return {"user": user, "fusion": self.fusion if self.user == "gru" else "-",
            "d_u": self.user_dim if self.user == "gru" or user != self.user else "-",
            "words": self.word_vectors}

  # -- open vocabulary and streaming -----------------------------------------------------------

  def embed_words(self, variables, word_vectors) -> jax.Array:
    """phi_tag(psi) for word vectors [N, w] of any hashtags, in or out of the vocabulary."""
    return self.apply_eval(variables, "embed_words", {"word_vectors": word_vectors})

  def tags_for(self, variables, ids) -> jax.Array:
    """tags(variables)[ids] [..., d], the tag tower applied to psi[ids] only."""
    return self.module().apply(variables, ids, method="tag_rows")

  def final_state(self, variables, batch) -> jax.Array:
    self._check_streaming()
    return self.apply_eval(variables, "final_state", batch)

  def next_state(self, variables, state, post) -> jax.Array:
    self._check_streaming()
    return self.apply_eval(variables, "next_state", {**post, "state": state})

  def query_from_state(self, variables, state, features) -> jax.Array:
    if self.user_meta or self.user_embedding:
      raise ValueError("query_from_state takes the GRU state alone; this user tower also reads "
                       "metadata / an embedding (use query on the user's sequence)")
    return self.apply_eval(variables, "query_from_state", {"features": features,
                                                           "state": state})

  def _check_streaming(self):
    if self.user != "gru":
      raise ValueError(f"streaming user states are the GRU's; this model's user is {self.user!r}")
