"""`python -m csvr_jax.bench --report=flops`: parameters and forward GFLOPs of every backbone (Table IX).

Analytic: every convolution's FLOPs are 2 x (output elements) x (kernel volume x input channels), i.e. a
multiply-add counts as 2 FLOPs, read off the real modules while jax.eval_shape traces them (nothing is
computed or allocated). BatchNorm, ReLU, pooling and residual additions are not counted (< 1% here), nor is
any classifier - the same convention as torchvision's published numbers, printed beside ours.
Then csvr_jax/benchmarks/branch_flops.py's per-network table for configs/base.py, and the
video branch of one training step with the dense and the tgan2 video GAN side by side (model.video_gan).
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from csvr_jax import models
from csvr_jax.benchmarks import branch_flops
from csvr_jax.benchmarks import common
from csvr_jax.models.backbone_layers import Conv

# torchvision's metadata (num_params minus the 400-way classifier; 2 x its '_ops' GMACs), 16 frames.
REFERENCES = {
    'r3d_18': dict(params=33_166_272, gflops=2 * 40.697, size=112),
    'r2plus1d_18': dict(params=31_300_125, gflops=2 * 40.519, size=112),
    'mc3_18': dict(params=11_490_240, gflops=2 * 43.343, size=112),
    's3d': dict(params=7_910_048, gflops=2 * 17.979, size=224),  # torchvision's S3D needs >= 224 pixels
}


def backbone_flops(name, clip_len=16, size=112, width=1.0):
  """(params, forward FLOPs) of backbone `name` on one clip of clip_len x size x size (convolutions only).

  For an image backbone the clip_len frames are clip_len separate images (FLOPs summed), e.g. the I-frames.
  """
  image = name in models.IMAGE_BACKBONES
  model = (models.get_image_backbone(name, width=width) if image
           else models.get_video_backbone(name, width=width))
  shape = (clip_len, size, size, 3) if image else (1, clip_len, size, size, 3)
  flops = []

  def count_conv(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, Conv) and context.method_name == '__call__':
      x, mod = args[0], context.module
      flops.append(2 * math.prod(out.shape) * math.prod(mod.kernel_size) * x.shape[-1])
    return out

  with nn.intercept_methods(count_conv):
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, False), jnp.zeros(shape))
  params = sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))
  return params, sum(flops)


def backbone_rows(clip_len=16, size=112):
  """[(name, clip shape string, params, GFLOPs, reference params or None, reference GFLOPs or None)]."""
  rows = []
  for name in list(models.VIDEO_BACKBONES) + list(models.IMAGE_BACKBONES):
    image = name in models.IMAGE_BACKBONES
    frames = 1 if image else clip_len
    ref = REFERENCES.get(name, {})
    params, flops = backbone_flops(name, frames, size)
    same_size = ref.get('size') == size
    rows.append((name, f'{frames}x{size}x{size}', params, flops / 1e9, ref.get('params'),
                 ref.get('gflops') if same_size else None))
    if ref and not same_size:  # also at the size the reference was measured at
      params, flops = backbone_flops(name, frames, ref['size'])
      rows.append((name, f'{frames}x{ref["size"]}x{ref["size"]}', params, flops / 1e9, ref['params'],
                   ref['gflops']))
  return rows


def _fmt(value, spec):
  return format('-', spec[0] + spec[1:].split(',')[0].split('.')[0]) if value is None else format(value, spec)


def print_backbone_table(rows):
  print('Backbones: forward FLOPs of one clip (convolutions, multiply-add = 2 FLOPs, no classifier)')
  print(f'{"backbone":12s} {"input":>11s} {"params":>12s} {"GFLOP":>8s} {"ref params":>12s} {"ref GFLOP":>9s}')
  for name, shape, params, gflops, ref_params, ref_gflops in rows:
    print(f'{name:12s} {shape:>11s} {params:>12,d} {gflops:8.2f} {_fmt(ref_params, ">12,d")} '
          f'{_fmt(ref_gflops, ">9.2f")}')


def print_branch_table():
  """The per-network table of branch_flops.branch_rows(configs/base.py), then the video branch's."""
  c = common.recipe_config('base')
  print('\nCSVR networks at configs/base.py sizes (XLA cost analysis, forward, batch 1)')
  print(f'{"network":14s} {"params":>12s} {"GFLOP":>9s}')
  for name, params, gflops in branch_flops.branch_rows(c):
    print(f'{name:14s} {params:>12,d} {gflops:9.2f}')
  print_video_branch_table(c, branch_flops.video_branch_rows(c))


VIDEO_PARTS = (('video_g_rec', 'video_g_rec'), ('video_g_pred', 'video_g_pred'),
               ('video_d_rec (real+fake)', 'video_d_rec'), ('video_d_pred (real+fake)', 'video_d_pred'),
               ('generators', 'generators'), ('discriminators', 'discriminators'),
               ('total (training)', 'total'), ('one G rendering densely', 'video_g_dense'))


def print_video_branch_table(c, table):
  """table: branch_flops.video_branch_rows(c) for 'dense' and 'tgan2'."""
  print(f'\nVideo branch, one training step per clip ({c.data.clip_len}x{c.data.crop_size}x{c.data.crop_size}, '
        f'G {c.model.video_g_channels} / D {c.model.video_d_channels} channels; forward GFLOP, XLA cost analysis)')
  print(f'{"part":26s} {"dense":>9s} {"tgan2":>9s} {"tgan2/dense":>11s}')
  dense, sparse = table['dense'], table['tgan2']
  for label, key in VIDEO_PARTS:
    print(f'{label:26s} {dense[key]:9.2f} {sparse[key]:9.2f} {sparse[key] / dense[key]:11.3f}')
  levels = sorted(k for k in sparse if k.startswith('video_d_level'))
  print('tgan2 discriminator per level, one pass: ' + ', '.join(
      f'L{k[len("video_d_level"):]} {sparse[k]:.2f}' for k in levels))


def main():
  print_backbone_table(backbone_rows())
  print_branch_table()
