"""From a config's `data` block to an open dataset: a directory, or the synthetic recipe."""

from hashjax.data.reader import PostDataset
from hashjax.data.synthetic import build


def resolve_dataset(data_config) -> PostDataset:
  """Opens data.dir, or builds/reuses the synthetic dataset the config describes."""
  directory = data_config.dir or build.default_data_dir(
      data_config.preset, data_config.seed, data_config.split_scheme)
  if not data_config.dir:
    build.ensure_synthetic(directory, preset=data_config.preset, seed=data_config.seed,
                           split_scheme=data_config.split_scheme)
  return PostDataset(directory)


def describe_dataset(dataset: PostDataset) -> str:
  """One line for reports: where the data is, its split and sizes."""
  meta = dataset.metadata
  return (f"`{dataset.directory}` ({meta['split_scheme']} split; {meta['counts']['train']} train"
          f" / {meta['counts']['test']} test posts; {meta['num_tags']} hashtags; feature dim "
          f"{meta['feature_dim']})")
