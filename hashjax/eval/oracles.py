"""The synthetic oracle and its diagnostics: ranking by the generator's true p(y | post).

Only synthetic datasets have one: the world is saved beside the data (DIR/world/), with each
post's latent concepts (ids and weights), so the true hashtag distribution of every post can be
recomputed. Every row here knows the latent; they differ in what they know of the poster:

  Oracle (true distribution)  the poster:                 p(y | c, w, u)
  Oracle, user swapped        another, fixed random user: p(y | c, w, u')
  Oracle, image only          nothing:                    sum_u pi(u | c) p(y | c, w, u)
  Oracle, metadata only       the poster's metadata:      E[p(y | c, w, v) | v has u's metadata, c]

On the balanced distribution (`keep`, hashjax.data.tag_distribution) the test truth is thinned:
an occurrence of y survives with probability keep(y), independently of everything else, so each
row ranks by its p(y) x keep(y). That is the ceiling up to one approximation: the exact P@1
ceiling ranks by P(y in the drawn set) x keep(y), and the inclusion probability of a draw
without replacement is monotone in p(y) but not proportional to it. Measured by Monte Carlo
(World.sample_tags, default world, seed 0, 2,000 test posts), that ranking gains 0.15 +- 0.02
P@1 over p x keep on balanced data, for the true and the image-only distribution alike; on
natural data ranking by p (or by the mixture) is the ceiling (-0.01 +- 0.01).
"""

import os

import numpy as np

from hashjax.data.reader import PostDataset
from hashjax.data.synthetic import build
from hashjax.data.synthetic import users as su
from hashjax.data.synthetic import vocab as sv
from hashjax.data.synthetic.mixture import ConceptLikelihood

_VIRTUAL_USER_STREAM = 2  # world seeds: [seed, 0] parameters, [seed, 1, u] posts, this: oracle
_MAX_PAIRS = 1 << 22  # posts x users per block of the image-only mixture (bounds its memory)


def has_oracle(dataset: PostDataset) -> bool:
  return os.path.isdir(os.path.join(dataset.directory, build.WORLD_DIR))


class Oracle:
  """Ranks by the generator's true p(y | post): the ceiling on a synthetic dataset.

  Needs the world saved by hashjax.data.synthetic.build next to the data (DIR/world/) and each
  post's latent concepts (stored in row order). With `keep` (the balanced distribution) it ranks
  by p(y) keep(y), the probability that y is in the thinned truth. `loaded` is what
  build.load_oracle returns, to share one load between the rows of a table.
  """
  name = "Oracle (true distribution)"
  fields = ("user_id",)

  def __init__(self, dataset: PostDataset, keep: np.ndarray | None = None, loaded=None):
    self.world, self.concept_ids, self.concept_weights = (
        loaded or build.load_oracle(dataset.directory))
    self.num_users = self.world.config.num_users
    self.keep = None if keep is None else np.asarray(keep, np.float64)
    self._cached = (None, None)

  def latents(self, rows):
    rows = np.asarray(rows, np.int64)
    return self.concept_ids[rows], self.concept_weights[rows]

  def distribution(self, batch) -> np.ndarray:
    """[B, V] float32: the distribution this row ranks by (before thinning)."""
    return self.world.true_tag_distribution(batch["user_id"], *self.latents(batch["row"]))

  def scores(self, batch, tag_start, tag_stop):
    key = np.asarray(batch["row"]).tobytes()  # a batch is scored in tag chunks: compute once
    if self._cached[0] != key:
      self._cached = (key, self.distribution(batch))
    p = self._cached[1][:, tag_start:tag_stop]
    return p if self.keep is None else p * self.keep[tag_start:tag_stop]


class OracleSwappedUser(Oracle):
  """The true distribution of the post's image latent, but for another (fixed, random) user.

  The gap to the Oracle row is what knowing the right user is worth at the ceiling.
  """
  name = "Oracle, user swapped"

  def distribution(self, batch):
    rows = np.asarray(batch["row"], np.int64)
    shift = 1 + (rows * 2654435761) % (self.num_users - 1)  # a fixed, never-zero shift per post
    other = (np.asarray(batch["user_id"]) + shift) % self.num_users
    return self.world.true_tag_distribution(other, *self.latents(rows))


class OracleImageOnly(Oracle):
  """The best ranking for a post whose latent is known and whose poster is not.

  q(y | c, w) = sum_u pi(u | c) p(y | c, w, u) over the users with training posts, exactly (no
  sampling): pi(u | c) oc n_train(u) P(c_1..c_k | theta_u), the training share of user u times
  the Plackett-Luce probability of the post's ordered concept draw under u's topic preferences
  (World.concept_log_likelihood). The number of concepts and their weights are drawn the same
  way for every user and cancel. Features are a function of (c, w) plus user-independent noise,
  so the image says nothing more about the poster than c does.
  """
  name = "Oracle, image only"

  def __init__(self, dataset: PostDataset, keep: np.ndarray | None = None, loaded=None):
    super().__init__(dataset, keep, loaded)
    n_train = np.bincount(dataset.user_ids[dataset.split_rows("train")],
                          minlength=self.num_users)
    pool = np.flatnonzero(n_train)  # the users a model could have learnt from
    self.posterior = ImagePosterior(self.world, pool, np.log(n_train[pool].astype(np.float64)))

  def distribution(self, batch):
    return self.posterior.distribution(*self.latents(batch["row"]))


class ImagePosterior:
  """sum_{u in pool} pi(u | c) p(y | c, w, u), pi oc exp(log_prior(u)) P(c | theta_u)."""

  def __init__(self, world, pool, log_prior):
    self.world, self.pool, self.log_prior = world, np.asarray(pool), np.asarray(log_prior)
    self.likelihood = ConceptLikelihood(world.params["user_topic"][self.pool])
    self.traits = world.user_traits(self.pool)

  def distribution(self, concept_ids, concept_weights):
    """float32 [B, V], in blocks of posts that bound the [posts, users] arrays."""
    world, out = self.world, []
    step = max(1, _MAX_PAIRS // max(1, len(self.pool)))
    for s in range(0, len(concept_ids), step):
      c, w = concept_ids[s:s + step], concept_weights[s:s + step]
      log_weights = self.log_prior[None] + self.likelihood(c)
      parts = world.mixture_parts(log_weights, self.traits, c, w)
      out.append(world.assemble_mixture(parts, c, w))
    return np.concatenate(out)


class OracleMetadataOnly(Oracle):
  """The best ranking for a post whose latent and poster's metadata are known, not the poster.

  What Denton's descriptor shows (age, gender, country, home city) is known; the poster's latent
  traits are not. The row ranks by the posterior mean of p(y | c, w, v) over hypothetical users v
  with exactly the poster's metadata and traits from the generator's own p(traits | metadata)
  (users.make_users), weighted by how likely each makes the post's concept draw c:

    q(y) = sum_g p(g | meta) L_g(c) E_h[p(y | c, w, g, h)] / sum_g p(g | meta) L_g(c),

  g the style group (p(g | meta) = softmax of users.group_logits), h the habits (location,
  social and generic propensities, generic mix: drawn from age and gender alone, independent of
  g and of the topics, so they are not reweighted by c). The topics theta ~ Dirichlet(alpha_g)
  enter only through P(c | theta) and are integrated out exactly: by the neutrality of the
  Dirichlet, E[P(c | theta) | g] = L_g(c) is the Plackett-Luce probability with weights alpha_g
  (up to the generator's 1e-6 floor on theta). The sum over groups is exact; E_h is a Monte
  Carlo mean over `num_draws` habit draws per user, seeded by (world seed, user), the same for
  every post of the user and in every run.

  num_draws = 256 (G x 256 hypothetical users per poster): on the default world (seed 0,
  user-disjoint test split) P@1 is 52.21 for every num_draws from 4 to 4096, and R@10 / A@10
  are within 0.1 of their 4096-draw values (67.77 / 91.54) from 256 on. integrate_topics=False
  is the plain estimator: each of num_draws hypothetical users gets (g, theta, habits) all
  drawn and the weight P(c | theta). It estimates the same posterior (tests/eval/test_oracles)
  but settles far more slowly (P@1 50.18 at 64 draws, 51.97 at 1024, 52.10 at 16384).
  """
  name = "Oracle, metadata only"

  def __init__(self, dataset: PostDataset, keep: np.ndarray | None = None, loaded=None,
               num_draws: int = 256, integrate_topics: bool = True):
    super().__init__(dataset, keep, loaded)
    self.num_draws, self.integrate_topics = num_draws, integrate_topics
    self.posterior = MetadataPosterior(self.world)

  def distribution(self, batch):
    return self.posterior.distribution(batch["user_id"], *self.latents(batch["row"]),
                                       num_draws=self.num_draws,
                                       integrate_topics=self.integrate_topics)


class MetadataPosterior:
  """OracleMetadataOnly's mixture over hypothetical users with a real user's metadata."""

  def __init__(self, world):
    self.world, cfg, p = world, world.config, world.params
    self.alpha = su.topic_alpha(cfg, p["concept_popularity"], world.group_topics)  # [G, C]

  def hypothetical_users(self, user, num_draws, integrate_topics):
    """(traits, topics or None, log prior weights, groups) of a user's hypothetical users.

    With integrate_topics, num_draws habit draws crossed with every group (g-major, G x M users,
    their prior p(g | meta) / M in `log_prior`); else num_draws users with (g, theta, habits) all
    drawn, prior 1 / M each.
    """
    world, cfg, p = self.world, self.world.config, self.world.params
    G, M = cfg.num_groups, num_draws
    age, gender, country = p["user_age"][user], p["user_gender"][user], p["user_country"][user]
    rng = np.random.default_rng([world.seed, _VIRTUAL_USER_STREAM, int(user)])
    prior = su.group_probabilities(cfg, p, [age], [gender], [country])[0]
    if integrate_topics:
      habits = su.draw_habits(rng, cfg, p, age, gender, M)
      group = np.repeat(np.arange(G), M)
      habits = {k: np.tile(v, (G,) + (1,) * (v.ndim - 1)) for k, v in habits.items()}
      topics, log_prior = None, np.log(np.repeat(prior, M))
    else:
      group = su.sample_categorical(rng, np.log(np.broadcast_to(prior, (M, G))))
      topics = su.draw_topics(rng, cfg, p["concept_popularity"], world.group_topics, group)
      habits = su.draw_habits(rng, cfg, p, age, gender, M)
      log_prior = np.zeros(M)
    n = len(group)
    social_mix = sv.demographic_mix(p, "social", [age], [gender])
    traits = {"row": sv.table_row(group, country, len(su.COUNTRIES)),
              "city": np.full(n, p["user_city"][user]), "country": np.full(n, country),
              "location": habits["location"], "social": habits["social"],
              "generic": habits["generic"], "generic_mix": habits["generic_mix"],
              "social_mix": np.broadcast_to(social_mix, (n, social_mix.shape[1]))}
    return traits, topics, log_prior, group

  def distribution(self, user_ids, concept_ids, concept_weights, *, num_draws,
                   integrate_topics=True):
    """float32 [B, V]: the metadata-only posterior mean distribution of each post."""
    world = self.world
    user_ids = np.asarray(user_ids).reshape(-1)
    parts = {}
    for user in np.unique(user_ids):
      posts = np.flatnonzero(user_ids == user)
      c, w = concept_ids[posts], concept_weights[posts]
      traits, topics, log_prior, group = self.hypothetical_users(user, num_draws,
                                                                 integrate_topics)
      if integrate_topics:  # L_g(c), the same for every habit draw of group g
        log_weights = log_prior + world.concept_log_likelihood(self.alpha, c)[:, group]
      else:
        log_weights = log_prior + world.concept_log_likelihood(topics, c)
      for key, value in world.mixture_parts(log_weights, traits, c, w).items():
        parts.setdefault(key, np.zeros((len(user_ids), value.shape[1])))[posts] = value
    return world.assemble_mixture(parts, concept_ids, concept_weights)


def oracle_scorers(dataset: PostDataset, keep: np.ndarray | None = None) -> list:
  """The oracle rows of every table on synthetic data, diagnostics first (one world load)."""
  loaded = build.load_oracle(dataset.directory)
  return [cls(dataset, keep, loaded) for cls in (OracleImageOnly, OracleSwappedUser,
                                                 OracleMetadataOnly, Oracle)]
