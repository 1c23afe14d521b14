"""Training checkpoints: state + data iterator + config round trip, keep-N, export mode, SIGTERM flag."""
import json
import os
import signal

import grain
import jax
import numpy as np
from ml_collections import ConfigDict

from csvr_jax import checkpoint
from csvr_jax import parallel
from configs import base


def _state(mesh, scale=1.0):
  tree = {'params': {'vnet': {'w': np.arange(6, dtype=np.float32).reshape(2, 3) * scale},
                     'pose_g': {'b': np.ones(2, np.float32)}, 'integration': {'c': np.zeros(2, np.float32)}},
          'batch_stats': {'vnet': {'mean': np.full(3, scale, np.float32)}},
          'step': np.int32(3), 'rng': np.array([1, 2], np.uint32)}
  return parallel.replicate(tree, mesh)


def test_state_iterator_config_roundtrip_and_keep(tmp_path):
  mesh = parallel.make_mesh(ConfigDict(dict(mesh=(('data', -1),))))
  config = base.get_config()
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  ckpt = checkpoint.TrainCheckpointer(str(tmp_path), keep=2)
  for step in (1, 2, 3):
    next(it)
    assert ckpt.save(step, _state(mesh, scale=step), it, config)
  ckpt.wait()
  assert ckpt.manager.all_steps() == [2, 3] and ckpt.latest_step() == 3
  expected_next = next(it)
  ckpt.close()

  it2 = iter(grain.MapDataset.range(100).to_iter_dataset())
  ckpt2 = checkpoint.TrainCheckpointer(str(tmp_path), keep=2)
  target = checkpoint.abstract_like(_state(mesh, scale=0.0))
  got = ckpt2.restore(target, it2)
  ckpt2.close()
  np.testing.assert_array_equal(got['params']['vnet']['w'], np.arange(6).reshape(2, 3) * 3.0)
  assert got['params']['vnet']['w'].sharding == target['params']['vnet']['w'].sharding
  assert next(it2) == expected_next == 3
  saved_config = json.load(open(tmp_path / 'checkpoints' / '3' / 'config' / 'metadata'))
  assert saved_config['train']['batch_size'] == config.train.batch_size


def test_a_checkpoint_of_another_model_is_a_one_line_error_naming_format_and_keys(tmp_path):
  import pytest
  mesh = parallel.make_mesh(ConfigDict(dict(mesh=(('data', -1),))))
  config = base.get_config()
  config.model.video_gan = 'dense'
  ckpt = checkpoint.TrainCheckpointer(str(tmp_path), keep=2)
  ckpt.save(3, _state(mesh), None, config)
  ckpt.wait()
  assert json.load(open(tmp_path / 'checkpoints' / '3' / 'format' / 'metadata')) == {
      'format_version': checkpoint.FORMAT_VERSION}
  other = _state(mesh)
  other['params']['video_d_rec'] = {'level0': np.zeros(2, np.float32)}  # another video branch
  now = base.get_config()  # tgan2, the default
  with pytest.raises(checkpoint.ResumeError) as e:
    ckpt.restore(checkpoint.abstract_like(other), config=now)
  message = str(e.value)
  assert '\n' not in message and 'does not fit this model (checkpoint format 2;' in message
  assert "model.video_gan 'dense' vs 'tgan2'" in message
  import shutil
  shutil.rmtree(tmp_path / 'checkpoints' / '3' / 'format')  # as a checkpoint written before formats existed
  with pytest.raises(checkpoint.ResumeError, match=r'checkpoint format 1 \(written before formats were recorded\)'):
    ckpt.restore(checkpoint.abstract_like(other))
  ckpt.close()


def test_export_mode_writes_vnet(tmp_path):
  mesh = parallel.make_mesh(ConfigDict(dict(mesh=(('data', -1),))))
  config = base.get_config()
  config.model.width = 0.25
  ckpt = checkpoint.TrainCheckpointer(str(tmp_path), keep=1)
  ckpt.save(5, _state(mesh, scale=2.0))
  ckpt.close()
  export_dir = checkpoint.export_mode(config, str(tmp_path))
  variables, meta = checkpoint.load_backbone_export(export_dir)
  assert meta['step'] == 5 and meta['arch'] == 'r3d_18' and meta['width'] == 0.25
  np.testing.assert_array_equal(variables['params']['w'], np.arange(6).reshape(2, 3) * 2.0)
  np.testing.assert_array_equal(variables['batch_stats']['mean'], np.full(3, 2.0))
  assert 'pose_g' not in variables['params']
  branches = checkpoint.load_branches_export(export_dir, meta, 'this test')  # and the branches beside it
  np.testing.assert_array_equal(branches['pose_g']['params']['b'], np.ones(2))
  assert branches['integration']['batch_stats'] == {} and meta['branches']['integration']['type'] == 'adain'


def test_export_without_checkpoint_is_clear(tmp_path):
  try:
    checkpoint.export_mode(base.get_config(), str(tmp_path))
  except FileNotFoundError as e:
    assert 'no training checkpoint' in str(e)
  else:
    raise AssertionError('expected FileNotFoundError')


def test_sigterm_sets_flag():
  flag = checkpoint.PreemptionFlag()
  try:
    assert not flag.any_process()
    os.kill(os.getpid(), signal.SIGTERM)
    assert flag.any_process()
  finally:
    flag.restore()
