"""A synthetic photo-sharing world with planted structure and a known oracle.

hashjax runs without downloads, so its default data is generated. The generator plants exactly
the effects the papers measure, and knows the true p(hashtag | post), so every experiment can be
read against a ceiling.

The generative story of one post by user u (demographics, style group g(u), topic preferences
theta_u; see users.py), at time t:

  1. latent: k in {1, 2, 3} concepts drawn without replacement from theta_u, weights
     w ~ Dirichlet(1), sorted so the first concept dominates;
  2. image: x = normalise(relu(prototypes mixed by w + shared + nuisance + noise)), see
     params.py; with second_view_dim > 0, [x, x'] with x' the same latent through a second
     set of prototypes (a second network's view);
  3. hashtags: 1 + Poisson(mean_extra_tags) distinct tags (capped) drawn without replacement from

       p(y | u, c, w) = [ 1 * sum_j w_j P[g(u), c_j, y]                      concept synonyms + tail
                        + r_loc(u)  (b_loc + sum_j w_j loc_{c_j})  L_u(y)      home city / country
                        + r_soc(u)  (b_soc + sum_j w_j soc_{c_j})  S_u(y)      age/gender sentiment
                        + r_gen(u)  G_u(y) ] / Z                               #tbt-like habits

     where P is the style-dependent table of vocab.py (self-expression, polysemy), L_u
     puts `city_share` on the user's city tag and the rest on their country tag, S_u is the
     softmax of the social tag profiles at the user's age and gender (Denton Table 6) and G_u is
     the user's own mix of generic tags, drawn around the habits of their age and gender.
     Drawing without replacement = Gumbel-top-k on log p;
  4. caption: a few tokens naming the post's concepts, mixed with filler words.

`World.true_tag_distribution` evaluates p(y | post) with the very code the sampler uses, from the
post's recorded latent (concept ids and weights); ranking by it is the oracle.
`World.mixture_distribution` mixes it over users, sum_u pi(u) p(y | post, u), in matmuls over the
users (mixture.py; the oracles that do not know the poster, hashjax.eval.oracles), and
`World.concept_log_likelihood` is log P(c_1..c_k | theta) of step 1, the evidence a latent gives
about who drew it.

Timestamps are integer seconds since the Unix epoch, starting at TIME_EPOCH (2014-01-01 UTC). Each
user starts at their own time within the span and posts with exponential gaps of at least one
second, so a user's timestamps strictly increase and different users interleave.

Tag ids: the world keeps fixed internal (canonical) ids and shows a public numbering
(`tag_order[public] = canonical`). Sampling always happens in canonical ids and is mapped at the
end, so renumbering (reorder_tags) changes no random draw: the same posts come out, relabelled.
"""

import dataclasses
import json
import os

import numpy as np

from hashjax.data.synthetic import mixture
from hashjax.data.synthetic import params as sp
from hashjax.data.synthetic import users as su
from hashjax.data.synthetic import vocab as sv

MAX_CONCEPTS = 3
TIME_EPOCH = 1_388_534_400  # 2014-01-01T00:00:00Z, in Unix seconds
FORMAT_VERSION = 2  # 2: tag tables per (style group, country), [G * 5, C, K]
_CHUNK = 1024  # posts per sampling step: bounds memory for users with many posts


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Every knob of the world. Defaults are the 'default' preset."""
  num_users: int = 2500
  feature_dim: int = 256
  num_concepts: int = 48
  num_tags: int = 1500  # total vocabulary, all kinds together
  num_groups: int = 8  # latent style groups
  group_metadata_strength: float = 3.0  # how well age/gender/country predict the style group
  word_vector_dim: int = 50
  # Users.
  mean_posts_per_user: float = 20.0
  posts_per_user_sigma: float = 1.0  # lognormal shape: the heavy tail of activity
  max_posts_per_user: int = 400
  min_posts_per_user: int = 1  # Durand et al. keep users with at least 50 posts
  cities_per_country: int = 6
  time_span_days: float = 730.0
  topic_concentration: float = 6.0  # kappa: larger = users photograph more varied things
  group_topic_share: float = 0.5  # lambda: how much of a user's taste comes from their group
  group_topic_alpha: float = 0.3  # sparsity of group tastes
  concept_zipf: float = 0.5
  # Images.
  concept_count_probs: tuple = (0.5, 0.35, 0.15)  # P(k = 1, 2, 3 concepts)
  feature_common: float = 0.5  # weight of the direction all images share
  feature_nuisance: float = 1.0  # scale of concept-independent nuisance directions
  feature_noise: float = 2.5  # norm of the isotropic noise (per dimension: / sqrt(D))
  # A second view of every image (HARRISON's object + scene features: two networks looking at
  # one photo): this many more columns, the same latent concepts rendered through prototypes,
  # nuisance and noise of its own, drawn from separate random streams (so a world without it
  # is unchanged). 0: one view.
  second_view_dim: int = 0
  # Hashtags.
  synonyms_per_concept: int = 4
  num_polysemous: int = 8
  polysemy_by: str = "group"  # who decides a polysemous tag's meaning: "group" or "country"
  num_social: int = 30
  num_generic: int = 20
  synonym_zipf: float = 0.5
  style_strength: float = 1.5  # how strongly a style group prefers its synonyms
  synonym_share: float = 0.7  # rest of a concept's mass goes to its tail tags
  tail_zipf: float = 1.0
  tail_style: float = 0.7  # group dependence of tail tags (weaker than of synonyms)
  # Context kinds: r_kind(u) = weight * a per-user draw, relative to the image kind's weight 1.
  location_weight: float = 0.2
  location_base: float = 0.3  # location mass on images of non-scene concepts (vs 1 for scenes)
  city_share: float = 0.7  # of location mass on the city tag; the rest on the country tag
  social_weight: float = 0.15
  social_zipf: float = 0.7  # baseline popularity of the social tags
  social_base: float = 0.3
  generic_weight: float = 0.6
  generic_zipf: float = 1.0  # baseline popularity of the generic tags (#tbt is everywhere)
  generic_concentration: float = 3.0  # how closely a user's generic mix follows their age/gender
  mean_extra_tags: float = 1.7  # tags per post = 1 + Poisson(this), capped
  max_tags_per_post: int = 12
  # An open vocabulary (Durand et al.): this share of the hashtags, drawn uniformly, is removed
  # from every training post (a post left without hashtags is not written), so those hashtags
  # appear only in val / test. The world and the val / test posts are unchanged: the oracle
  # still knows their true distribution. Applied by the builder (build.py), not the world.
  held_out_tag_share: float = 0.0
  # Captions.
  caption_vocab_size: int = 1000
  caption_words_per_concept: int = 6
  caption_length: int = 8
  caption_concept_share: float = 0.5

  def validate(self) -> "WorldConfig":
    """Raises ValueError naming the first field the generator cannot draw from; returns self.

    Every int field is a size or a count with a minimum (_AT_LEAST); every float is a finite,
    non-negative scale, strictly positive where it divides or is a log argument (_POSITIVE), a
    share of 1 for _FRACTIONS. Without this a zero size fails deep inside numpy, or not at all
    (an empty world writes an empty dataset).
    """
    for field in dataclasses.fields(self):
      _check_field(field.name, getattr(self, field.name))
    probs = self.concept_count_probs
    if (len(probs) != MAX_CONCEPTS or not all(np.isfinite(p) and p >= 0 for p in probs)
        or abs(sum(probs) - 1.0) > 1e-6):
      raise ValueError(f"WorldConfig.concept_count_probs must be {MAX_CONCEPTS} probabilities "
                       f"(of 1..{MAX_CONCEPTS} concepts per image) summing to 1, got {probs!r}")
    if self.held_out_tag_share >= 1:
      raise ValueError("WorldConfig.held_out_tag_share must be < 1 (some hashtags must be "
                       f"trained), got {self.held_out_tag_share!r}")
    if self.min_posts_per_user > self.max_posts_per_user:
      raise ValueError(f"WorldConfig.min_posts_per_user={self.min_posts_per_user} exceeds "
                       f"max_posts_per_user={self.max_posts_per_user}")
    if self.polysemy_by not in ("group", "country"):
      raise ValueError(f"WorldConfig.polysemy_by must be 'group' or 'country', "
                       f"got {self.polysemy_by!r}")
    sv.vocab_layout(self)  # num_tags must hold every kind of tag (its message names num_tags)
    concept_words = self.num_concepts * self.caption_words_per_concept
    if self.caption_vocab_size <= concept_words:  # room for at least one filler word
      raise ValueError(f"WorldConfig.caption_vocab_size={self.caption_vocab_size} must exceed "
                       f"num_concepts * caption_words_per_concept = {concept_words}")
    return self


# The smallest value of each int field the generator can draw from. num_concepts: an image draws
# up to MAX_CONCEPTS distinct concepts; every tag kind needs at least one tag.
_AT_LEAST = {"num_users": 1, "feature_dim": 1, "num_concepts": MAX_CONCEPTS, "num_tags": 1,
             "num_groups": 1, "word_vector_dim": 1, "max_posts_per_user": 1,
             "min_posts_per_user": 1,
             "cities_per_country": 1, "synonyms_per_concept": 1, "num_polysemous": 1,
             "num_social": 1, "num_generic": 1, "max_tags_per_post": 1, "caption_vocab_size": 1,
             "caption_words_per_concept": 1, "caption_length": 1, "second_view_dim": 0}
_POSITIVE = ("mean_posts_per_user", "time_span_days", "topic_concentration", "group_topic_alpha",
             "generic_concentration")
_FRACTIONS = ("group_topic_share", "synonym_share", "city_share", "caption_concept_share",
              "held_out_tag_share")


def _check_field(name, value):
  """One WorldConfig field against its kind's range (see WorldConfig.validate)."""
  default = WorldConfig.__dataclass_fields__[name].default
  if isinstance(default, int):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"WorldConfig.{name} must be an integer, got {value!r}")
    if value < _AT_LEAST[name]:
      raise ValueError(f"WorldConfig.{name} must be >= {_AT_LEAST[name]}, got {value!r}")
  elif isinstance(default, float):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
      raise ValueError(f"WorldConfig.{name} must be a number, got {value!r}")
    low = "> 0" if name in _POSITIVE else ">= 0"
    if not np.isfinite(value) or value < 0 or (value == 0 and name in _POSITIVE):
      raise ValueError(f"WorldConfig.{name} must be finite and {low}, got {value!r}")
    if name in _FRACTIONS and value > 1:
      raise ValueError(f"WorldConfig.{name} is a share and must be <= 1, got {value!r}")


PRESETS = {
    "tiny": WorldConfig(num_users=100, feature_dim=32, num_concepts=10, num_tags=150, num_groups=4,
                        mean_posts_per_user=10.0, max_posts_per_user=60,
                        cities_per_country=2, synonyms_per_concept=3, num_polysemous=3,
                        num_social=8, num_generic=6, caption_vocab_size=80,
                        caption_words_per_concept=3, caption_length=5, feature_noise=0.5,
                        feature_nuisance=0.5),
    "default": WorldConfig(),
    # The default world seen by two networks (HARRISON's object and scene views): 256 + 128.
    "two_views": WorldConfig(second_view_dim=128),
    # Shaped like Durand et al.'s YFCC100M subset: users with 100-200 posts, none under 50.
    "durand": WorldConfig(num_users=1000, mean_posts_per_user=110.0, posts_per_user_sigma=0.4,
                          min_posts_per_user=50, max_posts_per_user=200),
    # The same world with a fifth of its hashtags unseen in training (the paper's test set has
    # ~22% of its vocabulary unseen).
    "durand_open": WorldConfig(num_users=1000, mean_posts_per_user=110.0,
                               posts_per_user_sigma=0.4, min_posts_per_user=50,
                               max_posts_per_user=200, held_out_tag_share=0.2),
    "paper": WorldConfig(num_users=50_000, feature_dim=4096, num_concepts=200, num_tags=10_000,
                         num_groups=12, mean_posts_per_user=24.0, max_posts_per_user=1000,
                         cities_per_country=20, synonyms_per_concept=5, num_polysemous=30,
                         num_social=80, num_generic=60, caption_vocab_size=5000,
                         caption_words_per_concept=10, concept_zipf=0.3, social_weight=0.1,
                         social_zipf=0.5, generic_weight=0.4, generic_zipf=0.5),
}


class World(mixture.UserMixtures):
  """The world's parameters plus the generator and the oracle (see the module docstring)."""

  def __init__(self, config, seed, params, tag_order, group_topics=None):
    self.config, self.seed = config, int(seed)
    self._params = params
    self._group_topics = group_topics  # not saved; replayed from the seed when needed
    self._terms = None  # _user_terms of the last users mixed over
    self._tag_order = np.asarray(tag_order, np.int64)
    self._canon_to_public = np.argsort(self._tag_order)
    counts = sv.vocab_layout(config)
    self._start = sv.layout_kinds(counts)[1]

  @classmethod
  def create(cls, config, seed):
    params, order = sp.build_params(config, seed)
    group_topics = params.pop("group_topics")  # kept out of the saved world (format unchanged)
    return cls(config, seed, params, order, group_topics)

  # --- Tag-indexed views, in public ids. ---------------------------------------------------
  @property
  def feature_views(self):
    """((name, width), ...) of the features: one view, or "object" and "scene" (the
    second_view_dim columns), HARRISON's names."""
    if not self.config.second_view_dim:
      return ()
    return (("object", self.config.feature_dim), ("scene", self.config.second_view_dim))

  @property
  def feature_dim(self):
    return self.config.feature_dim + self.config.second_view_dim

  @property
  def num_tags(self):
    return len(self._tag_order)

  @property
  def tag_order(self):
    """tag_order[public id] = canonical id."""
    return self._tag_order.copy()

  @property
  def tag_strings(self):
    return [str(s) for s in self._params["tag_strings"][self._tag_order]]

  @property
  def word_vectors(self):
    return self._params["word_vectors"][self._tag_order]

  @property
  def tag_kinds(self):
    return self._params["tag_kinds"][self._tag_order]

  @property
  def tag_concepts(self):
    """[V, 2] int32: the concept(s) a tag is about (-1: none; column 1: a polysemous tag's 2nd)."""
    return self._params["tag_concepts"][self._tag_order]

  @property
  def caption_vocab(self):
    return [str(s) for s in self._params["caption_strings"]]

  @property
  def users(self):
    """Per-user arrays: age, gender, country, city, lat, lon, group, num_posts, topic, ..."""
    return {k[5:]: v for k, v in self._params.items() if k.startswith("user_")}

  @property
  def params(self):
    """All arrays (canonical tag ids). Treat as read-only: worlds share them."""
    return self._params

  def user_meta(self, user_ids):
    """Denton's 10-d user descriptor, float32 [B, 10] (see users.user_meta)."""
    return su.user_meta(self._params, user_ids)

  @property
  def group_topics(self):
    """[G, C] float64: each style group's taste m_g (users.make_users).

    Not part of the saved world (its format predates it): a loaded world replays the parameter
    draws of its seed once (about 4 s for the paper preset) and checks they give its users.
    """
    if self._group_topics is None:
      params, _ = sp.build_params(self.config, self.seed)
      if not np.array_equal(params["user_topic"], self._params["user_topic"]):
        raise ValueError("replaying this world's seed does not give its users: it was built by "
                         "another version of the generator")
      self._group_topics = params["group_topics"]
    return self._group_topics

  # --- The true hashtag distribution. ------------------------------------------------------
  def _components(self, user_ids, concept_ids, concept_weights):
    """Unmerged sparse p(y | post): canonical ids [B, L] and probabilities [B, L] (may repeat)."""
    p, cfg, start = self._params, self.config, self._start
    u = np.asarray(user_ids, np.int64).reshape(-1)
    c, w = self._latents(concept_ids, concept_weights, len(u))
    c = np.maximum(c, 0)
    g = sv.table_row(p["user_group"][u], p["user_country"][u], len(su.COUNTRIES))[:, None]
    img_ids = p["concept_table_ids"][g, c].reshape(len(u), -1)
    img = (p["concept_table_probs"][g, c] * w[..., None]).reshape(len(u), -1)
    # Mixture weights of the context kinds; the image kind has weight 1.
    scene, people = self._context_strength(c, w)
    r_loc = p["user_location_propensity"][u] * scene
    r_soc = p["user_social_propensity"][u] * people
    r_gen = p["user_generic_propensity"][u]
    z = 1.0 + r_loc + r_soc + r_gen
    loc_ids = np.stack([start["city"] + p["user_city"][u],
                        start["country"] + p["user_country"][u]], axis=1)
    loc = np.broadcast_to([cfg.city_share, 1 - cfg.city_share], (len(u), 2))
    soc_ids = np.broadcast_to(start["social"] + np.arange(cfg.num_social), (len(u), cfg.num_social))
    gen_ids = np.broadcast_to(start["generic"] + np.arange(cfg.num_generic),
                              (len(u), cfg.num_generic))
    ids = np.concatenate([img_ids, loc_ids, soc_ids, gen_ids], axis=1)
    social = sv.demographic_mix(p, "social", p["user_age"][u], p["user_gender"][u])
    probs = np.concatenate([img, r_loc[:, None] * loc, r_soc[:, None] * social,
                            r_gen[:, None] * p["user_generic_mix"][u]], axis=1)
    return ids, probs / z[:, None]

  def _latents(self, concept_ids, concept_weights, n):
    """Concept ids [n, k] (-1: none) and their weights, float64, renormalised (0 where none)."""
    c = np.asarray(concept_ids, np.int64).reshape(n, -1)
    w = np.where(c >= 0, np.asarray(concept_weights, np.float64).reshape(c.shape), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    return c, w

  def _context_strength(self, c, w):
    """How much a post's image invites location and social tags: (scene, people), [B] each."""
    p, cfg = self._params, self.config
    scene = cfg.location_base + (w * p["concept_locality"][c]).sum(1)
    people = cfg.social_base + (w * p["concept_sociality"][c]).sum(1)
    return scene, people

  @staticmethod
  def concept_log_likelihood(topics, concept_ids):
    """log P(c_1..c_k | theta) [B, U] of the ordered concept draw of _sample_latents.

    Gumbel-top-k on log theta draws without replacement, in order, as Plackett-Luce:
    P = prod_j theta_{c_j} / (sum(theta) - sum_{i<j} theta_{c_i}). topics [U, C] (each user's
    theta, or any positive weights); concept_ids [B, k], -1 padding. The number of concepts
    and their weights are drawn independently of the user, so they add nothing here.
    """
    return mixture.ConceptLikelihood(topics)(concept_ids)

  def _merged(self, user_ids, concept_ids, concept_weights):
    """p(y | post) as sorted, de-duplicated (row, canonical tag, probability) triples, p > 0."""
    ids, probs = self._components(user_ids, concept_ids, concept_weights)
    V = self.num_tags
    keys = (np.arange(ids.shape[0])[:, None] * V + ids).ravel()
    probs = probs.ravel()
    keep = probs > 0
    uniq, inv = np.unique(keys[keep], return_inverse=True)
    return uniq // V, uniq % V, np.bincount(inv, weights=probs[keep])

  def true_tag_distribution(self, user_ids, concept_ids, concept_weights):
    """p(y | post) for a batch of post latents: float32 [B, V] in public ids, rows sum to 1."""
    rows, tags, probs = self._merged(user_ids, concept_ids, concept_weights)
    B = len(np.asarray(user_ids).reshape(-1))
    out = np.zeros((B, self.num_tags), np.float32)
    out[rows, self._canon_to_public[tags]] = probs / np.bincount(rows, probs, minlength=B)[rows]
    return out

  def sample_tags(self, rng, user_ids, concept_ids, concept_weights, num_tags=None):
    """The hashtags of a batch of posts: lists of distinct public ids, in draw order.

    This is the sampler generate_user_posts uses; tests call it to check it against p.

    num_tags defaults to 1 + Poisson(mean_extra_tags), capped by max_tags_per_post and by the
    support of p. Successive draws without replacement are taken at once by Gumbel-top-k: the
    n largest of log p(y) + Gumbel noise are distributed as n sequential draws that renormalise
    p after each one.
    """
    B = len(np.asarray(user_ids).reshape(-1))
    if num_tags is None:
      num_tags = np.minimum(1 + rng.poisson(self.config.mean_extra_tags, B),
                            self.config.max_tags_per_post)
    rows, tags, probs = self._merged(user_ids, concept_ids, concept_weights)
    keys = np.log(probs) + rng.gumbel(size=probs.shape)
    order = np.lexsort((-keys, rows))  # rows stay grouped, best key first within a row
    rows, tags = rows[order], tags[order]
    support = np.bincount(rows, minlength=B)
    rank = np.arange(len(rows)) - np.concatenate([[0], np.cumsum(support)[:-1]])[rows]
    keep = rank < np.minimum(np.broadcast_to(num_tags, (B,)), support)[rows]
    public = self._canon_to_public[tags[keep]].astype(np.int32)
    return np.split(public, np.cumsum(np.bincount(rows[keep], minlength=B))[:-1])

  # --- Posts. --------------------------------------------------------------------------------
  def _sample_latents(self, rng, user_id, n):
    """k ~ concept_count_probs concepts drawn from theta_u (Gumbel-top-k), Dirichlet(1) weights."""
    k = 1 + rng.choice(MAX_CONCEPTS, size=n, p=self.config.concept_count_probs)
    theta = self._params["user_topic"][user_id].astype(np.float64)
    top = np.argsort(-(np.log(theta) + rng.gumbel(size=(n, len(theta)))), axis=1)[:, :MAX_CONCEPTS]
    present = np.arange(MAX_CONCEPTS)[None] < k[:, None]
    w = np.where(present, rng.exponential(size=(n, MAX_CONCEPTS)), 0.0)
    w = -np.sort(-(w / w.sum(axis=1, keepdims=True)), axis=1)
    return np.where(present, top, -1).astype(np.int32), w.astype(np.float32)

  def _post_rng(self, user_id):
    return np.random.default_rng([self.seed, 1, int(user_id)])

  def generate_user_posts(self, user_id):
    """All posts of one user, sorted by time; a pure function of (world, seed, user_id)."""
    rng = self._post_rng(user_id)
    p, u = self._params, int(user_id)
    n = int(p["user_num_posts"][u])
    gaps = 1 + np.floor(rng.exponential(p["user_mean_gap"][u], n)).astype(np.int64)
    timestamp = TIME_EPOCH + p["user_start_time"][u] + np.cumsum(gaps)
    concept_ids, concept_weights = self._sample_latents(rng, u, n)
    features = sp.make_features(rng, p, self.config, concept_ids, concept_weights)
    if self.config.second_view_dim:
      second = sp.make_features(np.random.default_rng([self.seed, 3, u]),
                                sp.second_view(p), sp.second_view_config(self.config),
                                concept_ids, concept_weights)
      features = np.concatenate([features, second], axis=1)
    tags = []
    for s in range(0, n, _CHUNK):
      sl = slice(s, s + _CHUNK)
      tags += self.sample_tags(rng, np.full(len(concept_ids[sl]), u), concept_ids[sl],
                               concept_weights[sl])
    captions = sp.make_captions(rng, p, self.config, concept_ids, concept_weights)
    return {"timestamp": timestamp, "features": features, "tags": tags, "captions": captions,
            "concept_ids": concept_ids, "concept_weights": concept_weights}

  # --- Renumbering and persistence. ---------------------------------------------------------
  def reorder_tags(self, order):
    """A world whose public tag id `new` is this world's tag `order[new]` (same draws)."""
    order = np.asarray(order, np.int64)
    V = self.num_tags
    if order.shape != (V,) or not np.array_equal(np.sort(order), np.arange(V)):
      raise ValueError("order must be a permutation of range(num_tags)")
    return World(self.config, self.seed, self._params, self._tag_order[order],
                 self._group_topics)

  def save(self, directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "world.json"), "w") as f:
      json.dump({"format_version": FORMAT_VERSION, "seed": self.seed,
                 "config": dataclasses.asdict(self.config)}, f, indent=1)
    np.savez(os.path.join(directory, "world.npz"), tag_order=self._tag_order, **self._params)

  @classmethod
  def load(cls, directory):
    with open(os.path.join(directory, "world.json")) as f:
      meta = json.load(f)
    if meta["format_version"] != FORMAT_VERSION:
      raise ValueError(f"{directory}: world format {meta['format_version']}, this code reads "
                       f"{FORMAT_VERSION}; rebuild the dataset with this version of hashjax")
    config = meta["config"]
    config["concept_count_probs"] = tuple(config["concept_count_probs"])
    with np.load(os.path.join(directory, "world.npz")) as z:
      params = {k: z[k] for k in z.files}
    return cls(WorldConfig(**config), meta["seed"], params, params.pop("tag_order"))

