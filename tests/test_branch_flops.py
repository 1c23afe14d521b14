"""branch_rows: every network reported, positive counts, params equal to the modules' own, FLOPs analytic."""
import math

from configs import base
from csvr_jax.benchmarks import branch_flops


def _tiny_config():
  c = base.get_config()
  c.model.width = 0.125
  c.model.pose_channels, c.model.video_g_channels, c.model.video_d_channels = 4, 4, 4
  c.model.head_hidden, c.model.embed_dim = 16, 8
  c.data.clip_len = c.data.future_len = 8
  c.data.crop_size = 32
  return c


def test_branch_rows_tiny():
  c = _tiny_config()
  rows = {name: (params, gflops) for name, params, gflops in branch_flops.branch_rows(c)}
  assert set(rows) == {'vnet', 'inet', 'head_v', 'head_i', 'pose_g', 'pose_d', 'integration',
                       'video_g_rec', 'video_d_rec', 'video_g_pred', 'video_d_pred'}
  assert all(p > 0 and g > 0 for p, g in rows.values())
  # g^V: Dense(C -> 16) - ReLU - Dense(16 -> 8) on one clip: 2*C*16 + 2*16*8 multiply-adds, + bias/ReLU.
  c_v = 512 // 8
  params, gflops = rows['head_v']
  assert params == c_v * 16 + 16 + 16 * 8 + 8
  macs = c_v * 16 + 16 * 8
  assert 2 * macs <= gflops * 1e9 <= 2 * macs + 100
  # Both generators are built for the configured clip shapes; rec and pred have the same size here.
  mods = branch_flops.branch_modules(c)
  assert mods['video_g_rec'].out_shape == (8, 32, 32) and mods['video_g_pred'].out_shape == (8, 32, 32)
  assert rows['video_g_rec'] == rows['video_g_pred']


def _taps(shape, kernel):
  """In-bounds (input, output) position pairs of a stride-1 'same' convolution (3n - 2 per axis of kernel 3):
  XLA's cost analysis counts these, not the padded kernel volume."""
  return math.prod(3 * n - 2 if k == 3 else n for n, k in zip(shape, kernel))


def _tgan2_generator_training_macs(c=64, noise=32, f_i_channels=512):
  """The tgan2 generator's multiply-adds at the paper's shapes (f_i (2,7,7,512) -> 16x112x112, 4 levels), by
  hand from the design: a 1x1x1 projection to 4c, three 3D blocks (time x2 each, space x2 in the last) to
  16x14x14, then per-frame blocks on 8, 4, 2 frames (28, 56, 112 pixels; widths 4c, 2c, c), a 3x3 head each."""
  w = 4 * c
  macs = noise * c + 2 * 7 * 7 * (f_i_channels + c) * w
  for t_in, s_in, t_out, s_out in ((2, 7, 4, 7), (4, 7, 8, 7), (8, 7, 16, 14)):
    macs += 2 * _taps((t_out, s_out, s_out), (3, 3, 3)) * w * w + t_in * s_in * s_in * w * w  # + 1x1x1 shortcut
  macs += 16 * _taps((14, 14), (3, 3)) * w * 3
  for frames, res, c_in, c_out in ((8, 14, w, 4 * c), (4, 28, 4 * c, 2 * c), (2, 56, 2 * c, c)):
    pairs = frames * _taps((2 * res, 2 * res), (3, 3))
    macs += pairs * (c_in * c_out + c_out * c_out + c_out * 3) + frames * res * res * c_in * c_out
  return macs


def test_video_branch_dense_vs_tgan2_at_the_paper_shapes():
  c = base.get_config()
  table = branch_flops.video_branch_rows(c)
  dense, sparse = table['dense'], table['tgan2']
  conv = 2 * _tgan2_generator_training_macs() / 1e9
  assert conv <= sparse['video_g_rec'] <= 1.01 * conv  # the rest: BatchNorm, ReLU, tanh, additions
  assert sparse['video_g_rec'] == sparse['video_g_pred']
  levels = [sparse[f'video_d_level{l}'] for l in range(c.model.video_gan_levels)]
  assert levels == sorted(levels)  # the finest level's D costs most
  assert abs(sparse['video_d_rec'] - 2 * sum(levels)) <= 1e-3 * sparse['video_d_rec']  # real + fake, all levels
  assert dense['video_g_dense'] == dense['video_g_rec']
  assert sparse['video_g_rec'] < sparse['video_g_dense'] < dense['video_g_dense']
  for row in table.values():
    assert row['total'] == row['generators'] + row['discriminators']
  assert sparse['total'] <= 0.5 * dense['total']  # the target: at most half of the dense branch
