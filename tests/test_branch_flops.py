"""branch_rows: every network reported, positive counts, params equal to the modules' own, FLOPs analytic."""
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
