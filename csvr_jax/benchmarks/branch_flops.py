"""Parameters and forward FLOPs of every CSVR network at the config's sizes (for MFU accounting).

`branch_rows(config)` -> [(name, params, forward GFLOPs per clip)], counted by XLA's cost analysis of the
lowered (not compiled) forward pass on abstract shapes, batch 1, inference-mode BatchNorm. Nothing is
allocated, so it runs on a laptop for the paper's sizes. Per pretraining step and clip the networks run:
vnet x1, inet on max_iframes frames (the row already counts all of them), heads x1, pose_g x1, pose_d x2
(real, fake) plus the gradient-penalty pass, integration x1, each video_g x1, each video_d x2 (real, fake);
a backward pass costs about twice its forward. With model.video_gan='tgan2' the video rows are what training
runs: the generators' level path (sparse frames) and every level's discriminator. `video_branch_rows` puts the
dense and tgan2 video branches side by side. csvr_jax/benchmarks/flops.py prints the tables.

Usage (any full config, e.g. configs/base.py's):
  for name, params, gflops in branch_rows(config):
    print(f'{name:14s} {params / 1e6:8.2f} M {gflops:8.2f} GFLOP')
"""
import copy
import math

import jax
import jax.numpy as jnp

from csvr_jax import models
from csvr_jax.models import heads
from csvr_jax.models import integration
from csvr_jax.models import pose_gan
from csvr_jax.models import video_gan
from csvr_jax.train import networks


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
                                       noise_dim=m.pose_noise_dim, out_len=d.future_len, output=m.pose_output,
                                       dtype=dt, bn_axis_name=bn_axis_name),
      'pose_d': pose_gan.PoseDiscriminator(channels=m.pose_channels, dtype=dt),
  }
  for target, frames in (('rec', d.clip_len), ('pred', d.future_len)):
    mods['video_g_' + target], mods['video_d_' + target] = networks.video_gan_modules(config, frames,
                                                                                       bn_axis_name)
  return mods


def _measure(module, *args, **kwargs):
  """(params, forward FLOPs, abstract output) of module.apply(variables, *args, train=False, **kwargs)."""
  key = jax.random.key(0)
  variables = jax.eval_shape(lambda a, kw: module.init(key, *a, train=False, **kw), args, kwargs)
  params = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  fn = lambda v, a, kw: module.apply(v, *a, train=False, **kw)
  # Lowered for the CPU: a GPU lowering leaves cuDNN convolutions out of (or gives no) cost analysis.
  with jax.default_device(jax.local_devices(backend='cpu')[0]):
    cost = jax.jit(fn).lower(variables, args, kwargs).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax returned one dict per device
  return params, float(cost['flops']), jax.eval_shape(fn, variables, args, kwargs)


def branch_rows(config):
  """[(name, params, forward GFLOPs per clip)] for every network; see the module docstring."""
  m, d = config.model, config.data
  mods = branch_modules(config)
  s = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  n, t, tf, crop, nm = m.num_joints, d.clip_len, d.future_len, d.crop_size, d.max_iframes
  rows, out = [], {}

  def add(name, *args, **kwargs):
    params, flops, out[name] = _measure(mods[name], *args, **kwargs)
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
  for target in ('rec', 'pred'):
    add('video_g_' + target, f_i, s(1, m.video_noise_dim), **_level_kwargs(config))
    add('video_d_' + target, out['video_g_' + target])  # unconditional, as the engine calls it
  del tf
  return rows


def _level_kwargs(config):
  """The tgan2 generator's training call (level path): offsets for one sample; {} for the dense GAN."""
  if config.model.video_gan != 'tgan2':
    return {}
  return {'offsets': jax.ShapeDtypeStruct((1, config.model.video_gan_levels - 1), jnp.int32)}


def video_branch_rows(config, variants=networks.VIDEO_GANS):
  """{variant: {part: forward GFLOPs per clip}} of the video branch in one training step at the config's
  sizes: 'video_g_rec', 'video_g_pred' (one pass each), 'video_d_rec', 'video_d_pred' (real + fake: two
  passes), 'generators', 'discriminators', 'total', 'video_g_dense' (one generator rendering every frame at
  full resolution: inference), and for tgan2 'video_d_level{l}' (one pass of level l's discriminator)."""
  f_i = jax.ShapeDtypeStruct((1,) + networks.vnet_feature_shape(config), jnp.float32)
  z = jax.ShapeDtypeStruct((1, config.model.video_noise_dim), jnp.float32)
  d = config.data
  table = {}
  for variant in variants:
    c = copy.deepcopy(config)
    c.model.video_gan = variant
    row = {}
    for target, frames in (('rec', d.clip_len), ('pred', d.future_len)):
      gen, disc = networks.video_gan_modules(c, frames)
      _, g_flops, fake = _measure(gen, f_i, z, **_level_kwargs(c))
      _, d_flops, _ = _measure(disc, fake)
      row['video_g_' + target], row['video_d_' + target] = g_flops / 1e9, 2 * d_flops / 1e9
      if target == 'rec':
        row['video_g_dense'] = _measure(gen, f_i, z)[1] / 1e9
        if variant == 'tgan2':
          level_d = video_gan.VideoDiscriminator(c.model.video_d_channels, dtype=jnp.dtype(c.model.dtype))
          for l, x in enumerate(fake):
            row[f'video_d_level{l}'] = _measure(level_d, x)[1] / 1e9
    row['generators'] = row['video_g_rec'] + row['video_g_pred']
    row['discriminators'] = row['video_d_rec'] + row['video_d_pred']
    row['total'] = row['generators'] + row['discriminators']
    table[variant] = row
  return table
