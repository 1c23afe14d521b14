"""TGAN v2's video branch ("Train Sparsely, Generate Densely", Saito et al., IJCV 2020): a generator that
renders the clip at several abstraction levels, subsampling layers between them, one discriminator per level.

Levels l = 0 .. L-1 (L = `levels`) of a clip of T frames at S x S:
  level l holds T / 2^l frames at (S / 2^(L-1-l))^2 pixels: level 0 every frame at the coarsest resolution,
  level L-1 every 2^(L-1)-th frame at full resolution (16x112x112, L=4: 16x14x14, 8x28x28, 4x56x56, 2x112x112).

`TGAN2Generator(f_i, z, train, offsets=None)`:
  * trunk (temporal generator): z through Dense, broadcast, concatenated to f_i, a 1x1x1 conv, 3D residual
    up-blocks (3x3x3, video_gan.GenBlock3D) that reach all T frames at level 0's resolution;
  * level blocks l = 1 .. L-1: per-frame residual up-blocks (3x3 2D convolutions, time folded into the batch)
    doubling the resolution, each level with its own render head (BN-ReLU-3x3 conv-tanh);
  * subsampling layers: with `offsets` (B, L-1) in {0, 1}, before level l's block every sample keeps frames
    offsets[:, l-1] :: 2 of the level before; the output is the tuple of the L renders (training). Without
    offsets the generator renders densely: no subsampling, only the last head, a (B, T, S, S, 3) clip - the
    same parameters, and (the level blocks and heads being per-frame) in inference mode the same frames as
    the sparse level L-1 render at its frame indices.
  Widths (`level_width`): trunk 4c; level l >= 1: c * min(4, 2^(L-1-l)), c at full resolution.

`MultiLevelDiscriminator(xs)`: one video_gan.VideoDiscriminator per level (sub-trees 'level0' ...), logits
(L, B). Real clips are brought to the levels by `real_levels` with the generator's offsets: frames selected
the same way, resolution by average pooling (TGAN v2's dataset pooling).

Usage:
  offsets = draw_offsets(per_sample_keys, levels=4)              # (B, 3) int32
  fakes = g.apply(v, f_i, z, train=True, offsets=offsets, mutable=['batch_stats'])[0]   # 4 videos
  reals = real_levels(clip, offsets, levels=4)
  logits = d.apply(vd, fakes)                                    # (4, B)
  clip = g.apply(v, f_i, z, train=False)                         # dense (B, 16, 112, 112, 3)
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from csvr_jax.models import video_gan


def check_levels(out_shape, levels):
  """Raises ValueError unless a clip of out_shape = (T, S, S) splits into `levels` levels."""
  t, s = out_shape[0], out_shape[1]
  if levels < 1:
    raise ValueError(f'tgan2: levels={levels} must be >= 1')
  if t % 2 ** (levels - 1):
    raise ValueError(f'tgan2: {levels} levels halve the frames {levels - 1} times; {t} frames is not a multiple '
                     f'of {2 ** (levels - 1)}')
  if any(x % 2 ** (levels - 1) for x in out_shape[1:]):
    raise ValueError(f'tgan2: {levels} levels need a crop size divisible by {2 ** (levels - 1)}, got {s}')


def level_shapes(out_shape, levels):
  """[(frames, height, width)] of every level, coarsest first."""
  check_levels(out_shape, levels)
  t, h, w = out_shape
  return [(t // 2 ** l, h // 2 ** (levels - 1 - l), w // 2 ** (levels - 1 - l)) for l in range(levels)]


def draw_offsets(keys, levels):
  """(B,) per-sample keys -> (B, levels-1) int32 in {0, 1}: each subsampling layer's frame offset."""
  return jax.vmap(lambda k: jax.random.randint(k, (levels - 1,), 0, 2, jnp.int32))(keys)


def subsample_frames(x, offset):
  """x (B, T, ...), offset (B,) in {0, 1} -> (B, T/2, ...): sample b keeps frames offset[b] :: 2."""
  pairs = x.reshape(x.shape[:1] + (x.shape[1] // 2, 2) + x.shape[2:])
  keep_first = (offset == 0).reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.where(keep_first, pairs[:, :, 0], pairs[:, :, 1])


def level_frame_indices(offsets, num_frames):
  """(B, L-1) offsets -> [(B, T / 2^l) int32]: the clip's frame indices that level l holds."""
  idx = jnp.broadcast_to(jnp.arange(num_frames, dtype=jnp.int32), (offsets.shape[0], num_frames))
  out = [idx]
  for l in range(offsets.shape[1]):
    out.append(subsample_frames(out[-1], offsets[:, l]))
  return out


def avg_pool_space(x, factor):
  """(B, T, H, W, C) -> (B, T, H/f, W/f, C): mean over f x f pixel blocks."""
  if factor == 1:
    return x
  b, t, h, w, c = x.shape
  return x.reshape(b, t, h // factor, factor, w // factor, factor, c).mean(axis=(3, 5))


def real_levels(video, offsets, levels):
  """A real clip (B, T, S, S, 3) -> tuple of its L levels, frames picked with the generator's offsets."""
  out, x = [], video
  for l in range(levels):
    if l > 0:
      x = subsample_frames(x, offsets[:, l - 1])
    out.append(avg_pool_space(x, 2 ** (levels - 1 - l)))
  return tuple(out)


class FrameGenBlock(nn.Module):
  """GenBlock3D with 3x3 2D convolutions applied to every frame (time folded into the batch), 2x upsampling
  of height and width: what a frame becomes does not depend on the other frames (subsampling commutes)."""
  features: int
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train):
    b, t = x.shape[:2]
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name,
                                   dtype=self.dtype, name=name)
    up = lambda y: jnp.repeat(jnp.repeat(y, 2, axis=1), 2, axis=2)
    x = x.reshape((b * t,) + x.shape[2:])
    h = nn.relu(bn('bn1')(x))
    h = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype, name='conv1')(up(h))
    h = nn.relu(bn('bn2')(h))
    h = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype, name='conv2')(h)
    sc = up(nn.Conv(self.features, (1, 1), dtype=self.dtype, name='shortcut')(x))
    out = h + sc
    return out.reshape((b, t) + out.shape[1:])


def trunk_plan(map_shape, out_shape, levels):
  """(base (T, H, W) the map is resized to, [per-block upsampling factors (t, h, w)]) of the 3D trunk: it
  ends at all T frames and level 0's resolution; time and space are upsampled in its last blocks."""
  level0 = level_shapes(out_shape, levels)[0]
  plans = [video_gan.upsample_plan(i, o) for i, o in zip(map_shape, level0)]
  n = max(1, max(k for k, _ in plans))
  ups = [tuple(2 if i >= n - k else 1 for k, _ in plans) for i in range(n)]
  return tuple(b for _, b in plans), ups


def level_width(channels, levels, level):
  """Channels of the trunk (level 0): 4c; of level l's block: c at full resolution, doubling per halving of
  the resolution (as the dense generator's blocks), at most 4c."""
  if level == 0:
    return 4 * channels
  return channels * min(4, 2 ** (levels - 1 - level))


class TGAN2Generator(nn.Module):
  """(f_i (B,T1,H1,W1,C1), z (B,Z)) -> the L level renders (offsets given) or a dense (B,T,H,W,3) clip."""
  channels: int = 64
  noise_dim: int = 32
  out_shape: Sequence[int] = (16, 112, 112)
  levels: int = 4
  out_channels: int = 3
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the trunk's 3x3x3 convs

  def _bn(self, name, train):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name,
                        dtype=self.dtype, name=name)

  def _render(self, h, level, train):
    b, t = h.shape[:2]
    h = nn.relu(self._bn(f'render{level}_bn', train)(h)).reshape((b * t,) + h.shape[2:])
    h = nn.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name=f'render{level}')(h)
    return jnp.tanh(h.astype(jnp.float32)).reshape((b, t) + h.shape[1:])

  @nn.compact
  def __call__(self, f_i, z, train=False, *, offsets=None):
    base, ups = trunk_plan(f_i.shape[1:4], self.out_shape, self.levels)
    if offsets is not None and offsets.shape[1:] != (self.levels - 1,):
      raise ValueError(f'tgan2 generator: offsets {offsets.shape} should be (B, {self.levels - 1})')
    h = f_i.astype(self.dtype)
    if h.shape[1:4] != base:
      h = jax.image.resize(h, h.shape[:1] + base + h.shape[-1:], method='linear')
    zc = nn.Dense(self.channels, dtype=self.dtype, name='noise')(z.astype(self.dtype))
    h = jnp.concatenate([h, jnp.broadcast_to(zc[:, None, None, None], h.shape[:4] + zc.shape[-1:])], axis=-1)
    width = level_width(self.channels, self.levels, 0)
    h = nn.Conv(width, (1, 1, 1), dtype=self.dtype, name='proj')(h)
    for i, up in enumerate(ups):
      h = video_gan.GenBlock3D(width, up, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                               conv_impl=self.conv_impl, name=f'trunk{i}')(h, train)
    renders = []
    for level in range(self.levels):
      if level > 0:
        if offsets is not None:
          h = subsample_frames(h, offsets[:, level - 1])
        h = FrameGenBlock(level_width(self.channels, self.levels, level), dtype=self.dtype,
                          bn_axis_name=self.bn_axis_name, name=f'level{level}')(h, train)
      if offsets is not None or level == self.levels - 1:
        renders.append(self._render(h, level, train))
    return tuple(renders) if offsets is not None else renders[-1]


class MultiLevelDiscriminator(nn.Module):
  """(tuple of L level clips, cond or None) -> logits (L, B) float32: one VideoDiscriminator per level."""
  channels: int = 32
  levels: int = 4
  dtype: Any = jnp.float32
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the 3x3x3 convs

  @nn.compact
  def __call__(self, xs, cond=None, train=False):
    if len(xs) != self.levels:
      raise ValueError(f'tgan2 discriminator: {len(xs)} inputs for {self.levels} levels')
    return jnp.stack([video_gan.VideoDiscriminator(self.channels, dtype=self.dtype, conv_impl=self.conv_impl,
                                                   name=f'level{l}')(x, cond, train)
                      for l, x in enumerate(xs)])
