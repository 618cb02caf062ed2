"""The user side of the synthetic world: demographics (Denton Table 2), style groups, habits.

Every user has the four pieces of metadata of Denton et al. (age 13-114, gender, one of five
countries, a home city with GPS) plus latent traits the models never see directly:

  * a style group g, drawn from p(g | age, gender, country) so metadata predicts it only in part;
  * topic preferences theta ~ Dirichlet(kappa * ((1 - lam) * popularity + lam * m_g)): what the
    user photographs, partly shared with their group;
  * propensities for location, social and generic tags, and a personal mix of generic tags
    drawn around the habits of the user's age and gender (#wcw and #mcm are not written by
    everyone alike): mix ~ Dirichlet(c * demographic profile).
"""

import numpy as np

from hashjax.data.synthetic import vocab as sv

COUNTRIES = ("US", "CA", "GB", "AU", "NZ")
COUNTRY_PROBS = np.array([0.52, 0.11, 0.17, 0.13, 0.07])
# Rough (lat_min, lat_max, lon_min, lon_max) of where people live in each country.
COUNTRY_BOXES = np.array([(30.0, 47.0, -122.0, -75.0), (43.0, 53.0, -123.0, -63.0),
                          (50.5, 56.0, -4.0, 0.5), (-38.0, -27.0, 115.0, 153.0),
                          (-46.0, -36.5, 168.0, 178.0)])
# Denton et al.: -1 for female, 1 for male, 0 for unknown.
GENDER_FEMALE, GENDER_UNKNOWN, GENDER_MALE = -1, 0, 1
AGE_MIN, AGE_MAX = 13, 114


def make_cities(rng, cities_per_country):
  """City -> country, GPS and popularity (Zipf within a country: one big city, many small)."""
  country = np.repeat(np.arange(5), cities_per_country)
  box = COUNTRY_BOXES[country]
  lat = rng.uniform(box[:, 0], box[:, 1])
  lon = rng.uniform(box[:, 2], box[:, 3])
  w = (np.arange(cities_per_country) + 1.0) ** -1.0
  popularity = np.tile(w / w.sum(), 5)
  return {"city_country": country.astype(np.int32), "city_lat": lat, "city_lon": lon,
          "city_popularity": popularity}


def make_groups(rng, num_groups):
  """Each style group is a demographic prototype: an age centre, a gender and a home country."""
  return {
      "group_age": rng.uniform(16.0, 55.0, num_groups),
      "group_gender": rng.choice([-1.0, 0.0, 1.0], size=num_groups, p=[0.4, 0.2, 0.4]),
      "group_country": rng.choice(5, size=num_groups, p=COUNTRY_PROBS).astype(np.int32),
  }


def group_logits(age, gender, country, groups, strength=1.0):
  """log p(g | user) + const = strength (-(age - a_g)^2 / 200 + 1.2 gender s_g + [country = c_g]).

  `strength` sets how much of a user's style the metadata reveals: the more, the more a model
  that sees only metadata (Denton et al.) can learn of the self-expression effects.
  """
  return strength * (-(age[:, None] - groups["group_age"]) ** 2 / 200.0
                     + 1.2 * gender[:, None] * groups["group_gender"]
                     + 1.0 * (country[:, None] == groups["group_country"]))


def sample_categorical(rng, logits):
  """One draw per row of softmax(logits), by the Gumbel-max trick."""
  return np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1).astype(np.int32)


# The habit draws of make_users, given age and gender: (a, b) of the Beta draws and the sigma of
# the lognormal. Shared with draw_habits, the oracle's sampler of users with given metadata.
LOCATION_BETA = (0.7, 2.5)
GENERIC_BETA = (0.4, 3.0)
SOCIAL_SIGMA = 0.5
TOPIC_FLOOR = 1e-6  # added to the Gamma draws of a Dirichlet: keeps every entry possible


def youth(age):
  """How much younger users lean on social and generic tags: 1.6 at 13, down to 0.3 from 78."""
  return np.clip(1.6 - (age - AGE_MIN) / 50.0, 0.3, 1.6)


def floored_dirichlet(gammas):
  """A Dirichlet draw from Gamma(alpha) draws (vectorised over rows), floored by TOPIC_FLOOR."""
  x = gammas + TOPIC_FLOOR
  return x / x.sum(axis=-1, keepdims=True)


def topic_alpha(config, concept_popularity, group_topics):
  """Dirichlet parameters of theta given the style group's taste m_g (rows of group_topics):
  kappa * ((1 - lam) * popularity + lam * m_g)."""
  lam = config.group_topic_share
  mean = (1 - lam) * concept_popularity[None] + lam * group_topics
  return config.topic_concentration * mean


def social_scale(config, age, gender):
  """r_soc / LogNormal(0, SOCIAL_SIGMA): social weight x youth x 1.3 for women."""
  return config.social_weight * youth(age) * np.where(gender == GENDER_FEMALE, 1.3, 1.0)


def generic_alpha(config, profiles, age, gender):
  """Dirichlet parameters of a user's generic mix: c x the age/gender profile."""
  return config.generic_concentration * sv.demographic_mix(profiles, "generic", age, gender)


def make_users(rng, config, cities, groups, concept_popularity, profiles):
  """All per-user arrays (prefixed user_), drawn in a fixed order from `rng`.

  Also returns "group_topics" [G, C], each style group's taste m_g (not a per-user array; World
  keeps it out of the saved parameters and replays it for the metadata oracle).
  """
  U, C = config.num_users, config.num_concepts
  # Ages skew young like a photo-sharing network: 13 + Gamma(2, 8) has mean 29 and a long tail.
  age = np.clip(np.floor(AGE_MIN + rng.gamma(2.0, 8.0, U)), AGE_MIN, AGE_MAX).astype(np.int32)
  gender = rng.choice([GENDER_MALE, GENDER_FEMALE, GENDER_UNKNOWN], size=U,
                      p=[0.44, 0.48, 0.08]).astype(np.int8)
  country = rng.choice(5, size=U, p=COUNTRY_PROBS).astype(np.int32)
  city_logits = np.where(cities["city_country"][None] == country[:, None],
                         np.log(cities["city_popularity"])[None], -np.inf)
  city = sample_categorical(rng, city_logits)
  # Homes scatter ~10 km around the city centre.
  lat = cities["city_lat"][city] + 0.1 * rng.standard_normal(U)
  lon = cities["city_lon"][city] + 0.1 * rng.standard_normal(U)
  group = sample_categorical(rng, group_logits(age, gender.astype(float), country, groups,
                                               config.group_metadata_strength))

  # Heavy-tailed activity: lognormal posts per user with the requested mean before clipping.
  sigma = config.posts_per_user_sigma
  raw = rng.lognormal(np.log(config.mean_posts_per_user) - sigma ** 2 / 2, sigma, U)
  num_posts = np.clip(np.round(raw), config.min_posts_per_user,
                      config.max_posts_per_user).astype(np.int64)

  group_topics = rng.dirichlet(np.full(C, config.group_topic_alpha), size=config.num_groups)
  # Dirichlet by normalised Gammas (vectorised); the floor keeps every concept possible.
  topic = floored_dirichlet(rng.gamma(topic_alpha(config, concept_popularity,
                                                  group_topics[group])))

  social = social_scale(config, age, gender) * rng.lognormal(0.0, SOCIAL_SIGMA, U)
  # Dirichlet(c * profile) by normalised Gammas; the floor keeps every generic tag possible.
  generic_mix = floored_dirichlet(rng.gamma(generic_alpha(config, profiles, age, gender)))
  # Posting clock: a start inside the first 80% of the time span, then exponential gaps with a
  # per-user mean (lognormal around two days, shorter for heavy posters so they stay in the span).
  span = config.time_span_days * 86400.0
  start_time = np.floor(rng.uniform(0, 0.8 * span, U)).astype(np.int64)
  mean_gap = np.minimum(rng.lognormal(np.log(2 * 86400.0), 1.0, U), (span - start_time) / num_posts)
  return {
      "user_age": age, "user_gender": gender, "user_country": country, "user_city": city,
      "user_lat": lat, "user_lon": lon, "user_group": group, "user_num_posts": num_posts,
      "user_start_time": start_time, "user_mean_gap": mean_gap,
      "user_topic": topic.astype(np.float32),
      # Most users rarely write location or #tbt-like tags, a few write them all the time.
      "user_location_propensity": config.location_weight * rng.beta(*LOCATION_BETA, U),
      "user_social_propensity": social,
      "user_generic_propensity": config.generic_weight * youth(age) * rng.beta(*GENERIC_BETA, U),
      "user_generic_mix": generic_mix.astype(np.float32),
      "group_topics": group_topics,
  }


def group_probabilities(config, groups, age, gender, country):
  """p(g | age, gender, country) [B, G]: the distribution make_users draws the style group from."""
  logits = group_logits(np.asarray(age, np.float64).reshape(-1),
                        np.asarray(gender, np.float64).reshape(-1),
                        np.asarray(country).reshape(-1), groups, config.group_metadata_strength)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def draw_habits(rng, config, profiles, age, gender, n):
  """n draws of the habits make_users gives a user of this age and gender (one user's values).

  The location, social and generic propensities and the generic mix depend on nothing else
  (not the style group, not the topics), so these are draws from p(habits | metadata).
  Returns float64 arrays location, social, generic [n] and generic_mix [n, T] (float32, as
  make_users stores it).
  """
  age, gender = np.full(n, age), np.full(n, gender)
  return {
      "location": config.location_weight * rng.beta(*LOCATION_BETA, n),
      "social": social_scale(config, age, gender) * rng.lognormal(0.0, SOCIAL_SIGMA, n),
      "generic": config.generic_weight * youth(age) * rng.beta(*GENERIC_BETA, n),
      "generic_mix": floored_dirichlet(rng.gamma(generic_alpha(config, profiles, age, gender)))
                     .astype(np.float32),
  }


def draw_topics(rng, config, concept_popularity, group_topics, group):
  """theta ~ floored Dirichlet(topic_alpha) for users of the given groups [n], float32 [n, C]."""
  alpha = topic_alpha(config, concept_popularity, group_topics[np.asarray(group)])
  return floored_dirichlet(rng.gamma(alpha)).astype(np.float32)


def user_meta(users, user_ids):
  """Denton's 10-d descriptor [age, gender, country one-hot (5), GPS on the unit sphere (3)].

  age -> (age - 13) / (114 - 13); gender -1 female / +1 male / 0 unknown (as in the paper); (lat, lon) ->
  (cos lat cos lon, cos lat sin lon, sin lat), each mapped from [-1, 1] to [0, 1].
  """
  u = np.asarray(user_ids)
  age = (users["user_age"][u] - AGE_MIN) / (AGE_MAX - AGE_MIN)
  lat, lon = np.radians(users["user_lat"][u]), np.radians(users["user_lon"][u])
  xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
  onehot = np.eye(5)[users["user_country"][u]]
  meta = np.concatenate([age[:, None], users["user_gender"][u][:, None].astype(float), onehot,
                         (xyz + 1) / 2], axis=-1)
  return meta.astype(np.float32)
