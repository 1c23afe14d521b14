"""V-Networks: torchvision's video ResNets (r3d_18, mc3_18, r2plus1d_18) and the BatchNorm C3D of VCOP.

Input x (B, T, H, W, 3), normalised by mean/std; output {'pooled': (B, C) float32, 'features': last feature
map (B, T', H', W', C) in the compute dtype}. At width 1 the video ResNets equal torchvision's
(csvr_jax/models/torch_interop.py maps the weights); S3D lives in s3d.py.
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from csvr_jax.models.backbone_layers import (ConvBNReLU, backbone_outputs, batch_norm, channel_multiple, conv,
                                             max_pool, maybe_remat, pad_channels, round_up, scaled)

# arch -> (stem, conv type of layer1..layer4); torchvision.models.video.resnet.
VIDEO_RESNETS = {
    'r3d_18': ('r3d', ('3d',) * 4),
    'mc3_18': ('r3d', ('3d',) + ('no_temporal',) * 3),
    'r2plus1d_18': ('r2plus1d', ('2plus1d',) * 4),
}
RESNET_PLANES = (64, 128, 256, 512)


def midplanes(inplanes, planes):
  """torchvision's R(2+1)D width: the (2+1)D pair has about as many parameters as the 3x3x3 conv it replaces."""
  return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


def factored_pair(x, mid, out, spatial, temporal, name_s, name_t, bn_name, make_conv, make_bn, multiple,
                  in_features=None):
  """Spatial conv (Cin -> mid) -> BN -> ReLU -> temporal conv (mid -> out): torchvision's Conv2Plus1D and
  R(2+1)D stem. With `multiple` > 1 the mid activations carry zero channels up to a multiple of it (zero filters
  in, zero kernel rows out; BN sees the true `mid` channels): same parameters, same numbers, no odd channel
  counts for cuDNN. spatial / temporal: (kernel, strides, padding); in_features: x's true channel count when x
  carries zero channels itself (the padded RGB input of the stem)."""
  padded = round_up(mid, multiple)
  x = make_conv(mid, *spatial, name=name_s, out_padded=padded, in_features=in_features)(x)
  if padded != mid:
    x = x[..., :mid]
  x = nn.relu(make_bn(name=bn_name)(x))
  return make_conv(out, *temporal, name=name_t, in_features=mid)(pad_channels(x, padded))


def conv_unit(x, kind, planes, mid, stride, name, make_conv, make_bn, multiple=1):
  """torchvision's Conv3DSimple / Conv3DNoTemporal / Conv2Plus1D (the latter with its inner BN + ReLU)."""
  s = stride
  if kind == '3d':
    return make_conv(planes, (3, 3, 3), (s, s, s), (1, 1, 1), name=name)(x)
  if kind == 'no_temporal':
    return make_conv(planes, (1, 3, 3), (1, s, s), (0, 1, 1), name=name)(x)
  return factored_pair(x, mid, planes, ((1, 3, 3), (1, s, s), (0, 1, 1)), ((3, 1, 1), (s, 1, 1), (1, 0, 0)),
                       name + '_s', name + '_t', name + '_mid_bn', make_conv, make_bn, multiple)


class BasicBlock3D(nn.Module):
  """torchvision's video BasicBlock. Submodules conv1[_s,_mid_bn,_t], bn1, conv2..., bn2, down_conv, down_bn."""
  planes: int
  stride: int
  kind: str  # '3d' | 'no_temporal' | '2plus1d'
  downsample: bool
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'fold'

  @nn.compact
  def __call__(self, x, train):
    make_conv = lambda *a, name, **kw: conv(*a, name=name, dtype=self.dtype, impl=self.conv_impl, **kw)
    make_bn = lambda name: batch_norm(train=train, name=name, dtype=self.dtype, axis_name=self.bn_axis_name)
    mid = midplanes(x.shape[-1], self.planes)  # both convs of the block share the one midplanes value
    m = channel_multiple(self.conv_impl)
    y = conv_unit(x, self.kind, self.planes, mid, self.stride, 'conv1', make_conv, make_bn, m)
    y = nn.relu(make_bn('bn1')(y))
    y = conv_unit(y, self.kind, self.planes, mid, 1, 'conv2', make_conv, make_bn, m)
    y = make_bn('bn2')(y)
    if self.downsample:
      s = self.stride
      ds_stride = (1, s, s) if self.kind == 'no_temporal' else (s, s, s)
      x = make_bn('down_bn')(make_conv(self.planes, (1, 1, 1), ds_stride, (0, 0, 0), name='down_conv')(x))
    return nn.relu(y + x)


class VideoResNet(nn.Module):
  """R3D-18 / MC3-18 / R(2+1)D-18 without the classifier (torchvision.models.video.resnet)."""
  arch: str
  width: float = 1.0
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  remat: bool = False
  conv_impl: str = 'fold'

  @nn.compact
  def __call__(self, x, train=False):
    shape = x.shape
    stem, kinds = VIDEO_RESNETS[self.arch]
    make_conv = lambda *a, name, **kw: conv(*a, name=name, dtype=self.dtype, impl=self.conv_impl, **kw)
    make_bn = lambda name: batch_norm(train=train, name=name, dtype=self.dtype, axis_name=self.bn_axis_name)
    m, rgb = channel_multiple(self.conv_impl), x.shape[-1]
    x = pad_channels(x, round_up(rgb, m))  # zero channels beside RGB when padding (the stem conv ignores them)
    if stem == 'r2plus1d':
      x = factored_pair(x, scaled(45, self.width), scaled(64, self.width), ((1, 7, 7), (1, 2, 2), (0, 3, 3)),
                        ((3, 1, 1), (1, 1, 1), (1, 0, 0)), 'stem_conv_s', 'stem_conv_t', 'stem_bn_s', make_conv,
                        make_bn, m, in_features=rgb)
    else:
      x = make_conv(scaled(64, self.width), (3, 7, 7), (1, 2, 2), (1, 3, 3), name='stem_conv', in_features=rgb)(x)
    x = nn.relu(make_bn('stem_bn')(x))
    block = maybe_remat(BasicBlock3D, self.remat)
    for i, (planes, kind) in enumerate(zip(RESNET_PLANES, kinds)):
      planes = scaled(planes, self.width)
      for j in range(2):
        stride = 2 if i > 0 and j == 0 else 1
        down = j == 0 and (stride != 1 or x.shape[-1] != planes)
        x = block(planes, stride, kind, down, self.dtype, self.bn_axis_name, self.conv_impl,
                  name=f'layer{i + 1}_{j}')(x, train)
    return backbone_outputs(x, self.arch, shape)


# VCOP's C3D (Xu et al. 2019): (name, channels, max-pool after it as (window, strides, padding) or None).
C3D_LAYERS = (
    ('conv1', 64, ((1, 2, 2), (1, 2, 2), (0, 0, 0))),
    ('conv2', 128, ((2, 2, 2), (2, 2, 2), (0, 0, 0))),
    ('conv3a', 256, None),
    ('conv3b', 256, ((2, 2, 2), (2, 2, 2), (0, 0, 0))),
    ('conv4a', 512, None),
    ('conv4b', 512, ((2, 2, 2), (2, 2, 2), (0, 0, 0))),
    ('conv5a', 512, None),
    ('conv5b', 512, ((2, 2, 2), (2, 2, 2), (0, 1, 1))),
)


class C3D(nn.Module):
  """The 8-conv C3D with BatchNorm used by VCOP: 3x3x3 convs (with bias, as VCOP) + BN + ReLU, no fc layers.

  'features' is the pool5 output ((B, 1, 4, 4, 512) at 16x112x112) and 'pooled' its mean (512-d), as VCOP's
  AdaptiveAvgPool3d(1). `remat` rematerialises each conv unit (C3D has no residual blocks).
  """
  width: float = 1.0
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  remat: bool = False
  conv_impl: str = 'fold'

  @nn.compact
  def __call__(self, x, train=False):
    shape = x.shape
    unit = maybe_remat(ConvBNReLU, self.remat)
    for name, channels, pool in C3D_LAYERS:
      x = unit(scaled(channels, self.width), (3, 3, 3), (1, 1, 1), (1, 1, 1), use_bias=True, dtype=self.dtype,
               bn_axis_name=self.bn_axis_name, conv_impl=self.conv_impl, name=name)(x, train)
      if pool is not None:
        x = max_pool(x, *pool)
    return backbone_outputs(x, 'c3d', shape)
