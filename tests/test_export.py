"""The export format round-trips exactly."""
import numpy as np
import pytest

from csvr_jax import checkpoint


def test_export_roundtrip(tmp_path):
  variables = {'params': {'conv': {'kernel': np.arange(6, dtype=np.float32).reshape(2, 3)}},
               'batch_stats': {'bn': {'mean': np.ones(3, np.float32)}}}
  meta = dict(arch='r3d_18', width=1.0, clip_len=16, crop_size=112, mean=[0.4] * 3, std=[0.2] * 3, step=7,
              source='test')
  checkpoint.save_backbone_export(tmp_path / 'export', variables, meta)
  got, got_meta = checkpoint.load_backbone_export(tmp_path / 'export')
  assert got_meta == meta
  np.testing.assert_array_equal(got['params']['conv']['kernel'], variables['params']['conv']['kernel'])
  np.testing.assert_array_equal(got['batch_stats']['bn']['mean'], variables['batch_stats']['bn']['mean'])


def test_missing_export_is_clear(tmp_path):
  with pytest.raises(FileNotFoundError, match='not a csvr_jax export'):
    checkpoint.load_backbone_export(tmp_path)


def test_export_roundtrip_with_branches(tmp_path):
  variables = {'params': {'conv': {'kernel': np.ones((2, 3), np.float32)}}, 'batch_stats': {}}
  branches = {'pose_g': {'params': {'enc0': {'kernel': np.arange(4, dtype=np.float32)}},
                         'batch_stats': {'enc0_bn': {'mean': np.full(2, 0.5, np.float32)}}},
              'integration': {'params': {'fuse': {'bias': -np.ones(3, np.float32)}}, 'batch_stats': {}}}
  meta = dict(arch='r3d_18', width=1.0, clip_len=16, crop_size=112, mean=[0.4] * 3, std=[0.2] * 3, step=7,
              source='test', branches={'pose_g': dict(channels=64, encoder_layers=6, noise_dim=16, out_len=16),
                                       'integration': dict(type='concat')})
  checkpoint.save_backbone_export(tmp_path / 'export', variables, meta, branches)
  assert sorted(p.name for p in (tmp_path / 'export').iterdir()) == ['branches', 'meta.json', 'variables']
  got_vars, got_meta = checkpoint.load_backbone_export(tmp_path / 'export')
  assert got_meta == meta
  np.testing.assert_array_equal(got_vars['params']['conv']['kernel'], variables['params']['conv']['kernel'])
  got = checkpoint.load_branches_export(tmp_path / 'export', got_meta, 'test')
  import jax
  assert jax.tree.structure(got) == jax.tree.structure(branches)
  jax.tree.map(np.testing.assert_array_equal, got, branches)
  with pytest.raises(ValueError, match='branches'):  # branches the meta does not describe
    checkpoint.save_backbone_export(tmp_path / 'bad', variables, {**meta, 'branches': {}}, branches)
