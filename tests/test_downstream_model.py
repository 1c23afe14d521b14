"""The downstream network (vnet | fi | fd) from an export: the pretraining networks' features, old exports."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csvr_jax import checkpoint
from csvr_jax.models import downstream
from csvr_jax.train import backbone_init
from csvr_jax.train import networks
import pretrain_fixtures as pf  # tests/ is on sys.path


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  """(config, Networks, variables of the ten networks, export dir written by the export builder from them)."""
  c = pf.tiny_config()
  nets = networks.Networks(c)
  variables = pf.fast_init(nets, seed=3)(None)
  export = str(tmp_path_factory.mktemp('pretrained') / 'export')
  checkpoint.write_export(export, c, {n: v['params'] for n, v in variables.items()},
                          {n: v.get('batch_stats', {}) for n, v in variables.items()}, 7, 'CSVR')
  return c, nets, variables, export


def _inputs(c, seed=0):
  r = np.random.default_rng(seed)
  t, s = c.data.clip_len, c.data.crop_size
  clip = jnp.asarray(r.normal(size=(3, t, s, s, 3)), jnp.float32)
  pose_in = jnp.asarray(r.random((3, t, 18, 2)), jnp.float32)
  conf = jnp.asarray(r.random((3, t, 18)) > 0.3, jnp.float32)
  return clip, pose_in, conf


def _reference(nets, variables, clip, pose_in, conf):
  """Pooled f_s, f_d and f_i as pretraining computes them (Networks.apply, inference mode)."""
  run = lambda name, *args, **kw: nets.apply(name, variables[name]['params'], variables[name].get('batch_stats', {}),
                                             *args, train=False, **kw)[0]
  v_out = run('vnet', clip)
  flat = pose_in.reshape(pose_in.shape[:2] + (-1,))
  _, f_d = run('pose_g', flat, (conf > 0).astype(jnp.float32), noise_keys=jax.random.split(jax.random.key(0), 3))
  f_i = run('integration', v_out['features'], f_d)
  return {'vnet': v_out['pooled'], 'fd': f_d.mean(axis=1), 'fi': f_i.mean(axis=(1, 2, 3))}


def test_features_from_an_export_are_the_pretraining_networks(pretrained):
  c, nets, variables, export = pretrained
  meta = checkpoint.read_export_meta(export)
  assert meta['branches'] == {'pose_g': {'channels': 4, 'encoder_layers': 6, 'noise_dim': 4, 'out_len': 4},
                              'integration': {'type': 'adain'}}
  assert meta['step'] == 7 and meta['arch'] == 'r3d_18'
  inputs = _inputs(c)
  want = _reference(nets, variables, *inputs)
  c = c.copy_and_resolve_references()
  c.checkpoint.init_from = export
  for features in downstream.FEATURES:
    c.finetune.features = features
    model, loaded, got_meta = backbone_init.load_downstream(c)
    assert got_meta == meta and set(loaded['params']) == set(downstream.NETWORKS[features])
    if features != 'vnet':  # the encoder of the pretrained generator, under the generator's names
      enc = loaded['params']['pose_g']
      assert set(enc) == {f'enc{i}{s}' for i in range(6) for s in ('', '_bn')}
      jax.tree.map(np.testing.assert_array_equal, enc, {k: variables['pose_g']['params'][k] for k in enc})
    got = model.apply(loaded, *inputs, train=False)['pooled']
    np.testing.assert_allclose(got, want[features], rtol=1e-5, atol=1e-6, err_msg=features)
  assert not np.allclose(want['fi'], want['vnet'])  # f_i is not f_s


def test_old_export_serves_vnet_and_says_how_to_reexport_for_fi(pretrained, tmp_path):
  c, _, variables, _ = pretrained
  old = str(tmp_path / 'old_export')
  checkpoint.save_backbone_export(old, variables['vnet'], checkpoint.export_meta(c, 3, 'before branches'))
  c = c.copy_and_resolve_references()
  c.checkpoint.init_from = old
  model, loaded, meta = backbone_init.load_downstream(c)  # 'vnet', the default
  assert 'branches' not in meta and set(loaded['params']) == {'vnet'}
  for features in ('fi', 'fd'):
    c.finetune.features = features
    with pytest.raises(ValueError) as e:
      backbone_init.load_downstream(c)
    message = str(e.value)
    assert '\n' not in message and old in message and '--mode=export' in message and repr(features) in message


def test_random_init_initialises_every_part_like_its_export(tmp_path):
  from csvr_jax import experiment
  c = pf.tiny_config()
  c.finetune.features = 'fi'
  model, fresh, meta = backbone_init.load_downstream(c)
  assert meta is None and set(fresh['params']) == {'vnet', 'pose_g', 'integration'}
  vnet_only = c.copy_and_resolve_references()
  vnet_only.finetune.features = 'vnet'
  _, vnet_fresh, _ = backbone_init.load_downstream(vnet_only)  # the V-Network part does not depend on features
  jax.tree.map(np.testing.assert_array_equal, vnet_fresh['params']['vnet'], fresh['params']['vnet'])
  c.checkpoint.init_from = experiment.random_init_export(c, str(tmp_path))  # the demo's "from scratch" export
  _, exported, _ = backbone_init.load_downstream(c)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a, np.float32), b), fresh, exported)
  out = model.apply(exported, *_inputs(c), train=False)['pooled']
  assert out.shape == (3, 32) and np.isfinite(out).all()
