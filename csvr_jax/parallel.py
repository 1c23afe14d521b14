"""Data parallelism: multi-host start-up, the device mesh, shard_map'd steps, host batch -> global array.

Every step runs under `jax.shard_map` with the batch split over the mesh axis 'data' and the train state
replicated. The one gradient convention: every loss is a GLOBAL-batch mean (`global_mean` of the per-device
mean, or a psum'd contrastive loss), identical on all devices. With `check_vma=True` the gradient of a
replicated parameter computed inside shard_map is already summed over the devices, so the gradient of such a
loss is exactly the global-batch gradient: no pmean of gradients (the pmap-era `lax.pmean(grads)` of per-device
losses' gradients comes out axis_size times too large; tests/test_parallel.py shows it).
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA = 'data'


class ParallelConfigError(ValueError):
  """A parallelism configuration that cannot work; the message is one line."""


def initialize(config):
  """Starts jax.distributed when more than one process takes part; a no-op for a single process.

  Order: explicit `config.distributed.coordinator_address` (+ num_processes, process_id); else SLURM with
  more than one task, or a multi-host TPU VM (auto-detected by JAX); else nothing. Call before any other JAX
  work. Returns (process_index, process_count).
  """
  d = config.distributed
  if d.coordinator_address:
    if d.num_processes < 1 or d.process_id < 0:
      raise ParallelConfigError('config.distributed.coordinator_address is set: set config.distributed.'
                                'num_processes (>= 1) and config.distributed.process_id (>= 0) too')
    jax.distributed.initialize(coordinator_address=d.coordinator_address, num_processes=d.num_processes,
                               process_id=d.process_id)
  elif int(os.environ.get('SLURM_NTASKS', '1')) > 1 or _is_multihost_tpu():
    jax.distributed.initialize()  # JAX's cluster detection reads SLURM_* / the TPU metadata
  return jax.process_index(), jax.process_count()


def _is_multihost_tpu():
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  return len([h for h in hosts.split(',') if h]) > 1


def make_mesh(config, devices=None):
  """Mesh over all devices of all hosts from `config.mesh`, e.g. (('data', -1),); -1 takes the rest."""
  devices = list(jax.devices() if devices is None else devices)
  names = tuple(name for name, _ in config.mesh)
  sizes = [int(size) for _, size in config.mesh]
  if DATA not in names:
    raise ParallelConfigError(f"config.mesh={tuple(config.mesh)} has no 'data' axis")
  if sizes.count(-1) > 1:
    raise ParallelConfigError(f'config.mesh={tuple(config.mesh)}: at most one axis may be -1')
  known = int(np.prod([s for s in sizes if s != -1]))
  if len(devices) % known:
    raise ParallelConfigError(f'config.mesh={tuple(config.mesh)} does not divide {len(devices)} devices')
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != len(devices):
    raise ParallelConfigError(f'config.mesh={tuple(config.mesh)} -> {sizes} does not use all {len(devices)} '
                              'devices')
  axis_types = (jax.sharding.AxisType.Explicit,) * len(names)
  return jax.make_mesh(sizes, names, axis_types=axis_types, devices=devices)


def data_size(mesh):
  """Number of ways the batch is split."""
  return mesh.shape[DATA]


def check_global_batch(batch_size, mesh, key='config.train.batch_size'):
  """One-line error unless the global batch splits evenly over the 'data' axis (and over processes)."""
  n = data_size(mesh)
  if batch_size % n:
    raise ParallelConfigError(f'{key}={batch_size} is not divisible by the {n} devices of the mesh axis '
                              f"'data' (use a multiple of {n})")
  if batch_size % jax.process_count():
    raise ParallelConfigError(f'{key}={batch_size} is not divisible by the {jax.process_count()} processes')
  return batch_size // n


def local_batch_size(batch_size):
  """Rows of the global batch that this process loads."""
  return batch_size // jax.process_count()


def replicated(mesh):
  return NamedSharding(mesh, P())


def replicated_like(abstract_tree, mesh):
  """Replicated shardings spelled per rank, P(None, ...), as the shard_map'd steps return their state: a state
  created with P() would differ from the steps' outputs and compile every step twice."""
  return jax.tree.map(lambda x: NamedSharding(mesh, P(*[None] * len(x.shape))), abstract_tree)


def batch_sharding(mesh):
  """Leading (batch) axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, P(DATA))


def host_to_global(host_batch, mesh):
  """This process's rows of the batch (numpy tree) -> one global jax.Array per leaf, batch split on 'data'."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), host_batch)


def replicate(tree, mesh):
  """Puts a host tree (the same on every process) on every device."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                                            lambda idx: np.asarray(x)[idx]), tree)


def data_parallel(fn, mesh, in_specs, out_specs):
  """`jax.shard_map(fn)` over the mesh; specs use `BATCH` (split on 'data') and `REPLICATED`."""
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=True)


BATCH = P(DATA)
REPLICATED = P()


def global_mean(tree, axis_name=DATA):
  """Per-device scalars (local-batch means) -> the global-batch mean, identical on every device."""
  return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name), tree)


def sample_index(local_batch, axis_name=DATA):
  """(local_batch,) int32 indices of this device's rows in the global batch (inside shard_map)."""
  return jax.lax.axis_index(axis_name) * local_batch + jnp.arange(local_batch, dtype=jnp.int32)


def sample_keys(key, local_batch, axis_name=DATA):
  """(local_batch,) keys, one per row: fold_in(key, global row index) (inside shard_map). Every per-sample draw
  (augmentation, noise, penalties, subsampling offsets) comes from these, so results do not depend on how many
  devices the batch is split over."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(sample_index(local_batch, axis_name))


def enable_compilation_cache(cache_dir, min_compile_time_secs=1.0):
  """JAX's persistent compilation cache (and, on GPU, XLA's autotune results with it) in `cache_dir`: a restarted
  run, or the next method of the demo with the same shapes, reads its programs instead of compiling them.
  A JAX_COMPILATION_CACHE_DIR set in the environment wins (with its own JAX_PERSISTENT_CACHE_* settings): one
  cache shared by every run of a session, as the test suite does (tests/conftest.py)."""
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return
  jax.config.update('jax_compilation_cache_dir', os.path.abspath(cache_dir))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_time_secs)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def compiler_options(config):
  """XLA options of every jitted step: config.train.fast_compile -> `fast_compile_options()`, else XLA's own."""
  return fast_compile_options() if config.train.fast_compile else None


@functools.cache
def fast_compile_options():
  """XLA backend optimisation level 0 (on this 2-core CPU a CSVR step compiles ~10x faster; the convolutions are
  library calls and barely slow down) and XLA:CPU's classic elemental fusion emitter (the newer fusion emitters
  compile the CSVR joint step ~1.6x slower, same step time): docs/performance.md. The emitter option is left out
  where this XLA no longer has it (JAX 0.11 removed it), found by compiling a one-op program with it."""
  options = {'xla_backend_optimization_level': 0, 'xla_cpu_use_fusion_emitters': False}
  try:
    jax.jit(jnp.negative).lower(np.float32(1)).compile(compiler_options=options)
  except jax.errors.JaxRuntimeError as e:
    if 'xla_cpu_use_fusion_emitters' not in str(e):
      raise
    del options['xla_cpu_use_fusion_emitters']
  return options
