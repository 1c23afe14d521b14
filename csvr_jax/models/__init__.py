"""Backbone registry (the fixed interfaces: docs/design.md, "Paper -> code").

`get_video_backbone(name, **kw)` / `get_image_backbone(name, **kw)` return linen Modules called as
`module.apply(variables, x, train)` -> {'pooled': (B, C) float32, 'features': last feature map}. Keywords:
width (channel multiplier), dtype (compute dtype, a name such as 'bfloat16' or a dtype; params stay
float32), bn_axis_name (cross-device BatchNorm statistics inside shard_map), remat (rematerialise blocks),
conv_impl ('fold' | 'native' | 'fold_pad8' | 'fold_s2d' | 'fold_taps', see backbone_layers.CONV_IMPLS; the video GANs
and the integration layer read 'fold_taps' only).
"""
import functools

import jax.numpy as jnp

from csvr_jax.models.image_backbones import ResNet2D
from csvr_jax.models.s3d import S3D
from csvr_jax.models.video_backbones import C3D, VideoResNet

VIDEO_BACKBONES = {
    'c3d': C3D,
    'r3d_18': functools.partial(VideoResNet, arch='r3d_18'),
    'mc3_18': functools.partial(VideoResNet, arch='mc3_18'),
    'r2plus1d_18': functools.partial(VideoResNet, arch='r2plus1d_18'),
    's3d': S3D,
}
IMAGE_BACKBONES = {
    'r2d_10': functools.partial(ResNet2D, blocks=(1, 1, 1, 1)),
}


def _build(registry, kind, name, kw):
  if name not in registry:
    raise ValueError(f'unknown {kind} backbone {name!r}; choose from {sorted(registry)}')
  if 'dtype' in kw:
    kw = dict(kw, dtype=jnp.dtype(kw['dtype']))
  return registry[name](**kw)


def get_video_backbone(name, **kw):
  """V-Network `name` in VIDEO_BACKBONES; x (B, T, H, W, 3)."""
  return _build(VIDEO_BACKBONES, 'video', name, kw)


def get_image_backbone(name, **kw):
  """I-Network `name` in IMAGE_BACKBONES; x (B, H, W, 3)."""
  return _build(IMAGE_BACKBONES, 'image', name, kw)
