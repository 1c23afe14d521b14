"""Mesh, config errors, and the shard_map gradient trap: 8 fake devices == 1 device on the same global batch."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from csvr_jax import parallel


def _cfg(mesh=(('data', -1),)):
  return ConfigDict(dict(mesh=mesh))


def test_mesh_uses_all_devices():
  mesh = parallel.make_mesh(_cfg())
  assert mesh.shape['data'] == jax.device_count() == 8
  mesh2 = parallel.make_mesh(_cfg((('data', -1), ('model', 2))))
  assert dict(mesh2.shape) == {'data': 4, 'model': 2}


@pytest.mark.parametrize('mesh', [(('model', -1),), (('data', 3),), (('data', -1), ('x', -1))])
def test_bad_mesh_is_one_line(mesh):
  with pytest.raises(parallel.ParallelConfigError) as e:
    parallel.make_mesh(_cfg(mesh))
  assert '\n' not in str(e.value) and 'config.mesh' in str(e.value)


def test_batch_not_divisible_is_one_line():
  mesh = parallel.make_mesh(_cfg())
  assert parallel.check_global_batch(16, mesh) == 2
  with pytest.raises(parallel.ParallelConfigError, match=r'config.train.batch_size=12 is not divisible by the 8'):
    parallel.check_global_batch(12, mesh)


def test_host_to_global_splits_batch():
  mesh = parallel.make_mesh(_cfg())
  x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  g = parallel.host_to_global({'x': x}, mesh)['x']
  assert g.shape == (16, 3) and len(g.addressable_shards) == 8
  assert g.addressable_shards[1].data.shape == (2, 3)
  np.testing.assert_array_equal(np.asarray(g), x)


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    x = nn.Dense(8)(x)
    x = nn.BatchNorm(use_running_average=not train, axis_name='data', momentum=0.9)(x)
    return nn.Dense(4)(nn.relu(x))


def _train(n_devices, x, steps=3, pmean_grads=False):
  """SGD on a contrastive loss whose keys are all-gathered and whose BN is synced; returns (losses, params).

  The loss is the global-batch mean (the project's one convention): shard_map already sums the gradient of
  replicated params over devices, so it is the exact global gradient. pmean_grads=True instead differentiates
  the per-device mean and pmeans the (already summed) gradients, the pmap-era habit the module warns about: the
  gradient comes out axis_size times too large (kept to show the test can fail)."""
  net = _Net()
  variables = net.init(jax.random.key(0), x[:2], False)
  mesh = parallel.make_mesh(_cfg(), jax.devices()[:n_devices])

  def loss_fn(params, batch_stats, x):
    out, upd = net.apply({'params': params, 'batch_stats': batch_stats}, x, True, mutable=['batch_stats'])
    keys = jax.lax.all_gather(out, 'data', tiled=True)
    logp = jax.nn.log_softmax(out @ keys.T)
    loss = -jnp.mean(logp[jnp.arange(x.shape[0]), parallel.sample_index(x.shape[0])])
    return (loss if pmean_grads else parallel.global_mean(loss)), upd['batch_stats']

  def step(params, batch_stats, x):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, x)
    if pmean_grads:
      grads, loss = parallel.global_mean(grads), parallel.global_mean(loss)
    params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    return params, batch_stats, loss

  f = jax.jit(parallel.data_parallel(step, mesh, (P(), P(), parallel.BATCH), (P(), P(), P())))
  params = jax.device_put(variables['params'], parallel.replicated(mesh))
  bs = jax.device_put(variables['batch_stats'], parallel.replicated(mesh))
  xs = parallel.host_to_global(x, mesh)
  losses = []
  for _ in range(steps):
    params, bs, loss = f(params, bs, xs)
    losses.append(float(loss))
  return losses, jax.device_get(params), jax.device_get(bs)


def test_eight_devices_match_one_device():
  x = np.random.RandomState(0).randn(16, 5).astype(np.float32)
  l8, p8, b8 = _train(8, x)
  l1, p1, b1 = _train(1, x)
  np.testing.assert_allclose(l8, l1, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), (p8, b8), (p1, b1))
  assert l1[-1] < l1[0]
  _, p8_trap, _ = _train(8, x, steps=1, pmean_grads=True)
  _, p1_one, _ = _train(1, x, steps=1)
  assert not np.allclose(p8_trap['Dense_1']['kernel'], p1_one['Dense_1']['kernel'], atol=1e-4)
