"""Integration layer (eq. 3-5) against a numpy re-implementation; the concat ablation; the heads."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csvr_jax.models import heads
from csvr_jax.models import integration
from fast_init import fast_variables  # tests/ is on sys.path (pytest rootdir-less import mode)

jax.config.update('jax_default_matmul_precision', 'highest')


def _np_conv(x, kernel, bias):
  """'Same' convolution with padding 1 over the middle axes of x (B, *S, Cin); kernel (*K, Cin, Cout)."""
  nd = kernel.ndim - 2
  xp = np.pad(x, [(0, 0)] + [(1, 1)] * nd + [(0, 0)])
  out = np.zeros(x.shape[:-1] + (kernel.shape[-1],))
  for offs in np.ndindex(*kernel.shape[:nd]):
    window = xp[(slice(None),) + tuple(slice(o, o + s) for o, s in zip(offs, x.shape[1:-1]))]
    out += window @ kernel[offs]
  return out + bias


def _np_pool_time(x, n_out):
  """torch adaptive_avg_pool1d along axis 1, written as explicit windows."""
  n_in = x.shape[1]
  return np.stack([x[:, int(np.floor(t * n_in / n_out)):int(np.ceil((t + 1) * n_in / n_out))].mean(1)
                   for t in range(n_out)], axis=1)


def _np_adain(p, f_s, f_d):
  sig = lambda v: 1 / (1 + np.exp(-v))
  mu = f_s.mean(axis=(0, 1, 2, 3))
  var = f_s.var(axis=(0, 1, 2, 3))
  f_s_bar = (f_s - mu) / np.sqrt(var + 1e-5)  # eq. 3
  a = np.maximum(_np_conv(f_d, p['align']['conv']['kernel'], p['align']['conv']['bias']), 0)
  a = _np_pool_time(a, f_s.shape[1])
  a = np.maximum(a @ p['align']['fc1']['kernel'] + p['align']['fc1']['bias'], 0)
  a = a @ p['align']['fc2']['kernel'] + p['align']['fc2']['bias']
  gamma = _np_conv(a, p['gamma']['kernel'], p['gamma']['bias'])[:, :, None, None]
  beta = _np_conv(a, p['beta']['kernel'], p['beta']['bias'])[:, :, None, None]
  d = gamma * f_s_bar + beta  # eq. 4
  m = sig(_np_conv(f_s_bar, p['mask']['kernel'], p['mask']['bias']))
  return (1 - m) * d + m * f_s, m  # eq. 5


def _case(t_d=4, t1=2):
  rng = np.random.default_rng(0)
  f_s = rng.normal(size=(2, t1, 3, 3, 4)).astype(np.float32) * 2 + 0.5
  f_d = rng.normal(size=(2, t_d, 5)).astype(np.float32)
  return f_s, f_d


@pytest.mark.parametrize('t_d,t1', [(4, 2), (2, 1), (2, 3)])
def test_adain_matches_numpy(t_d, t1):
  f_s, f_d = _case(t_d, t1)
  mod = integration.AdaINIntegration(channels=4)
  variables = fast_variables(mod, jnp.asarray(f_s), jnp.asarray(f_d), seed=1)
  # Perturb gamma's bias away from its init of 1 so the test also sees the gamma path.
  params = jax.tree.map(np.asarray, variables['params'])
  params['gamma']['bias'] = params['gamma']['bias'] + np.linspace(-0.5, 0.5, 4, dtype=np.float32)
  (f_i, aux), _ = (lambda v, a, b: mod.apply(v, a, b, train=True, mutable=['batch_stats']))(
      {'params': params, 'batch_stats': variables['batch_stats']}, jnp.asarray(f_s), jnp.asarray(f_d))
  p64 = jax.tree.map(lambda x: x.astype(np.float64), params)
  want, m = _np_adain(p64, f_s.astype(np.float64), f_d.astype(np.float64))
  assert f_i.shape == f_s.shape
  np.testing.assert_allclose(np.asarray(f_i), want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(aux['mask']), m, atol=1e-5)
  assert np.all((np.asarray(aux['mask']) > 0) & (np.asarray(aux['mask']) < 1))


def test_adain_identity_params_give_bn_of_f_s():
  f_s, f_d = _case()
  mod = integration.AdaINIntegration(channels=4)
  variables = fast_variables(mod, jnp.asarray(f_s), jnp.asarray(f_d), seed=2)
  params = jax.tree.map(np.asarray, variables['params'])
  params['gamma'] = dict(kernel=np.zeros_like(params['gamma']['kernel']), bias=np.ones(4, np.float32))
  params['beta'] = dict(kernel=np.zeros_like(params['beta']['kernel']), bias=np.zeros(4, np.float32))
  params['mask'] = dict(kernel=np.zeros_like(params['mask']['kernel']), bias=np.full(4, -1e4, np.float32))
  variables = {'params': params, 'batch_stats': variables['batch_stats']}
  (f_i, _), _ = mod.apply(variables, jnp.asarray(f_s), jnp.asarray(f_d), train=True, mutable=['batch_stats'])
  mu, var = f_s.mean(axis=(0, 1, 2, 3)), f_s.var(axis=(0, 1, 2, 3))
  np.testing.assert_allclose(np.asarray(f_i), (f_s - mu) / np.sqrt(var + 1e-5), atol=1e-4)


def test_concat_integration_uses_both_inputs():
  f_s, f_d = _case()
  mod = integration.get_integration('concat', channels=4)
  variables = fast_variables(mod, jnp.asarray(f_s), jnp.asarray(f_d), seed=3)
  apply = lambda a, b: mod.apply(variables, a, b)[0]
  f_i = apply(jnp.asarray(f_s), jnp.asarray(f_d))
  assert f_i.shape == f_s.shape
  assert not np.allclose(f_i, apply(jnp.asarray(f_s), jnp.asarray(f_d) + 1.0))
  assert not np.allclose(f_i, apply(jnp.asarray(f_s) + 1.0, jnp.asarray(f_d)))


def test_integration_errors_name_the_key():
  with pytest.raises(ValueError, match='config.model.integration'):
    integration.get_integration('sum', channels=4)


def test_heads_shapes_and_dropout():
  x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 6)), jnp.float32)
  g = heads.ProjectionHead(hidden=8, out=5)
  emb = g.apply(fast_variables(g, x), x)
  assert emb.shape == (3, 5) and emb.dtype == jnp.float32
  clf = heads.Classifier(num_classes=4, dropout=0.5)
  v = fast_variables(clf, x)
  eval_logits = clf.apply(v, x)
  np.testing.assert_allclose(eval_logits, x @ v['params']['fc']['kernel'] + v['params']['fc']['bias'], atol=1e-5)
  train_logits = clf.apply(v, x, train=True, rngs={'dropout': jax.random.key(1)})
  assert train_logits.shape == (3, 4) and not np.allclose(train_logits, eval_logits)
