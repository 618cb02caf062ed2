"""The package's layers import downwards only: tools -> training -> models, losses, eval -> data."""

import ast
import os

import pytest

from tests.dataset_fixtures import REPO_ROOT

# What each layer may import from hashjax (besides itself and hashjax.config).
ALLOWED = {
    "data": set(),
    "losses": set(),
    "models": {"data"},
    "eval": {"data"},
    "training": {"data", "losses", "models", "eval"},
    "tools": {"data", "losses", "models", "eval", "training"},
}


def _hashjax_imports(path):
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hashjax"):
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names if a.name.startswith("hashjax")]
    else:
      continue
    for name in names:
      parts = name.split(".")
      if len(parts) > 1:
        yield parts[1]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_point_down(layer):
  root = os.path.join(REPO_ROOT, "hashjax", layer)
  for directory, _, files in os.walk(root):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(directory, name)
      for target in _hashjax_imports(path):
        if target in ALLOWED and target != layer:
          assert target in ALLOWED[layer], f"{path} imports hashjax.{target}"
