r"""#okboomer (Tambwekar & Dharur 2020): a hashtag sequence generated from an image and a caption.

The one generator among the models: it writes the hashtags one after another instead of
scoring a vocabulary. With v the image features, w_1..w_L the caption's tokens and
y_1..y_T the post's hashtags (T <= max_len, in the order the post has them), then END:

    image    z = BN(W_im v + b)                                batch norm, momentum 0.01
    encoder  (h_0, c_0) = LSTM_enc(E_cap[w_1], ..., E_cap[w_L])  the final state (masked:
             padded caption positions leave it unchanged; an empty caption gives zeros)
    decoder  (h_t, c_t) = LSTM_dec([E_tag[x_t], z], (h_{t-1}, c_{t-1}))
             p(. | y_<t, v, w) = softmax(W_out h_t + b_out)    over the Y hashtags and END
    inputs   x_1 = START; in training x_t = y_{t-1} with probability teacher_forcing (one draw
             per time step for the whole batch, as the authors' code does), else the argmax of
             the previous step's output; in inference the previous output
    loss     cross-entropy of y_1..y_T, END, averaged over those tokens (all posts' tokens
             pooled, PyTorch's CrossEntropyLoss with padding ignored)

Token ids: hashtags 0..Y-1, END = Y (an output), START = Y + 1 (an input only). Weights are
Xavier-uniform initialised. Decoding is greedy or beam search (hashjax.models.decoding); the
generated set, duplicates dropped in order, is the model's ranked list for the P@k / R@k / A@k
tables (`generate_top_k`), so it is evaluated like every other model.

Parts: "image" (W_im), "image_bn", "caption" (E_cap, LSTM_enc), "decoder" (E_tag, LSTM_dec,
W_out).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from hashjax.models import decoding

XAVIER = nn.initializers.xavier_uniform()


def _lstm(hidden: int, name: str) -> nn.OptimizedLSTMCell:
  return nn.OptimizedLSTMCell(hidden, kernel_init=XAVIER, recurrent_kernel_init=XAVIER,
                              name=name)


class _MaskedStep(nn.Module):
  """One encoder step: the LSTM's new state where mask_t, the old one elsewhere."""
  hidden: int

  @nn.compact
  def __call__(self, carry, xs):
    x, mask = xs
    new, _ = _lstm(self.hidden, "lstm")(carry, x)
    return jax.tree.map(lambda n, o: jnp.where(mask[:, None], n, o), new, carry), None


class CaptionEncoder(nn.Module):
  """(h_0, c_0) of the decoder: the LSTM's final state over the caption's valid tokens."""
  vocab_size: int
  embed_dim: int
  hidden: int

  @nn.compact
  def __call__(self, caption_ids, caption_mask):
    x = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=XAVIER, name="embed")(
        jnp.clip(caption_ids, 0, self.vocab_size - 1))
    carry = (jnp.zeros((x.shape[0], self.hidden)), jnp.zeros((x.shape[0], self.hidden)))
    scan = nn.scan(_MaskedStep, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    carry, _ = scan(self.hidden, name="encoder")(carry, (x, caption_mask))
    return carry


class DecoderStep(nn.Module):
  """One decoder step: (carry, token [B], image z [B, d]) -> (carry, logits [B, Y + 1])."""
  num_tags: int
  embed_dim: int
  hidden: int

  @nn.compact
  def __call__(self, carry, token, z):
    embed = nn.Embed(self.num_tags + 2, self.embed_dim, embedding_init=XAVIER, name="embed")
    carry, h = _lstm(self.hidden, "lstm")(carry, jnp.concatenate([embed(token), z], -1))
    return carry, nn.Dense(self.num_tags + 1, kernel_init=XAVIER, name="out")(h)


class _TeacherForcedStep(nn.Module):
  """DecoderStep in a scan: the input is the truth or the previous argmax (module docstring)."""
  num_tags: int
  embed_dim: int
  hidden: int

  @nn.compact
  def __call__(self, carry, xs):
    state, previous_output, z = carry
    truth, use_truth = xs
    token = jnp.where(use_truth, truth, previous_output)
    state, logits = DecoderStep(self.num_tags, self.embed_dim, self.hidden, name="step")(
        state, token, z)
    return (state, jnp.argmax(logits, -1).astype(jnp.int32), z), logits


class _Generator(nn.Module):
  num_tags: int
  caption_vocab: int
  image_dim: int
  embed_dim: int
  hidden: int

  def setup(self):
    self.image = nn.Dense(self.image_dim, kernel_init=XAVIER)
    # torch's momentum 0.01 (the weight of the new batch) is flax's 0.99
    self.image_bn = nn.BatchNorm(momentum=0.99, epsilon=1e-5)
    self.caption = CaptionEncoder(self.caption_vocab, self.embed_dim, self.hidden)
    self.decoder = nn.scan(_TeacherForcedStep, variable_broadcast="params",
                           split_rngs={"params": False}, in_axes=0, out_axes=1)(
                               self.num_tags, self.embed_dim, self.hidden)

  def encode(self, batch, train: bool):
    z = self.image_bn(self.image(batch["features"]), use_running_average=not train)
    return self.caption(batch["caption_ids"], batch["caption_mask"]), z

  def __call__(self, batch, inputs, use_truth, train: bool = False):
    """Logits [B, T, Y + 1] of the decoder fed `inputs` [B, T] where use_truth [T]."""
    state, z = self.encode(batch, train)
    start = jnp.full(inputs.shape[:1], self.num_tags + 1, jnp.int32)
    _, logits = self.decoder((state, start, z), (inputs.T, use_truth))
    return logits


@dataclasses.dataclass(frozen=True)
class HashtagGenerator:
  """#okboomer's encoder-decoder (module docstring). Attributes: the vocabulary sizes (from the
  dataset), image_dim, embed_dim, hidden, max_len (hashtags generated at most), teacher
  forcing ratio, beam (1: greedy)."""
  num_tags: int
  caption_vocab: int
  image_dim: int = 256
  embed_dim: int = 300
  hidden: int = 512
  max_len: int = 20
  teacher_forcing: float = 0.5
  beam: int = 1
  name: ClassVar[str] = "okboomer"
  label: ClassVar[str] = "#okboomer (image + caption LSTM)"
  inputs: ClassVar[tuple[str, ...]] = ("features", "caption_ids", "caption_mask")
  layout: ClassVar[str] = "posts"

  def __post_init__(self):
    if not 0.0 <= self.teacher_forcing <= 1.0:
      raise ValueError(f"teacher_forcing is a probability, got {self.teacher_forcing}")
    if self.max_len < 1 or self.beam < 1:
      raise ValueError(f"max_len and beam must be >= 1, got {self.max_len}, {self.beam}")

  @classmethod
  def from_spec(cls, spec, **hyperparameters):
    if spec.caption_vocab_size < 1:
      raise ValueError("#okboomer reads captions: the dataset has none")
    return cls(num_tags=spec.num_tags, caption_vocab=spec.caption_vocab_size,
               **hyperparameters)

  @property
  def end(self) -> int:
    return self.num_tags

  @property
  def start(self) -> int:
    return self.num_tags + 1

  def module(self) -> _Generator:
    return _Generator(self.num_tags, self.caption_vocab, self.image_dim, self.embed_dim,
                      self.hidden)

  def targets(self, batch) -> tuple[jax.Array, jax.Array]:
    """(tokens [B, max_len + 1]: the first max_len hashtags then END, mask of the real
    tokens); a post's hashtags are its tag slots in order. A post without hashtags (a batch's
    padding) has no real token."""
    ids, mask = batch["tag_ids"][:, :self.max_len], batch["tag_mask"][:, :self.max_len]
    width = self.max_len + 1
    pad = width - ids.shape[1]
    ids = jnp.pad(jnp.where(mask, ids, 0), ((0, 0), (0, pad)))
    mask = jnp.pad(mask, ((0, 0), (0, pad)))
    lengths = mask.sum(axis=1)
    position = jnp.arange(width)[None]
    tokens = jnp.where(position == lengths[:, None], self.end, ids)
    real = (mask | (position == lengths[:, None])) & (lengths > 0)[:, None]
    return tokens.astype(jnp.int32), real

  def teacher_inputs(self, tokens: jax.Array) -> jax.Array:
    """The decoder's true inputs [B, T]: START, then the targets shifted by one."""
    return jnp.concatenate([jnp.full_like(tokens[:, :1], self.start), tokens[:, :-1]], 1)

  def init(self, rng, spec) -> dict[str, Any]:
    batch = {k: jnp.asarray(v) for k, v in spec.example_batch(self.inputs, batch_size=2).items()}
    inputs = jnp.zeros((2, self.max_len + 1), jnp.int32)
    return dict(self.module().init(rng, batch, inputs, jnp.ones(self.max_len + 1, bool)))

  def train_logits(self, variables, batch, rng):
    """(logits [B, T, Y + 1], targets [B, T], mask [B, T], state updates) under teacher
    forcing: one Bernoulli(teacher_forcing) draw per step for the batch."""
    tokens, mask = self.targets(batch)
    inputs = self.teacher_inputs(tokens)
    use_truth = jax.random.bernoulli(rng, self.teacher_forcing, (tokens.shape[1],))
    logits, updates = self.module().apply(variables, batch, inputs, use_truth, train=True,
                                          mutable=["batch_stats"])
    return logits, tokens, mask, dict(updates)

  def eval_logits(self, variables, batch):
    """The inference-mode logits under full teacher forcing (the validation loss)."""
    tokens, mask = self.targets(batch)
    logits = self.module().apply(variables, batch, self.teacher_inputs(tokens),
                                 jnp.ones(tokens.shape[1], bool))
    return logits, tokens, mask

  def generate(self, variables, batch, beam: int | None = None) -> jax.Array:
    """int32 [B, max_len]: the generated tokens (hashtag ids, END once, then -1)."""
    beam = beam or self.beam
    params = variables["params"]
    state, z = self.module().apply(variables, batch, False, method=_Generator.encode)
    step_module = DecoderStep(self.num_tags, self.embed_dim, self.hidden)
    step_params = {"params": params["decoder"]["step"]}

    def step_fn(carry, token):
      (c, h), z_ = carry
      (c, h), logits = step_module.apply(step_params, (c, h), token, z_)
      return jax.nn.log_softmax(logits), ((c, h), z_)

    start = jnp.full(z.shape[:1], self.start, jnp.int32)
    if beam == 1:
      return decoding.greedy(step_fn, (state, z), start, max_len=self.max_len, end=self.end)
    tokens, _ = decoding.beam_search(step_fn, (state, z), start, max_len=self.max_len,
                                     end=self.end, beam=beam)
    return tokens

  def project(self, params):
    return params

  def report_columns(self) -> dict[str, Any]:
    return {"hidden": self.hidden, "beam": self.beam}

