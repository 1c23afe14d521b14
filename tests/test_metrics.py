"""Metric files, progress line, image grids and the NaN/Inf stop."""
import json
import os

import numpy as np
import pytest

from csvr_jax import metrics


def test_scalars_go_to_jsonl_and_tensorboard(tmp_path):
  w = metrics.MetricWriter(str(tmp_path), total_steps=100, batch_size=8)
  w.write_scalars(10, {'total/loss': 1.5, 'pose/l2': np.float32(0.25)})
  w.write_scalars(20, {'total/loss': 1.0, 'pose/l2': 0.5})
  w.close()
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [l['step'] for l in lines] == [10, 20]
  assert lines[1]['total/loss'] == 1.0 and lines[0]['pose/l2'] == 0.25
  assert lines[1]['perf/clips_per_sec'] == pytest.approx(8 * lines[1]['perf/steps_per_sec'])
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tb'))


def test_progress_line_has_rate_eta_and_losses():
  w = metrics.MetricWriter.__new__(metrics.MetricWriter)
  w.total_steps, w.main_keys = 1000, None
  line = w.progress_line(40, {'perf/steps_per_sec': 2.0, 'perf/clips_per_sec': 32.0, 'total/loss': 1.25})
  assert '40/1000' in line and '2.00 steps/s' in line and '32.0 clips/s' in line
  assert 'ETA 8m00s' in line and 'total/loss 1.25' in line


def test_nonfinite_names_loss_and_step():
  metrics.check_finite(3, {'a/loss': 1.0, 'b': 2.0})
  with pytest.raises(metrics.NonFiniteLossError, match=r'video_rec/g_loss is nan at step 7'):
    metrics.check_finite(7, {'grad_norm/vnet': 1.0, 'video_rec/g_loss': float('nan')})
  with pytest.raises(metrics.NonFiniteLossError, match=r'grad_norm/vnet is inf at step 2'):
    metrics.check_finite(2, {'grad_norm/vnet': float('inf'), 'x/loss': 0.0})


def test_frame_grid_and_pose_grid(tmp_path):
  rng = np.random.RandomState(0)
  real = rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
  grid = metrics.frame_grid([real, -real, real, real], max_frames=3)
  assert grid.shape == (4 * 9, 3 * 9, 3) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[:8, :8], metrics.video_to_uint8(real[0]))
  pose = rng.uniform(0.2, 0.8, (4, 18, 2))
  img = metrics.pose_grid(pose, pose + 0.05, np.ones((4, 18)))
  assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
  red = (img[..., 0] > 200) & (img[..., 1] < 80)
  assert red.sum() > 20  # predicted skeletons are drawn
  w = metrics.MetricWriter(str(tmp_path), total_steps=10, batch_size=2)
  w.write_image(5, 'video/frames', grid)
  w.close()
  assert (tmp_path / 'images' / 'video_frames_00000005.png').exists()
