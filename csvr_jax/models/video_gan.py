"""Video branch (eq. 6-8): TGAN-v2-inspired conditional generator and 3D ResNet discriminator.

Two instances of each serve the reconstructor (current clip V) and the predictor (future clip V+).

`VideoGenerator(f_i, z)`: the integrated feature map f_i (B, T1, H1, W1, C1) and noise z (B, Z) ->
a clip (B, T, H, W, 3) in [-1, 1]. The noise goes through a Dense layer, is broadcast over the map and
concatenated to f_i, a 1x1x1 conv projects to 8c channels; 3D residual up-blocks (TGAN v2's GenBlock3D:
BN-ReLU-nearest upsample-conv3-BN-ReLU-conv3, shortcut nearest upsample + 1x1x1 conv) double time and/or
space; a BN-ReLU-conv3-tanh head renders RGB. Upsampling plan (per axis): the largest k with out % 2^k == 0
and out / 2^k >= in; when the input map is not out / 2^k, it is first resized trilinearly (e.g. C3D / S3D
4x4 -> 7x7 for 112 = 7 * 16). Time upsampling happens in the last blocks, as in TGAN v2's
GeneratorResNet3D. Widths: block i of n outputs c * min(8, 2^(n-1-i)).

`VideoDiscriminator(x, cond)`: TGAN v2's ResNetVideoDiscriminator shape: an optimized first block (conv3-
ReLU-conv3, spatial 2x average pooling; shortcut pool + 1x1x1 conv), four residual blocks (ReLU-conv3-ReLU-
conv3, 2x average pooling on every axis larger than 1, odd sizes padded), widths c, 2c, 4c, 8c, 16c, ReLU,
global SUM pooling, linear logit. No normalisation, so it is per-sample (WGAN-GP, OSGAN scaling).
Conditioning (our choice; TGAN v2 is class-conditional by projection): projection discriminator on a
condition vector, logit += <Dense(cond), h>, with cond (B, C) typically the spatio-temporal mean of f_i;
pass `stop_gradient(cond)` so that D's objective does not train the feature extractors; cond=None gives
an unconditional D.

Usage:
  g = VideoGenerator(channels=64, noise_dim=32, out_shape=(16, 112, 112))
  vars_g = g.init(key, f_i, z, train=False)                  # f_i (B,2,7,7,512), z (B,32)
  video, upd = g.apply(vars_g, f_i, z, train=True, mutable=['batch_stats'])   # (B,16,112,112,3) in [-1,1]
  d = VideoDiscriminator(channels=32)
  logits = d.apply(d.init(key, video, cond), video, cond)     # (B,) float32

Real clips must be mapped to [-1, 1] (pixels * 2 - 1) for the pixel L2 and for D.
"""
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from csvr_jax.models import backbone_layers


def upsample_plan(in_size, out_size):
  """(k, base): the largest k with out % 2^k == 0 and out / 2^k >= in; base = out / 2^k."""
  if out_size < in_size:
    raise ValueError(f'video generator: output size {out_size} is smaller than its input map size {in_size}')
  k = 0
  while out_size % 2 ** (k + 1) == 0 and out_size // 2 ** (k + 1) >= in_size:
    k += 1
  return k, out_size // 2 ** k


def _nearest_up(x, factors):
  for axis, f in zip((1, 2, 3), factors):
    if f > 1:
      x = jnp.repeat(x, f, axis=axis)
  return x


def conv3(features, impl, dtype, name):
  """A 3x3x3 'same' conv (flax nn.Conv's parameters); model.conv_impl 'fold_taps' runs it as 2D convs over its
  temporal taps (backbone_layers.temporal_taps_conv: XLA:CPU's 3D convs are slow)."""
  return nn.Conv(features, (3, 3, 3), padding=1, dtype=dtype, name=name,
                 conv_general_dilated=backbone_layers.conv_general_dilated_of(impl))


class GenBlock3D(nn.Module):
  """TGAN v2 GenBlock3D: BN-ReLU-up-conv3-BN-ReLU-conv3 + (up-conv1 shortcut when shape changes)."""
  features: int
  up: Sequence[int]
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the 3x3x3 convs

  @nn.compact
  def __call__(self, x, train):
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name,
                                   dtype=self.dtype, name=name)
    h = nn.relu(bn('bn1')(x))
    h = conv3(self.features, self.conv_impl, self.dtype, 'conv1')(_nearest_up(h, self.up))
    h = nn.relu(bn('bn2')(h))
    h = conv3(self.features, self.conv_impl, self.dtype, 'conv2')(h)
    sc = _nearest_up(x, self.up)
    if x.shape[-1] != self.features or any(f > 1 for f in self.up):
      # 1x1x1 conv commutes with nearest upsampling: convolve first, on the smaller map.
      sc = _nearest_up(nn.Conv(self.features, (1, 1, 1), dtype=self.dtype, name='shortcut')(x), self.up)
    return h + sc


class VideoGenerator(nn.Module):
  """(f_i (B,T1,H1,W1,C1), z (B,Z)) -> clip (B, T, H, W, 3) float32 in [-1, 1]; out_shape = (T, H, W)."""
  channels: int = 64
  noise_dim: int = 32
  out_shape: Sequence[int] = (16, 112, 112)
  out_channels: int = 3
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the 3x3x3 convs

  @nn.compact
  def __call__(self, f_i, z, train=False):
    plans = [upsample_plan(i, o) for i, o in zip(f_i.shape[1:4], self.out_shape)]
    n = max(k for k, _ in plans)
    base = tuple(b for _, b in plans)
    h = f_i.astype(self.dtype)
    if h.shape[1:4] != base:
      h = jax.image.resize(h, h.shape[:1] + base + h.shape[-1:], method='linear')
    zc = nn.Dense(self.channels, dtype=self.dtype, name='noise')(z.astype(self.dtype))
    h = jnp.concatenate([h, jnp.broadcast_to(zc[:, None, None, None], h.shape[:4] + zc.shape[-1:])], axis=-1)
    h = nn.Conv(self.channels * 8, (1, 1, 1), dtype=self.dtype, name='proj')(h)
    for i in range(n):
      up = tuple(2 if i >= n - k else 1 for k, _ in plans)
      h = GenBlock3D(self.channels * min(8, 2 ** (n - 1 - i)), up, dtype=self.dtype,
                     bn_axis_name=self.bn_axis_name, conv_impl=self.conv_impl, name=f'block{i}')(h, train)
    h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name,
                             dtype=self.dtype, name='render_bn')(h))
    h = conv3(self.out_channels, self.conv_impl, self.dtype, 'render')(h)
    return jnp.tanh(h.astype(jnp.float32))


def _avg_down(x, spatial_only=False):
  """2x average pooling on every axis of size > 1 (odd sizes padded like TGAN v2, count includes pads)."""
  window = tuple(1 if (spatial_only and a == 0) or s == 1 else 2 for a, s in enumerate(x.shape[1:4]))
  pads = tuple((0, 0) if w == 1 else (0, s % 2) for w, s in zip(window, x.shape[1:4]))
  return nn.avg_pool(x, window, strides=window, padding=pads, count_include_pad=True)


class DisBlock3D(nn.Module):
  """TGAN v2 DisBlock: ReLU-conv3-ReLU-conv3-pool + (conv1-pool shortcut)."""
  features: int
  dtype: Any = jnp.float32
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the 3x3x3 convs

  @nn.compact
  def __call__(self, x):
    h = conv3(x.shape[-1], self.conv_impl, self.dtype, 'conv1')(nn.relu(x))
    h = conv3(self.features, self.conv_impl, self.dtype, 'conv2')(nn.relu(h))
    sc = nn.Conv(self.features, (1, 1, 1), dtype=self.dtype, name='shortcut')(x)
    return _avg_down(h) + _avg_down(sc)


class VideoDiscriminator(nn.Module):
  """(clip (B,T,H,W,3) in [-1,1], cond (B,C) or None) -> logits (B,) float32. Per-sample (no BN)."""
  channels: int = 32
  blocks: int = 4
  dtype: Any = jnp.float32
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the 3x3x3 convs

  @nn.compact
  def __call__(self, x, cond=None, train=False):
    del train  # no BN or dropout; accepted for the uniform `module.apply(..., train=...)` convention
    x = x.astype(self.dtype)
    c = self.channels
    h = conv3(c, self.conv_impl, self.dtype, 'opt_conv1')(x)
    h = conv3(c, self.conv_impl, self.dtype, 'opt_conv2')(nn.relu(h))
    h = _avg_down(h, spatial_only=True) + nn.Conv(c, (1, 1, 1), dtype=self.dtype, name='opt_shortcut')(
        _avg_down(x, spatial_only=True))
    for i in range(self.blocks):
      h = DisBlock3D(c * 2 ** (i + 1), dtype=self.dtype, conv_impl=self.conv_impl, name=f'block{i}')(h)
    h = jnp.sum(nn.relu(h), axis=(1, 2, 3)).astype(jnp.float32)  # global sum pooling, as TGAN v2
    logit = nn.Dense(1, name='logit')(h)[:, 0]
    if cond is not None:
      proj = nn.Dense(h.shape[-1], name='cond_proj')(cond.astype(jnp.float32))
      logit = logit + jnp.sum(proj * h, axis=-1)
    return logit


def param_count(variables):
  """Number of parameters in a variables dict (or its abstract shapes)."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
