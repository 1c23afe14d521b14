"""S3D (Xie et al. 2018) exactly as torchvision.models.video.s3d, without the classifier.

Input x (B, T, H, W, 3); output {'pooled': (B, 1024) float32, 'features': features[15] (B, T/8, H/32, W/32,
1024)}. torchvision pools with AvgPool3d((2, 7, 7)), which only fits 16x224x224 inputs; here 'pooled' is the
global mean, which equals it at 16x224x224 and also works at 112x112. Needs T >= 8 and H, W >= 17.
BatchNorm as torchvision's S3D: eps 1e-3, torch momentum 0.001 (flax 0.999).
"""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from csvr_jax.models.backbone_layers import ConvBNReLU, backbone_outputs, max_pool, maybe_remat, scaled

S3D_BN = dict(bn_momentum=0.999, bn_epsilon=1e-3)
# torchvision features index -> SepInceptionBlock3D(b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out); the
# in-channels follow from the input. Max pools sit at indices 1, 4 (1x3x3 / 1x2x2), 7 (3x3x3 / 2) and 13 (2x2x2).
S3D_INCEPTION = {
    5: (64, 96, 128, 16, 32, 32),
    6: (128, 128, 192, 32, 96, 64),
    8: (192, 96, 208, 16, 48, 64),
    9: (160, 112, 224, 24, 64, 64),
    10: (128, 128, 256, 24, 64, 64),
    11: (112, 144, 288, 32, 64, 64),
    12: (256, 160, 320, 32, 128, 128),
    14: (256, 160, 320, 32, 128, 128),
    15: (384, 192, 384, 48, 128, 128),
}
S3D_POOLS = {
    1: ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
    4: ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
    7: ((3, 3, 3), (2, 2, 2), (1, 1, 1)),
    13: ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
}


def sep_conv(x, features, k, s, p, name, unit, train):
  """torchvision's TemporalSeparableConv: (1,k,k) Conv-BN-ReLU '<name>_s' then (k,1,1) Conv-BN-ReLU '<name>_t'."""
  x = unit(features, (1, k, k), (1, s, s), (0, p, p), name=name + '_s')(x, train)
  return unit(features, (k, 1, 1), (s, 1, 1), (p, 0, 0), name=name + '_t')(x, train)


class SepInceptionBlock3D(nn.Module):
  """Four branches concatenated on channels: b0 1x1; b1, b2 1x1 -> separable 3x3x3; b3 max-pool -> 1x1."""
  outs: tuple  # (b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out), already width-scaled
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'fold'

  @nn.compact
  def __call__(self, x, train):
    unit = functools.partial(ConvBNReLU, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                             conv_impl=self.conv_impl, **S3D_BN)
    one = lambda c, name: unit(c, (1, 1, 1), (1, 1, 1), (0, 0, 0), name=name)
    b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out = self.outs
    b0 = one(b0_out, 'b0')(x, train)
    b1 = sep_conv(one(b1_mid, 'b1_0')(x, train), b1_out, 3, 1, 1, 'b1_1', unit, train)
    b2 = sep_conv(one(b2_mid, 'b2_0')(x, train), b2_out, 3, 1, 1, 'b2_1', unit, train)
    b3 = one(b3_out, 'b3')(max_pool(x, (3, 3, 3), (1, 1, 1), (1, 1, 1)), train)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class S3D(nn.Module):
  """torchvision's S3D feature stack (features[0..15]); submodules named f<index> after torchvision's."""
  width: float = 1.0
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  remat: bool = False
  conv_impl: str = 'fold'

  @nn.compact
  def __call__(self, x, train=False):
    shape = x.shape
    unit = functools.partial(ConvBNReLU, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                             conv_impl=self.conv_impl, **S3D_BN)
    ch = lambda c: scaled(c, self.width)
    x = sep_conv(x, ch(64), 7, 2, 3, 'f0', unit, train)
    x = max_pool(x, *S3D_POOLS[1])
    x = unit(ch(64), (1, 1, 1), (1, 1, 1), (0, 0, 0), name='f2')(x, train)
    x = sep_conv(x, ch(192), 3, 1, 1, 'f3', unit, train)
    block = maybe_remat(SepInceptionBlock3D, self.remat)
    for index in range(4, 16):
      if index in S3D_POOLS:
        x = max_pool(x, *S3D_POOLS[index])
      else:
        outs = tuple(ch(c) for c in S3D_INCEPTION[index])
        x = block(outs, self.dtype, self.bn_axis_name, self.conv_impl, name=f'f{index}')(x, train)
    return backbone_outputs(x, 's3d', shape)
