"""I-Network: R2D-10, a 2D ResNet with BasicBlocks [1, 1, 1, 1] applied to single frames.

Input x (B, H, W, 3) normalised by mean/std; output {'pooled': (B, 512*width) float32, 'features':
(B, H/32, W/32, 512*width)}. `mask` (B,) bool (training mode): BatchNorm statistics over the valid frames only
(the I-frame batch holds padding slots; backbone_layers.BatchNorm). Layout as torchvision's ResNet (7x7/2 stem, 3x3/2 max-pool, four stages of
64/128/256/512 channels, 1x1 conv + BN shortcut where the shape changes) with one block per stage.
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from csvr_jax.models.backbone_layers import backbone_outputs, batch_norm, conv, max_pool, maybe_remat, scaled
from csvr_jax.models.video_backbones import RESNET_PLANES


class BasicBlock2D(nn.Module):
  """torchvision's ResNet BasicBlock. Submodules conv1, bn1, conv2, bn2, down_conv, down_bn."""
  planes: int
  stride: int
  downsample: bool
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train, mask=None):
    make_conv = lambda *a, name: conv(*a, name=name, dtype=self.dtype, impl='native')
    bn = lambda name, h: batch_norm(train=train, name=name, dtype=self.dtype, axis_name=self.bn_axis_name)(
        h, mask=mask)
    s = self.stride
    y = nn.relu(bn('bn1', make_conv(self.planes, (3, 3), (s, s), (1, 1), name='conv1')(x)))
    y = bn('bn2', make_conv(self.planes, (3, 3), (1, 1), (1, 1), name='conv2')(y))
    if self.downsample:
      x = bn('down_bn', make_conv(self.planes, (1, 1), (s, s), (0, 0), name='down_conv')(x))
    return nn.relu(y + x)


class ResNet2D(nn.Module):
  """2D ResNet without the classifier; `blocks` per stage ((1, 1, 1, 1) = R2D-10)."""
  blocks: tuple = (1, 1, 1, 1)
  width: float = 1.0
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  remat: bool = False

  @nn.compact
  def __call__(self, x, train=False, mask=None):
    shape = x.shape
    x = conv(scaled(64, self.width), (7, 7), (2, 2), (3, 3), name='stem_conv', dtype=self.dtype, impl='native')(x)
    x = batch_norm(train=train, name='stem_bn', dtype=self.dtype, axis_name=self.bn_axis_name)(x, mask=mask)
    x = max_pool(nn.relu(x), (3, 3), (2, 2), (1, 1))
    block = maybe_remat(BasicBlock2D, self.remat)
    for i, (planes, count) in enumerate(zip(RESNET_PLANES, self.blocks)):
      planes = scaled(planes, self.width)
      for j in range(count):
        stride = 2 if i > 0 and j == 0 else 1
        down = j == 0 and (stride != 1 or x.shape[-1] != planes)
        x = block(planes, stride, down, self.dtype, self.bn_axis_name,
                  name=f'layer{i + 1}_{j}')(x, train, mask)
    return backbone_outputs(x, f'resnet2d{self.blocks}', shape)
