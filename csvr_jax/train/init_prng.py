"""A counter-based hash PRNG for parameter initialisation: cheap to compile, same initial distributions.

Why: the CSVR state's jitted initialiser draws ~120 parameter tensors; with JAX's default threefry every draw
inlines its 20-round cipher into the HLO (~60k instructions for the demo's ten networks), and on a 2-core CPU
that program compiled in 18-22 s at XLA backend level 0 - the largest single compile of the quick demo after
the joint step. 'rbg' / 'unsafe_rbg' keys do not help on CPU (RngBitGenerator is expanded into the same kind of
code). This PRNG is a keyed murmur3 finaliser over a counter (two keyed mixing rounds per 32-bit word): the same
program compiles in ~8 s. flax's initialisers (normal, truncated normal, variance scaling, ...) only call
`random_bits`, `split` and `fold_in`, so the distributions are theirs; only the random stream differs.

It is NOT for anything that needs statistical or cryptographic strength beyond initial weights: training keys
(augmentation, noise, dropout) stay threefry.
"""
import math

import jax
import jax.extend.random as jex_random
import jax.numpy as jnp

_GOLDEN = 0x9E3779B9  # odd constants: counters and keys are spread before mixing
_SPLIT, _HI, _FOLD = 0x5BD1E995, 0x85EBCA6B, 0x27D4EB2F


def _mix(x):
  """murmur3's 32-bit finaliser (full avalanche): uint32 -> uint32, elementwise."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _stream(key, n, salt):
  """(n,) uint32 words of the stream of `key` (2,) uint32: word i = mix(mix(i*g ^ k0 ^ salt) + k1)."""
  i = jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(_GOLDEN)
  return _mix(_mix(i ^ key[0] ^ jnp.uint32(salt)) + key[1])


def _seed(seed):
  seed = jnp.asarray(seed)
  hi = (seed.astype(jnp.uint64) >> 32).astype(jnp.uint32) if seed.dtype.itemsize == 8 else jnp.uint32(0)
  return jnp.stack([hi, seed.astype(jnp.uint32)])


def _split(key, shape):
  n = math.prod(shape)
  return _stream(key, 2 * n, _SPLIT).reshape(tuple(shape) + (2,))


def _fold_in(key, data):
  data = jnp.asarray(data).astype(jnp.uint32)
  return jnp.stack([_mix(key[0] ^ _mix(data ^ jnp.uint32(_FOLD))), _mix(key[1] + data)])


def _random_bits(key, bit_width, shape):
  n = math.prod(shape)
  lo = _stream(key, n, 0)
  if bit_width == 64:
    hi = _stream(key, n, _HI)
    return ((hi.astype(jnp.uint64) << 32) | lo.astype(jnp.uint64)).reshape(shape)
  dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[bit_width]
  return lo.astype(dtype).reshape(shape)  # the low bits of a fully mixed word


HASH32 = jex_random.define_prng_impl(key_shape=(2,), seed=_seed, split=_split, random_bits=_random_bits,
                                     fold_in=_fold_in, name='csvr_hash32', tag='h32')


def init_key(raw_key):
  """A threefry raw key (2,) uint32 -> a typed key of the hash PRNG with the same key data."""
  return jax.random.wrap_key_data(raw_key, impl=HASH32)
