"""Parameters and forward FLOPs of every CSVR network at the config's sizes (for MFU accounting).

`branch_rows(config)` -> [(name, params, forward GFLOPs per clip)], counted by XLA's cost analysis of the
lowered (not compiled) forward pass on abstract shapes, batch 1, inference-mode BatchNorm. Nothing is
allocated, so it runs on a laptop for the paper's sizes. Per pretraining step and clip the networks run:
vnet x1, inet on max_iframes frames (the row already counts all of them), heads x1, pose_g x1, pose_d x2
(real, fake) plus the gradient-penalty pass, integration x1, each video_g x1, each video_d x2 (real, fake);
a backward pass costs about twice its forward. csvr_jax/benchmarks/flops.py prints the table.

Usage:
  from configs import base
  for name, params, gflops in branch_rows(base.get_config()):
    print(f'{name:14s} {params / 1e6:8.2f} M {gflops:8.2f} GFLOP')
"""
import math

import jax
import jax.numpy as jnp

from csvr_jax import models
from csvr_jax.models import heads
from csvr_jax.models import integration
from csvr_jax.models import pose_gan
from csvr_jax.models import video_gan


def branch_modules(config, bn_axis_name=None):
  """{name: linen module} of the CSVR networks, built from config.model / config.data."""
  m, d = config.model, config.data
  dt = jnp.dtype(m.dtype)
  kw = dict(width=m.width, dtype=dt, bn_axis_name=bn_axis_name)
  mods = {
      'vnet': models.get_video_backbone(m.vnet, conv_impl=m.conv_impl, **kw),
      'inet': models.get_image_backbone(m.inet, **kw),
      'head_v': heads.ProjectionHead(hidden=m.head_hidden, out=m.embed_dim, dtype=dt),
      'head_i': heads.ProjectionHead(hidden=m.head_hidden, out=m.embed_dim, dtype=dt),
      'pose_g': pose_gan.PoseGenerator(channels=m.pose_channels, encoder_layers=m.pose_encoder_layers,
                                       noise_dim=m.pose_noise_dim, out_len=d.future_len, dtype=dt,
                                       bn_axis_name=bn_axis_name),
      'pose_d': pose_gan.PoseDiscriminator(channels=m.pose_channels, dtype=dt),
  }
  clip_shape = (d.clip_len, d.crop_size, d.crop_size)
  future_shape = (d.future_len, d.crop_size, d.crop_size)
  for target, shape in (('rec', clip_shape), ('pred', future_shape)):
    mods['video_g_' + target] = video_gan.VideoGenerator(
        channels=m.video_g_channels, noise_dim=m.video_noise_dim, out_shape=shape, dtype=dt,
        bn_axis_name=bn_axis_name)
    mods['video_d_' + target] = video_gan.VideoDiscriminator(channels=m.video_d_channels, dtype=dt)
  return mods


def _measure(module, *args):
  """(params, forward FLOPs, abstract output) of module.apply(variables, *args, train=False)."""
  key = jax.random.key(0)
  variables = jax.eval_shape(lambda *a: module.init(key, *a, train=False), *args)
  params = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  fn = lambda v, *a: module.apply(v, *a, train=False)
  # Lowered for the CPU: a GPU lowering leaves cuDNN convolutions out of (or gives no) cost analysis.
  with jax.default_device(jax.local_devices(backend='cpu')[0]):
    cost = jax.jit(fn).lower(variables, *args).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax returned one dict per device
  return params, float(cost['flops']), jax.eval_shape(fn, variables, *args)


def branch_rows(config):
  """[(name, params, forward GFLOPs per clip)] for every network; see the module docstring."""
  m, d = config.model, config.data
  mods = branch_modules(config)
  s = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  n, t, tf, crop, nm = m.num_joints, d.clip_len, d.future_len, d.crop_size, d.max_iframes
  rows, out = [], {}

  def add(name, *args):
    params, flops, out[name] = _measure(mods[name], *args)
    rows.append((name, params, flops / 1e9))

  add('vnet', s(1, t, crop, crop, 3))
  add('inet', s(nm, crop, crop, 3))
  add('head_v', out['vnet']['pooled'])
  add('head_i', out['inet']['pooled'])
  add('pose_g', s(1, t, 2 * n), jax.ShapeDtypeStruct((1, t, n), jnp.bool_), s(1, m.pose_noise_dim))
  p_gen, feats = out['pose_g']
  add('pose_d', p_gen, s(1, t, 2 * n))
  mods['integration'] = integration.get_integration(m.integration, channels=out['vnet']['features'].shape[-1],
                                                    dtype=jnp.dtype(m.dtype))
  add('integration', out['vnet']['features'], feats[-1])
  f_i = out['integration'][0]
  cond = s(1, f_i.shape[-1])
  for target in ('rec', 'pred'):
    add('video_g_' + target, f_i, s(1, m.video_noise_dim))
    add('video_d_' + target, out['video_g_' + target], cond)
  del tf
  return rows
