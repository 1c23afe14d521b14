"""Cheap module variables for tests: shapes from `jax.eval_shape(module.init)`, values from numpy.

Compiling the random initialisers costs ~2 s of CPU per parameter shape on the CI machine; tests of the
maths do not need flax's initial distribution, only finite, reasonably scaled weights (fan-in scaling).
"""
import math

import jax
import numpy as np


def fill_like(shapes, seed=0):
  """numpy values for a tree of ShapeDtypeStructs of flax variables: kernels ~ N(0, 1/fan_in), biases and
  scales ~ N(0, .1^2), BatchNorm running mean 0 and variance 1."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'batch_stats' in name:
      return np.ones(leaf.shape, leaf.dtype) if "'var'" in name else np.zeros(leaf.shape, leaf.dtype)
    if leaf.ndim >= 2:
      return (rng.normal(size=leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1]))).astype(leaf.dtype)
    return (0.1 * rng.normal(size=leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def fast_variables(module, *args, seed=0, **kwargs):
  """Variables shaped like `module.init(key, *args, **kwargs)`, filled by `fill_like` (no compiled initialiser)."""
  return fill_like(jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a, **kwargs), *args), seed)
