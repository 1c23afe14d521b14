"""The ten CSVR networks built from the config, their initialisation, and one calling convention.

`Networks.apply(name, params, batch_stats, *args, train, noise_keys=None) -> (output, new_batch_stats)` hides
the per-module signatures from the objectives:
  vnet(clip (B,T,S,S,3)) -> {'pooled', 'features'};   inet(frames (N,S,S,3), mask=(N,)) -> {'pooled', 'features'}
  heads(v_pooled (B,Cv), i_pooled (N,Ci)) -> (v_emb (B,D), i_emb (N,D))
  pose_g(pose_in (B,T,2N), conf (B,T,N)) -> (P_gen (B,T',2N), f_d)   (noise from noise_keys)
  pose_d(P (B,T',2N), P_in (B,T,2N)) -> logits (B,)
  integration(f_s, f_d) -> f_i;   video_g_*(f_i) -> video (B,T,S,S,3) in [-1, 1];   video_d_*(video) -> (B,)
  with model.video_gan='tgan2': video_g_*(f_i, offsets=(B, L-1)) -> tuple of L level clips (training),
  video_g_*(f_i) -> the dense clip as above; video_d_*(levels) -> (L, B) (csvr_jax/models/tgan2.py).
Noise is drawn per sample from `noise_keys` (B,) so that it does not depend on how the batch is split.
Keyword arguments of `apply` beyond these go to the module's call.
"""
import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from csvr_jax import models
from csvr_jax import parallel



class ContextHeads(nn.Module):
  """g^V and g^I: the two two-layer projection MLPs of the context branch, one params sub-tree 'heads'."""
  make_head: Callable

  @nn.compact
  def __call__(self, v_pooled, i_pooled, train=False):
    return (self.make_head(name='video')(v_pooled, train=train),
            self.make_head(name='iframe')(i_pooled, train=train))


def _check_crop(config):
  """Crop sizes the backbones cannot take are a config error, not a shape error deep inside XLA."""
  s = config.data.crop_size
  if s < 32 or s % 16:
    raise ValueError(f'config.data.crop_size={s}: the backbones and video generators need a multiple of 16, '
                     '>= 32 (e.g. 32, 64, 112)')
  if config.data.clip_len < 4 or config.data.clip_len % 4:
    raise ValueError(f'config.data.clip_len={config.data.clip_len}: use a multiple of 4 (>= 4)')


class Networks:
  """Modules of the ten networks (static; bound into the steps with functools.partial)."""

  def __init__(self, config):
    _check_crop(config)
    self.config = config
    axis = parallel.DATA if config.model.sync_bn else None
    m, d = config.model, config.data
    kw = dict(width=m.width, dtype=m.dtype, bn_axis_name=axis, remat=config.train.remat)
    self.modules = {'vnet': models.get_video_backbone(m.vnet, conv_impl=m.conv_impl, **kw),
                    'inet': models.get_image_backbone(m.inet, **kw)}
    self.modules.update(_branch_modules(config, axis))
    self.noise_dims = {'pose_g': m.pose_noise_dim, 'video_g_rec': m.video_noise_dim,
                       'video_g_pred': m.video_noise_dim}
    self.clip_shape = (d.clip_len, d.crop_size, d.crop_size, 3)
    self.video_levels = m.video_gan_levels if m.video_gan == 'tgan2' else None  # None: dense video GAN

  def apply(self, name, params, batch_stats, *args, train, noise_keys=None, **kwargs):
    module = self.modules[name]
    variables = {'params': params}
    if batch_stats:
      variables['batch_stats'] = batch_stats
    if noise_keys is not None:
      dim = self.noise_dims[name]
      args = args + (jax.vmap(lambda k: jax.random.normal(k, (dim,), jnp.float32))(noise_keys),)
    mutable = bool(train and batch_stats)
    arrays = {k: v for k, v in kwargs.items() if hasattr(v, 'shape')}
    options = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))  # flags: static, not traced
    out = _traced_once(module, train, mutable, options)(variables, *args, **arrays)
    if mutable:
      out, updates = out
      return _output(name, out), updates['batch_stats']
    return _output(name, out), batch_stats

  def init(self, key):
    """key -> {name: variables} for all ten networks, from tiny example inputs of the configured shapes."""
    c = self.config
    keys = dict(zip(self.modules, jax.random.split(key, len(self.modules))))
    b, t, tf, n = 2, c.data.clip_len, c.data.future_len, c.model.num_joints
    clip = jnp.zeros((b,) + self.clip_shape, jnp.float32)
    pose_in, conf = jnp.zeros((b, t, 2 * n)), jnp.ones((b, t, n))
    z = lambda name: jnp.zeros((b, self.noise_dims[name]), jnp.float32)
    variables = {}

    def init(name, *args, **kw):
      variables[name] = self.modules[name].init(keys[name], *args, train=False, **kw)
      return _output(name, self.modules[name].apply(variables[name], *args, train=False, **kw))

    v_out = init('vnet', clip)
    i_out = init('inet', clip[:, 0])
    init('heads', v_out['pooled'], i_out['pooled'])
    p_gen, f_d = init('pose_g', pose_in, conf, z('pose_g'))
    del tf
    init('pose_d', p_gen, pose_in)
    f_i = init('integration', v_out['features'], f_d)
    # tgan2: initialised through the level path, which runs every block and render head.
    levels = {} if self.video_levels is None else {'offsets': jnp.zeros((b, self.video_levels - 1), jnp.int32)}
    for target in ('rec', 'pred'):
      video = init('video_g_' + target, f_i, z('video_g_' + target), **levels)
      init('video_d_' + target, video)
    return variables


@functools.lru_cache(maxsize=None)
def _traced_once(module, train, mutable, options=()):
  """module.apply as a nested jit, one per module definition (modules are hashable flax dataclasses) and set of
  non-array keyword arguments (`options`, passed as they are).

  Inside a step, a network called again on inputs of the same shapes (a discriminator on the real and on the
  fake batch, the reconstruction and prediction GANs when their clips match) is traced once and its jaxpr, JVP and
  transpose reused, where a plain call would be traced anew each time; XLA inlines the nested call, so the
  compiled program is the same (docs/performance.md, "The test suite's compile time").
  """
  return jax.jit(lambda variables, *args, **arrays: module.apply(
      variables, *args, train=train, mutable=['batch_stats'] if mutable else False, **dict(options), **arrays))


def _output(name, out):
  """Normalises module outputs to the convention in the module docstring."""
  if name == 'pose_g':
    return _pose_g_output(out)
  if name == 'integration':
    return out[0]  # (f_i, aux): aux (mask, gamma, beta) is for analysis only
  return out


def vnet_feature_shape(config):
  """Shape of the V-Network's last feature map for one clip, from abstract evaluation (no compile)."""
  m, d = config.model, config.data
  vnet = models.get_video_backbone(m.vnet, width=m.width, dtype=m.dtype, conv_impl=m.conv_impl)
  clip = jax.ShapeDtypeStruct((1, d.clip_len, d.crop_size, d.crop_size, 3), jnp.float32)
  out = jax.eval_shape(lambda x: vnet.init_with_output(jax.random.PRNGKey(0), x, train=False)[0], clip)
  return out['features'].shape[1:]


def _branch_modules(config, axis):
  """heads, pose GAN, integration, video GANs from csvr_jax.models (branch sizes from config.model)."""
  from csvr_jax.models import heads, integration, pose_gan  # pylint: disable=g-import-not-at-top
  m, d = config.model, config.data
  dtype = jnp.dtype(m.dtype)
  channels = vnet_feature_shape(config)[-1]
  head = lambda name: heads.ProjectionHead(hidden=m.head_hidden, out=m.embed_dim, dtype=dtype, name=name)
  rec, pred = (video_gan_modules(config, frames, axis) for frames in (d.clip_len, d.future_len))
  return {
      'heads': ContextHeads(head),
      'pose_g': pose_gan.PoseGenerator(channels=m.pose_channels, encoder_layers=m.pose_encoder_layers,
                                       noise_dim=m.pose_noise_dim, out_len=d.future_len, output=m.pose_output,
                                       dtype=dtype, bn_axis_name=axis),
      'pose_d': pose_gan.PoseDiscriminator(channels=m.pose_channels, dtype=dtype),
      'integration': integration.get_integration(m.integration, channels=channels, dtype=dtype,
                                                 bn_axis_name=axis, conv_impl=m.conv_impl),
      'video_g_rec': rec[0], 'video_d_rec': rec[1],
      'video_g_pred': pred[0], 'video_d_pred': pred[1],
  }


VIDEO_GANS = ('tgan2', 'dense')


def video_gan_modules(config, frames, bn_axis_name=None):
  """(generator, discriminator) of one video target with `frames` frames, by config.model.video_gan."""
  from csvr_jax.models import tgan2, video_gan  # pylint: disable=g-import-not-at-top
  m, d = config.model, config.data
  out_shape, dtype = (frames, d.crop_size, d.crop_size), jnp.dtype(m.dtype)
  kw = dict(channels=m.video_g_channels, noise_dim=m.video_noise_dim, out_shape=out_shape, dtype=dtype,
            bn_axis_name=bn_axis_name, conv_impl=m.conv_impl)
  if m.video_gan == 'dense':
    return (video_gan.VideoGenerator(**kw),
            video_gan.VideoDiscriminator(channels=m.video_d_channels, dtype=dtype, conv_impl=m.conv_impl))
  if m.video_gan != 'tgan2':
    raise ValueError(f'config.model.video_gan: unknown {m.video_gan!r}; choose {" | ".join(VIDEO_GANS)}')
  try:
    tgan2.check_levels(out_shape, m.video_gan_levels)
  except ValueError as e:
    raise ValueError(f'config.model.video_gan_levels={m.video_gan_levels}: {e}') from None
  return (tgan2.TGAN2Generator(levels=m.video_gan_levels, **kw),
          tgan2.MultiLevelDiscriminator(channels=m.video_d_channels, levels=m.video_gan_levels, dtype=dtype,
                                        conv_impl=m.conv_impl))


def _pose_g_output(out):
  """PoseGenerator returns (P_gen, per-layer encoder features); f_d is the last layer's (Table III)."""
  p_gen, feats = out
  return p_gen, feats[-1]
