"""The hash PRNG of the parameter initialisers (csvr_jax/train/init_prng.py): flax's distributions, distinct
streams, determinism."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax.train import init_prng


def test_initialisers_keep_their_distributions():
  key = init_prng.init_key(jax.random.PRNGKey(3))
  normal = np.asarray(jax.random.normal(key, (200_000,)))
  assert abs(normal.mean()) < 0.01 and abs(normal.std() - 1.0) < 0.01
  assert abs(np.mean(normal > 1.0) - 0.1587) < 0.005  # the tail too, not just two moments
  uniform = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1), (200_000,)))
  counts = np.histogram(uniform, bins=20, range=(0, 1))[0]
  assert np.all(np.abs(counts - 10_000) < 500), counts
  # flax's default kernel init (lecun normal, truncated) through a module: variance 1 / fan_in.
  kernel = nn.Dense(256).init(key, jnp.zeros((1, 512)))['params']['kernel']
  assert abs(float(jnp.std(kernel)) * np.sqrt(512) - 1.0) < 0.03


def test_streams_are_distinct_and_deterministic():
  key = init_prng.init_key(jax.random.PRNGKey(0))
  a, b = jax.random.split(key)
  da, db = np.asarray(jax.random.key_data(a)), np.asarray(jax.random.key_data(b))
  assert not np.array_equal(da, db)
  xa, xb = np.asarray(jax.random.normal(a, (1000,))), np.asarray(jax.random.normal(b, (1000,)))
  assert abs(np.corrcoef(xa, xb)[0, 1]) < 0.1
  folded = [np.asarray(jax.random.bits(jax.random.fold_in(key, i), (64,))) for i in range(3)]
  assert not np.array_equal(folded[0], folded[1]) and not np.array_equal(folded[1], folded[2])
  again = init_prng.init_key(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(jax.random.bits(again, (16,)), jax.random.bits(key, (16,)))
  other = init_prng.init_key(jax.random.PRNGKey(1))
  assert not np.array_equal(jax.random.bits(other, (16,)), jax.random.bits(key, (16,)))
  # Neighbouring counters and keys avalanche: about half the bits differ.
  w = np.asarray(jax.random.bits(key, (4096,)), np.uint32)
  assert 14 < np.mean([bin(x).count('1') for x in (w[1:] ^ w[:-1])]) < 18
