"""The pretraining engine: stages, one-stage == alternating gradients, 8 devices == 1 device, end to end,
compile once per stage, NaN stop, export."""
import json
import os

import jax
import numpy as np
import pytest

from configs import base
from csvr_jax import checkpoint
from csvr_jax import metrics
from csvr_jax import parallel
from csvr_jax.train import networks
from csvr_jax.train import pretrain
from csvr_jax.train import schedule
from csvr_jax.train import state as state_lib
from csvr_jax.train import steps as steps_lib
import pretrain_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)


@pytest.fixture(scope='module')
def engine():
  c = fx.tiny_config()
  nets = networks.Networks(c)
  return c, nets, fx.fast_init(nets)


def _state(c, nets, init, mesh):
  opt = state_lib.make_optimizers(c, c.train.total_steps)
  st, _ = state_lib.create_state(init, opt, jax.random.PRNGKey(0), parallel.replicated(mesh))
  return st, opt


def test_bad_crop_is_one_line():
  c = fx.tiny_config()
  c.data.crop_size = 40
  with pytest.raises(ValueError, match='config.data.crop_size=40'):
    networks.Networks(c)



def test_apply_traces_a_network_definition_once_and_passes_flags_as_python_values(engine):
  """Networks.apply runs each module definition as one nested jit: the reconstruction and prediction
  discriminators (one definition) on inputs of one shape share a single trace; a non-array keyword (a flag the
  module branches on) reaches the module as itself, not as a traced value."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  c, nets, init = engine
  variables = init(None)
  assert nets.modules['video_d_rec'] == nets.modules['video_d_pred']
  clip = np.zeros((2, c.data.clip_len, c.data.crop_size, c.data.crop_size, 3), np.float32)
  for name in ('video_d_rec', 'video_d_pred'):
    nets.apply(name, variables[name]['params'], {}, clip, train=False)
  assert networks._traced_once(nets.modules['video_d_rec'], False, False, ())._cache_size() == 1  # pylint: disable=protected-access

  class Doubles(nn.Module):
    @nn.compact
    def __call__(self, x, train=False, double=False):
      return 2 * x if double else x
  flagged = networks.Networks(c)
  flagged.modules['doubles'] = Doubles()
  assert float(flagged.apply('doubles', {}, {}, np.ones(1, np.float32), train=False, double=True)[0][0]) == 2.0
  assert float(flagged.apply('doubles', {}, {}, np.ones(1, np.float32), train=False, double=False)[0][0]) == 1.0


def test_conv_impl_reaches_the_v_network_and_keeps_its_parameters():
  """model.conv_impl (fold_s2d in the GPU recipes) builds the same parameter tree as the CPU configs' 'fold_taps'."""
  c, pad8 = fx.tiny_config(), fx.tiny_config()
  pad8.model.conv_impl = 'fold_s2d'
  assert networks.Networks(pad8).modules['vnet'].conv_impl == 'fold_s2d'
  shapes = lambda cfg: jax.tree.map(lambda x: x.shape, jax.eval_shape(
      networks.Networks(cfg).modules['vnet'].init, jax.random.key(0),
      jax.ShapeDtypeStruct((1, cfg.data.clip_len, cfg.data.crop_size, cfg.data.crop_size, 3), np.float32)))
  assert shapes(pad8) == shapes(c)
  pad8.model.conv_impl = 'nope'
  with pytest.raises(ValueError, match="unknown conv impl 'nope'"):
    shapes(pad8)

@pytest.mark.parametrize('video_gan', ['dense', 'tgan2'])
def test_one_stage_and_alternating_give_the_same_gradients(engine, video_gan):
  """tgan2 (the default): the joint stage, pose D and both video D's (three levels, a D each) trained at once.
  dense: the video branch alone (its two D's; the one-stage update is the same code, at half the compile)."""
  c, nets, init = engine
  if video_gan == 'tgan2':
    c = fx.tiny_config()
    c.model.video_gan, c.model.video_gan_levels = 'tgan2', 3
    nets = networks.Networks(c)
    init = fx.fast_init(nets)
  else:
    c = c.copy_and_resolve_references()
    c.loss.branches = ('video',)
  mesh = parallel.make_mesh(c, jax.devices()[:1])  # (8 == 1 device: test_eight_devices_match_one_device)
  st, opt = _state(c, nets, init, mesh)
  stage = schedule.resolve_stages(c, c.train.total_steps)[0]
  fns = steps_lib.StepFns(nets, c, stage, opt, mesh)
  batch = parallel.host_to_global(fx.random_batch(c), mesh)
  g1, d1 = jax.device_get(fns.grads_fn['one_stage'](st, batch))
  g2, d2 = jax.device_get(fns.grads_fn['alternating'](st, batch))
  if video_gan == 'dense':
    assert set(g1) == {'vnet', 'pose_g', 'integration', 'video_g_rec', 'video_g_pred'}
    assert set(d1) == {'video_d_rec', 'video_d_pred'}
  else:
    assert set(g1) == {'vnet', 'inet', 'heads', 'pose_g', 'integration', 'video_g_rec', 'video_g_pred'}
    assert set(d1) == {'pose_d', 'video_d_rec', 'video_d_pred'}
    assert sorted(d1['video_d_rec']) == ['level0', 'level1', 'level2']
  for a, b in ((g1, g2), (d1, d2)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a, b)
  # The adversarial term really reaches the generators: their gradient is not the L2 term's alone.
  assert float(state_lib.global_norm(g1['video_g_rec'])) > 0


def test_pose_adversarial_weight_zero_leaves_the_pose_generator_its_l2_term(engine):
  """loss.pose_adversarial_weight=0 (a diagnostic): G_p's gradient loses the adversarial part, in both updates.
  The pose branch alone (loss.branches): G_p's loss is the same in the joint stage, at a fraction of the compile."""
  c, nets, init = engine
  mesh = parallel.make_mesh(c, jax.devices()[:1])  # (8 == 1 device: test_eight_devices_match_one_device)
  batch = parallel.host_to_global(fx.random_batch(c), mesh)
  grads = {}
  for weight, updates in ((1.0, ('one_stage',)), (0.0, ('one_stage', 'alternating'))):
    cw = c.copy_and_resolve_references()
    cw.loss.branches = ('pose',)
    cw.loss.pose_adversarial_weight = weight
    st, opt = _state(cw, nets, init, mesh)
    stage = schedule.resolve_stages(cw, cw.train.total_steps)[0]
    assert set(stage.losses) == {'pose'}
    fns = steps_lib.StepFns(nets, cw, stage, opt, mesh)
    grads[weight] = [jax.device_get(fns.grads_fn[u](st, batch))[0]['pose_g'] for u in updates]
  one, alt = grads[0.0]
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), one, alt)
  diff = jax.tree.map(lambda x, y: x - y, grads[1.0][0], one)
  assert float(state_lib.global_norm(diff)) > 1e-3 * float(state_lib.global_norm(one))


def test_eight_devices_match_one_device(engine):
  c, nets, init = engine
  batches = [fx.random_batch(c, seed) for seed in range(3)]
  results = []
  for devices in (jax.devices(), jax.devices()[:1]):
    mesh = parallel.make_mesh(c, devices)
    st, opt = _state(c, nets, init, mesh)
    fns = steps_lib.StepFns(nets, c, schedule.resolve_stages(c, 4)[0], opt, mesh)
    losses = []
    for i, b in enumerate(batches):
      st, m = fns.train_step(st, parallel.host_to_global(b, mesh), i)
      losses.append(jax.device_get(m))
    results.append((losses, jax.device_get((st.params, st.batch_stats))))
  (l8, p8), (l1, p1) = results
  for a, b in zip(l8, l1):
    assert a.keys() == b.keys() and 'video_pred/d_loss' in a
    for k in a:
      np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), p8, p1)
  assert l8[-1]['total/loss'] != l8[0]['total/loss']


@pytest.fixture(scope='module')
def dataset_dir(tmp_path_factory):
  return fx.write_toy_dataset(tmp_path_factory.mktemp('toy'))


def _loader(c):
  loader, size = pretrain.make_loader(c)
  return iter(loader), size


def test_end_to_end_two_stages_compile_once_then_export(engine, dataset_dir, tmp_path):
  _, nets, init = engine
  c = fx.two_stage(fx.tiny_config(dataset_dir))
  it, size = _loader(c)
  assert size == 8
  state, fns = pretrain.train(c, str(tmp_path), it, 4, init_variables=init)
  assert int(state.step) == 4
  assert sorted(fns) == ['branches', 'joint']
  for f in fns.values():
    assert f.one_stage_step._cache_size() == 1  # one compile per stage, none per step
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [l['step'] for l in lines] == [1, 2, 3, 4]
  assert 'video_rec/l2' not in lines[1] and 'video_rec/l2' in lines[2] and 'context/top1' in lines[3]
  assert all(np.isfinite(v) for l in lines for v in l.values())
  assert (tmp_path / 'images' / 'pose_real_vs_predicted_00000002.png').exists()
  assert (tmp_path / 'images' / 'video_real_vs_generated_00000004.png').exists()
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']
  saved, step = checkpoint.read_checkpoint_item(str(tmp_path))
  assert step == 4
  np.testing.assert_array_equal(saved['params']['vnet']['stem_conv']['kernel'],
                                np.asarray(state.params['vnet']['stem_conv']['kernel']))
  variables, meta = checkpoint.load_backbone_export(checkpoint.export_mode(c, str(tmp_path)))
  assert meta['step'] == 4 and meta['crop_size'] == 32
  assert variables['batch_stats']['stem_bn']['mean'].shape == state.batch_stats['vnet']['stem_bn']['mean'].shape


class _PoisonAt:
  """Passes batches through; from batch `at` on, the poses are NaN (a corrupt record)."""

  def __init__(self, it, at):
    self.it, self.at, self.n = it, at, 0

  def __next__(self):
    batch = next(self.it)
    self.n += 1
    if self.n >= self.at:
      batch = dict(batch, pose_in=np.full_like(batch['pose_in'], np.nan))
    return batch

  def get_state(self):
    return self.it.get_state()

  def set_state(self, s):
    self.it.set_state(s)


def test_nan_stops_with_loss_and_step_and_keeps_last_good_checkpoint(engine, dataset_dir, tmp_path):
  _, _, init = engine
  c = fx.tiny_config(dataset_dir)
  c.loss.branches = ('pose',)  # the poisoned input's branch alone: the same loop, a fraction of the compile
  c.logging.image_every_steps = 1000
  it, _ = _loader(c)
  with pytest.raises(metrics.NonFiniteLossError, match=r'pose/\w+ is nan at step 3.*last good checkpoint: step 2'):
    pretrain.train(c, str(tmp_path), _PoisonAt(it, 3), 4, init_variables=init)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2']
  saved, _ = checkpoint.read_checkpoint_item(str(tmp_path))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved['params']))
