"""Integration layer (eq. 3-5) that fuses the static f_s with the dynamic f_d, and the concat ablation.

  f_s_bar = BN(f_s)                              (eq. 3, batch statistics, no affine)
  gamma_d, beta_d = conv(align(f_d))             shaped like f_s_bar (broadcast over space)
  D = gamma_d * f_s_bar + beta_d                 (eq. 4)
  M = sigmoid(conv(f_s_bar))                     attention mask, one value per element of f_s
  f_i = (1 - M) * D + M * f_s                    (eq. 5)

Shapes: f_s is the V-Network's last feature map (B, T1, H1, W1, C1) (e.g. (B, 2, 7, 7, 512) for R3D-18 at
16x112x112); f_d is the pose encoder's last feature (B, T_d, C_d). `FdAlign` is the "convolution + MLP" that
maps f_d to (B, T1, C1): Conv1D(k3) - ReLU - adaptive average pooling over time to T1 - Dense - ReLU - Dense.
gamma_d and beta_d are Conv1D(k3) over time of the aligned feature, reshaped to (B, T1, 1, 1, C1); gamma's
bias starts at 1 so the layer starts close to D = f_s_bar (an initialisation choice, eq. 4 is unchanged).
The mask conv is a 3x3x3 convolution with C1 outputs (an element-wise mask).

Usage:
  integ = AdaINIntegration(channels=512)                       # C1 of the backbone
  vars_ = integ.init(key, f_s, f_d, train=False)
  (f_i, aux), upd = integ.apply(vars_, f_s, f_d, train=True, mutable=['batch_stats'])
  # f_i (B,T1,H1,W1,C1) float32; aux = {'mask', 'gamma', 'beta', 'f_s_bar'} for logging and tests
  get_integration('concat', channels=512)  # Table I ablation: conv(concat(f_s, align(f_d)))
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from csvr_jax.models.pose_gan import resize_time
from csvr_jax.models.video_gan import conv3


class FdAlign(nn.Module):
  """f_d (B, T_d, C_d) -> (B, T1, C1): Conv1D(k3) - ReLU - pool time to T1 - Dense - ReLU - Dense."""
  channels: int
  out_len: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, f_d):
    h = nn.relu(nn.Conv(self.channels, (3,), padding=1, dtype=self.dtype, name='conv')(f_d.astype(self.dtype)))
    h = resize_time(h, self.out_len)
    h = nn.relu(nn.Dense(self.channels, dtype=self.dtype, name='fc1')(h))
    return nn.Dense(self.channels, dtype=self.dtype, name='fc2')(h)


class AdaINIntegration(nn.Module):
  """Eq. 3-5: (f_s (B,T1,H1,W1,C1), f_d (B,T_d,C_d)) -> (f_i like f_s float32, aux dict)."""
  channels: int
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the 3x3x3 mask conv

  @nn.compact
  def __call__(self, f_s, f_d, train=False):
    if f_s.shape[-1] != self.channels:
      raise ValueError(f'integration: f_s has {f_s.shape[-1]} channels, the module expects {self.channels}')
    t1 = f_s.shape[1]
    f_s_bar = nn.BatchNorm(use_running_average=not train, momentum=0.9, use_scale=False, use_bias=False,
                           axis_name=self.bn_axis_name, dtype=self.dtype, name='bn')(f_s.astype(self.dtype))
    a = FdAlign(self.channels, t1, dtype=self.dtype, name='align')(f_d)
    gamma = nn.Conv(self.channels, (3,), padding=1, dtype=self.dtype, bias_init=nn.initializers.ones,
                    name='gamma')(a)[:, :, None, None]
    beta = nn.Conv(self.channels, (3,), padding=1, dtype=self.dtype, name='beta')(a)[:, :, None, None]
    d = gamma * f_s_bar + beta
    m = nn.sigmoid(conv3(self.channels, self.conv_impl, self.dtype, 'mask')(f_s_bar))
    f_i = (1 - m) * d + m * f_s.astype(self.dtype)
    aux = dict(mask=m, gamma=gamma, beta=beta, f_s_bar=f_s_bar)
    return f_i.astype(jnp.float32), aux


class ConcatIntegration(nn.Module):
  """Table I ablation: f_i = Conv3D(3x3x3)(concat(f_s, broadcast(align(f_d)))) with C1 outputs."""
  channels: int
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None  # unused; same constructor as AdaINIntegration
  conv_impl: str = 'fold'  # backbone_layers.CONV_IMPLS; 'fold_taps' changes the 3x3x3 fuse conv

  @nn.compact
  def __call__(self, f_s, f_d, train=False):
    del train
    a = FdAlign(self.channels, f_s.shape[1], dtype=self.dtype, name='align')(f_d)
    a = jnp.broadcast_to(a[:, :, None, None], f_s.shape[:4] + a.shape[-1:])
    h = jnp.concatenate([f_s.astype(self.dtype), a], axis=-1)
    f_i = conv3(self.channels, self.conv_impl, self.dtype, 'fuse')(h)
    return f_i.astype(jnp.float32), {}


INTEGRATIONS = {'adain': AdaINIntegration, 'concat': ConcatIntegration}


def get_integration(name, **kw):
  """config.model.integration -> module ('adain' | 'concat')."""
  if name not in INTEGRATIONS:
    raise ValueError(f'config.model.integration: unknown {name!r}; choose from {sorted(INTEGRATIONS)}')
  return INTEGRATIONS[name](**kw)
