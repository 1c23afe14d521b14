"""Layers shared by the backbones: the one convolution helper, torch-matching BatchNorm, Conv-BN-ReLU.

Everything is channels last. Parameters are float32; `dtype` is the compute dtype. Padding is torch's
symmetric zero padding (never 'SAME', which pads asymmetrically for even sizes with stride 2), so every layer
matches its torchvision counterpart exactly.
"""
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def kaiming_fan_out(key, shape, dtype=jnp.float32):
  """torch's kaiming_normal_(mode='fan_out', nonlinearity='relu') for a (*kernel, Cin, Cout) kernel.

  torchvision's init for (video) ResNet convs. Drawn flat and reshaped: XLA:CPU takes ~10 s to compile a
  threefry normal of a rank-4/5 shape such as (3, 3, 3, 8, 16), and ~0.6 s for the same numbers flat.
  """
  std = math.sqrt(2.0 / (shape[-1] * math.prod(shape[:-2])))
  return (std * jax.random.normal(key, (math.prod(shape),), dtype)).reshape(shape)


KAIMING_FAN_OUT = kaiming_fan_out
# 'fold': (1,k,k) convs run as 2D convs over (B*T, H, W); (k,1,1) convs as 2D convs over (B, T, H*W).
# 'native': every 3D conv is a 3D conv. Same parameters and maths either way; only the XLA kernels differ.
# 'fold_pad8': 'fold', and channel counts that are not multiples of 8 (the RGB input, R(2+1)D's midplanes such
# as 45, 230, 460, 921) are padded with zero channels / zero filters at apply time: cuDNN's bf16 NHWC kernels
# want multiples of 8 and otherwise pad every such tensor itself (nhwcAddPaddingKernel, 4.2 ms of a 40.5 ms
# R(2+1)D-18 finetune step on an H200). Parameters keep their shapes; outputs are the same numbers.
# 'fold_s2d': 'fold_pad8', and the RGB stems (stride-2 spatial convs reading <= 4 channels) run as
# space-to-depth convolutions (see `space_to_depth_conv`): cuDNN has no efficient kernel for 3 input channels.
# 'fold_taps' (CPU): 'fold', and every other conv with more than one temporal tap as 2D convs over its taps
# (`temporal_taps_conv`); the video GANs and the integration layer read it too (`conv_general_dilated_of`).
CONV_IMPLS = ('fold', 'native', 'fold_pad8', 'fold_s2d', 'fold_taps')
CHANNEL_MULTIPLE = 8


def channel_multiple(impl):
  """The multiple that `impl` pads channel counts to (1: no padding)."""
  return CHANNEL_MULTIPLE if impl in ('fold_pad8', 'fold_s2d') else 1


def use_space_to_depth(impl, kernel_shape, strides):
  """Whether `impl` runs this 3D conv as `space_to_depth_conv`: spatial stride 2, temporal stride 1, a
  spatial kernel of at least 2 and at most 4 input channels (the RGB stems of R3D-18, R(2+1)D-18 and MC3-18)."""
  return (impl == 'fold_s2d' and len(kernel_shape) == 5 and tuple(strides) == (1, 2, 2)
          and min(kernel_shape[1:3]) >= 2 and kernel_shape[3] <= 4)


def space_to_depth_conv(x, kernel, padding, multiple=CHANNEL_MULTIPLE):
  """The (1, 2, 2)-strided 3D conv of x (B, T, H, W, C) with kernel (kt, kh, kw, C, O) and symmetric
  `padding`, computed as a stride-1 2D conv over (B*T') with few, wide input channels.

  Space to depth: each 2x2 pixel block becomes one pixel of 4C channels, and the kernel, zero-padded to even
  (kh, kw), becomes (kh/2, kw/2, 4C) (MLPerf's ResNet stem trick). Time to depth: the kt frames a temporal tap
  reads sit side by side in channels (temporal stride 1), so a (3, 7, 7) conv over RGB is a 4x4 2D conv over
  36 channels (padded to `multiple`). Same sums as the strided conv, up to float summation order; the zero
  taps cost (8*8)/(7*7) = 1.3x the useful FLOPs, which cuDNN runs far faster than 3-channel implicit GEMMs.
  """
  kt, kh, kw, c, o = kernel.shape
  pt, ph, pw = padding
  b, t, h, w, _ = x.shape
  t_out, h_out, w_out = t + 2 * pt - kt + 1, (h + 2 * ph - kh) // 2 + 1, (w + 2 * pw - kw) // 2 + 1
  hp, wp = h + 2 * ph, w + 2 * pw
  x = jnp.pad(x, [(0, 0), (pt, pt), (ph, ph + hp % 2), (pw, pw + wp % 2), (0, 0)])  # even H, W
  h2, w2 = (hp + hp % 2) // 2, (wp + wp % 2) // 2
  x = x.reshape(b, t + 2 * pt, h2, 2, w2, 2, c).transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, t + 2 * pt, h2, w2, 4 * c)
  x = jnp.concatenate([x[:, i:i + t_out] for i in range(kt)], axis=-1)  # (B, T', H/2, W/2, kt*4C)
  kh2, kw2 = -(-kh // 2), -(-kw // 2)
  k = jnp.pad(kernel, [(0, 0), (0, 2 * kh2 - kh), (0, 2 * kw2 - kw), (0, 0), (0, 0)])
  # (kt, a, p, b, q, C, O) -> (a, b, kt, p, q, C, O): channel order (tap, row parity, column parity, C) as x's.
  k = k.reshape(kt, kh2, 2, kw2, 2, c, o).transpose(1, 3, 0, 2, 4, 5, 6).reshape(kh2, kw2, kt * 4 * c, o)
  channels = round_up(kt * 4 * c, multiple)
  x, k = pad_channels(x, channels), jnp.pad(k, [(0, 0), (0, 0), (0, channels - k.shape[2]), (0, 0)])
  y = _conv_nd(x.reshape(b * t_out, h2, w2, channels), k, (1, 1), (0, 0))
  return y[:, :h_out, :w_out].reshape(b, t_out, h_out, w_out, o)  # even kernels over odd sizes: one extra row


def round_up(n, multiple):
  return -(-n // multiple) * multiple


def pad_channels(x, channels):
  """x (..., C) -> (..., channels) with zeros appended (C <= channels)."""
  extra = channels - x.shape[-1]
  return x if extra == 0 else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])
# torch BatchNorm momentum m updates running = (1-m)*running + m*batch; flax's momentum is 1 - m.
TORCH_BN = dict(momentum=0.9, epsilon=1e-5)


def scaled(channels, width):
  """Channel count after the `width` multiplier (at least 1)."""
  return max(1, int(round(channels * width)))


def _conv_nd(x, kernel, strides, padding):
  """Plain N-d convolution, x (B, *S, Cin), kernel (*K, Cin, Cout), symmetric padding per spatial axis."""
  spatial = 'DHW'[3 - (kernel.ndim - 2):]
  dims = ('N' + spatial + 'C', spatial + 'IO', 'N' + spatial + 'C')
  return jax.lax.conv_general_dilated(x, kernel, tuple(strides), [(p, p) for p in padding],
                                      dimension_numbers=dims)


def temporal_taps_conv(x, kernel, strides, padding):
  """The 3D conv of x (B, T, H, W, Cin) with kernel (kt, kh, kw, Cin, Cout), strides (st, sh, sw) and padding
  ((lo, hi) per axis), computed as the sum over the kt temporal taps of 2D convs over (B*T', H, W): tap i sees
  frames i, i + st, ... of the time-padded input; taps that read only padding are skipped. Same sums as the 3D
  conv up to float summation order.

  Why: XLA:CPU runs 3D convolutions (and above all their gradients) 2-4x slower than the same work as 2D
  convolutions at the study's shapes (`python -m csvr_jax.bench --what=conv3d`, docs/performance.md); GPUs
  have fast 3D kernels, so nothing uses this there yet.
  """
  kt = kernel.shape[0]
  (t_lo, t_hi), spatial_padding = padding[0], [tuple(p) for p in padding[1:]]
  b, t, h, w, c = x.shape
  x = jnp.pad(x, [(0, 0), (t_lo, t_hi), (0, 0), (0, 0), (0, 0)])
  t_out = (t + t_lo + t_hi - kt) // strides[0] + 1
  y = None
  for i in range(kt):
    if all(not 0 <= i - t_lo + strides[0] * j < t for j in range(t_out)):
      continue  # a tap that reads only the zero padding adds nothing (clips of 1-2 frames deep in a network)
    frames = jax.lax.slice_in_dim(x, i, i + strides[0] * (t_out - 1) + 1, strides[0], axis=1)
    yi = jax.lax.conv_general_dilated(frames.reshape(b * t_out, h, w, c), kernel[i], tuple(strides[1:]),
                                      spatial_padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = yi if y is None else y + yi
  return y.reshape((b, t_out) + y.shape[1:])


def conv_apply(x, kernel, strides, padding, impl='fold'):
  """Convolution of x (B, [T,] H, W, Cin) with kernel ([kt,] kh, kw, Cin, Cout); see CONV_IMPLS."""
  if impl not in CONV_IMPLS:
    raise ValueError(f'unknown conv impl {impl!r}; choose from {CONV_IMPLS}')
  if impl.startswith('fold') and kernel.ndim == 5:
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = kernel.shape[:3], strides, padding
    b, t, h, w, c = x.shape
    if kt == 1 and st == 1 and pt == 0:  # purely spatial: time joins the batch (a free reshape)
      y = _conv_nd(x.reshape(b * t, h, w, c), kernel[0], (sh, sw), (ph, pw))
      return y.reshape((b, t) + y.shape[1:])
    if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:  # purely temporal: H*W becomes one axis (free)
      y = _conv_nd(x.reshape(b, t, h * w, c), kernel[:, 0], (st, 1), (pt, 0))
      return y.reshape(b, y.shape[1], h, w, y.shape[-1])
    if impl == 'fold_taps':
      return temporal_taps_conv(x, kernel, strides, [(p, p) for p in padding])
  return _conv_nd(x, kernel, strides, padding)


# flax's dimension numbers of a channels-last 3D conv (NDHWC input, DHWIO kernel).
_FLAX_3D = jax.lax.ConvDimensionNumbers((0, 4, 1, 2, 3), (4, 3, 0, 1, 2), (0, 4, 1, 2, 3))


def _taps_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                               dimension_numbers=None, feature_group_count=1, precision=None):
  """lax.conv_general_dilated for flax's nn.Conv, with undilated, ungrouped 3D convs of more than one temporal
  tap as `temporal_taps_conv`."""
  taps = (lhs.ndim == 5 and rhs.shape[0] > 1 and feature_group_count == 1 and dimension_numbers == _FLAX_3D
          and all(d == 1 for d in (lhs_dilation or ())) and all(d == 1 for d in (rhs_dilation or ())))
  if not taps:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:4], rhs.shape[:3], window_strides, padding)
  return temporal_taps_conv(lhs, rhs, window_strides, padding)


def conv_general_dilated_of(impl):
  """The `conv_general_dilated` argument of flax's nn.Conv for model.conv_impl `impl` (the video GANs and the
  integration layer): temporal taps for 'fold_taps', None (lax's own) for the others."""
  return _taps_conv_general_dilated if impl == 'fold_taps' else None


class Conv(nn.Module):
  """N-d convolution like torch.nn.ConvNd: params 'kernel' (*kernel_size, Cin, Cout) and optional 'bias'.

  Zero-channel padding (CONV_IMPLS 'fold_pad8'): `in_features` is the true Cin when x carries extra zero
  channels (the kernel gets zero rows for them); `out_padded` > features computes that many output channels,
  the extra ones from zero filters (exactly zero; the caller slices or keeps them)."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: Sequence[int]
  use_bias: bool = False
  dtype: Any = jnp.float32
  impl: str = 'fold'
  in_features: Optional[int] = None
  out_padded: Optional[int] = None

  @nn.compact
  def __call__(self, x):
    shape = tuple(self.kernel_size) + (self.in_features or x.shape[-1], self.features)
    kernel = self.param('kernel', KAIMING_FAN_OUT, shape, jnp.float32)
    s2d = use_space_to_depth(self.impl, shape, self.strides)
    if s2d:  # the RGB stem reads the true channels only; space_to_depth_conv pads its folded channels itself
      x = x[..., :shape[-2]]
    cin, cout = x.shape[-1] - shape[-2], (self.out_padded or self.features) - self.features
    if cin or cout:
      kernel = jnp.pad(kernel, [(0, 0)] * len(self.kernel_size) + [(0, cin), (0, cout)])
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if s2d:
      y = space_to_depth_conv(x, kernel, self.padding)
    else:
      y = conv_apply(x, kernel, self.strides, self.padding, self.impl)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
      y = y + pad_channels(bias, y.shape[-1])
    return y


def conv(features, kernel_size, strides, padding, *, name, dtype, impl, use_bias=False, in_features=None,
         out_padded=None):
  """The single place where backbones build convolutions (a faster formulation goes in here / conv_apply)."""
  return Conv(features, tuple(kernel_size), tuple(strides), tuple(padding), use_bias=use_bias, dtype=dtype,
              impl=impl, in_features=in_features, out_padded=out_padded, name=name)


class BatchNorm(nn.BatchNorm):
  """flax BatchNorm plus torch's `num_batches_tracked` counter in 'batch_stats', and exact row masks.

  The counter is what torch keeps (it counts training-mode calls); it lets torchvision checkpoints round-trip
  exactly. Eval mode uses the running statistics exactly like torch. One difference remains in training:
  torch updates running_var with the unbiased batch variance, flax with the biased one (n/(n-1) apart).

  `mask` (N,) bool (training mode): batch statistics over the rows where it is True only, so padding rows
  (empty I-frame slots) change neither the normalisation of the valid rows nor the running statistics. Sums
  and counts are psum'd over `axis_name`: exact when devices hold different numbers of valid rows (flax's own
  `mask` argument averages per-device means instead).
  """

  @nn.compact
  def __call__(self, x, use_running_average: Optional[bool] = None, *, mask=None):
    counter = self.variable('batch_stats', 'num_batches_tracked', lambda: jnp.zeros((), jnp.int32))
    use_ra = nn.merge_param('use_running_average', self.use_running_average, use_running_average)
    if not use_ra and not self.is_initializing():
      counter.value = counter.value + 1
    if mask is None or use_ra:
      return super().__call__(x, use_running_average=use_running_average)
    features = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda s: jnp.zeros(s, jnp.float32), (features,))
    ra_var = self.variable('batch_stats', 'var', lambda s: jnp.ones(s, jnp.float32), (features,))
    mean, var = masked_moments(x, mask, None if self.is_initializing() else self.axis_name)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    mul = jax.lax.rsqrt(var + self.epsilon)
    if self.use_scale:
      mul = mul * self.param('scale', self.scale_init, (features,), self.param_dtype)
    y = (x.astype(jnp.float32) - mean) * mul
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (features,), self.param_dtype)
    return y.astype(self.dtype or x.dtype)


def masked_moments(x, mask, axis_name=None):
  """Per-channel mean and biased variance of x (N, ..., C) over the rows where mask (N,) is True, over all
  devices of `axis_name` -> two (C,) float32 arrays. Two passes (mean, then squared deviations): with padding
  rows the sums run over other values than flax's, and the one-pass E[x^2] - E[x]^2 would amplify that
  rounding difference."""
  w = mask.astype(jnp.float32).reshape((-1,) + (1,) * (x.ndim - 1))
  x = x.astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  psum = (lambda v: v) if axis_name is None else (lambda v: jax.lax.psum(v, axis_name))
  count = jnp.maximum(psum(jnp.sum(w)) * math.prod(x.shape[1:-1]), 1.0)
  mean = psum(jnp.sum(w * x, axes)) / count
  return mean, psum(jnp.sum(w * jnp.square(x - mean), axes)) / count


def batch_norm(*, train, name, dtype, axis_name, momentum=TORCH_BN['momentum'], epsilon=TORCH_BN['epsilon']):
  """BatchNorm in training (batch statistics, averaged over `axis_name` when given) or eval mode."""
  return BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon, axis_name=axis_name,
                   dtype=dtype, param_dtype=jnp.float32, name=name)


class ConvBNReLU(nn.Module):
  """Conv -> BatchNorm -> ReLU (torchvision's Conv3dNormActivation). Submodules 'conv' and 'bn'."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: Sequence[int]
  use_bias: bool = False
  bn_momentum: float = TORCH_BN['momentum']
  bn_epsilon: float = TORCH_BN['epsilon']
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'fold'

  @nn.compact
  def __call__(self, x, train):
    x = conv(self.features, self.kernel_size, self.strides, self.padding, name='conv', dtype=self.dtype,
             impl=self.conv_impl, use_bias=self.use_bias)(x)
    x = batch_norm(train=train, name='bn', dtype=self.dtype, axis_name=self.bn_axis_name,
                   momentum=self.bn_momentum, epsilon=self.bn_epsilon)(x)
    return nn.relu(x)


def max_pool(x, window, strides, padding):
  """torch MaxPoolNd (ceil_mode=False): symmetric padding that never wins the max."""
  return nn.max_pool(x, tuple(window), tuple(strides), [(p, p) for p in padding])


def maybe_remat(module_cls, remat):
  """nn.remat over a block whose __call__ is (self, x, train); `train` is static."""
  return nn.remat(module_cls, static_argnums=(2,)) if remat else module_cls


def global_pool(x):
  """Mean over all axes but batch and channels, accumulated in float32 -> (B, C) float32."""
  return jnp.mean(x.astype(jnp.float32), axis=tuple(range(1, x.ndim - 1)))


def backbone_outputs(features, name, input_shape):
  """{'pooled', 'features'}; an input too small for the network's downsampling is a one-line error."""
  if 0 in features.shape:
    raise ValueError(f'{name}: input {tuple(input_shape)} is too small (last feature map {features.shape}); '
                     'use more frames or larger crops')
  return {'pooled': global_pool(features), 'features': features}
