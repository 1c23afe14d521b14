"""Pose branch (eq. 1): a 1D-CNN conditional GAN over time that predicts future poses.

`PoseGenerator` G_p(z_p | P_in): six 1D-conv encoder layers over time on the current poses plus their
joint-validity mask, noise z_p injected at the bottleneck, a decoder that upsamples time to the T' future
steps. f_d (the dynamic motion feature) is the output of the encoder's last layer (Table III).
`PoseDiscriminator` D_p(P | P_in): a 1D-CNN over the past poses followed by the candidate future, i.e.
conditioned by concatenation along time, one logit per sample.

Usage:
  g = PoseGenerator(channels=64, encoder_layers=6, noise_dim=16, out_len=16)
  vars_g = g.init({'params': key}, p_in, valid_in, z, train=False)          # p_in (B,16,36), valid_in (B,16,18)
  (p_gen, feats), updates = g.apply(vars_g, p_in, valid_in, z, train=True, mutable=['batch_stats'])
  f_d = feats[-1]                                                             # (B, 2, 256)
  enc = PoseEncoder(channels=64, encoder_layers=6)                            # G_p's encoder alone
  f_d = enc.apply(encoder_variables(vars_g, 6), p_in, valid_in, train=False)  # the same f_d, no decoder
  d = PoseDiscriminator(channels=64)
  logits = d.apply(d.init(key, p_gen, p_in), p_gen, p_in)                    # (B,)

Layout: poses are (B, T, 2N) with joint j at channels (2j, 2j+1) = (x, y) in [0, 1]; the validity mask is
(B, T, N) (confidence > 0). Choices where the paper is silent (documented in the README):
  * encoder widths c, c, 2c, 2c, 4c, 4c with time strides 1, 2, 1, 2, 1, 2 (T = 16 -> T_d = 2, the
    temporal size of the 3D-CNN feature maps), kernel 3, BatchNorm + LeakyReLU(0.2);
  * z_p goes through a Dense layer, is broadcast over time and concatenated to f_d;
  * the decoder mirrors the encoder with nearest x2 upsampling in time, then adaptive average pooling to
    T' when 8 * T_d != T'; the output is a sigmoid, as coordinates lie in [0, 1];
  * the discriminator has no normalisation (WGAN-GP needs per-sample gradients) and sees the poses with
    the validity mask applied; callers should mask the generated future with the real future's validity
    mask so that missing joints (zeros) do not give the fake away.
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def adaptive_avg_pool_matrix(n_in, n_out):
  """(n_out, n_in) averaging matrix of torch's adaptive_avg_pool1d (upsampling repeats, i.e. nearest)."""
  w = np.zeros((n_out, n_in), np.float32)
  for t in range(n_out):
    lo, hi = (t * n_in) // n_out, -((-(t + 1) * n_in) // n_out)
    w[t, lo:hi] = 1.0 / (hi - lo)
  return w


def resize_time(x, n_out):
  """Adaptive average pooling of x (B, T, ...) along axis 1 to n_out steps (identity when equal)."""
  if x.shape[1] == n_out:
    return x
  w = jnp.asarray(adaptive_avg_pool_matrix(x.shape[1], n_out), x.dtype)
  return jnp.einsum('ts,bs...->bt...', w, x)


def encoder_plan(channels, layers):
  """(features, stride) of each encoder layer: widths c,c,2c,2c,4c,4c..., stride 2 on every second layer."""
  return [(channels * 2 ** min(i // 2, 2), 2 if i % 2 else 1) for i in range(layers)]


def _batch_norm(train, bn_axis_name, dtype, name):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=bn_axis_name, dtype=dtype, name=name)


def _encode(p_in, valid, channels, layers, dtype, bn_axis_name, train):
  """The encoder layers -> [output of each layer]; called inside a compact method, so its convolutions and
  BatchNorms ('enc{i}', 'enc{i}_bn') are the caller's children: PoseGenerator and PoseEncoder share names."""
  h = jnp.concatenate([p_in, valid.astype(p_in.dtype)], axis=-1).astype(dtype)
  feats = []
  for i, (c, s) in enumerate(encoder_plan(channels, layers)):
    h = nn.Conv(c, (3,), strides=(s,), padding=1, use_bias=False, dtype=dtype, name=f'enc{i}')(h)
    h = nn.leaky_relu(_batch_norm(train, bn_axis_name, dtype, f'enc{i}_bn')(h), 0.2)
    feats.append(h)
  return feats


def encoder_names(layers):
  """Top-level parameter / batch-statistics names of the encoder inside PoseGenerator and PoseEncoder."""
  return tuple(n for i in range(layers) for n in (f'enc{i}', f'enc{i}_bn'))


def encoder_variables(generator_variables, layers):
  """A PoseGenerator's {'params', 'batch_stats'} -> the PoseEncoder's (the encoder's entries, same names)."""
  names = encoder_names(layers)
  return {col: {n: tree[n] for n in names if n in tree} for col, tree in generator_variables.items()}


OUTPUTS = ('absolute', 'residual')


def last_observed_pose(p_in, valid):
  """(P_in (B,T,2N), valid (B,T,N)) -> (B,2N): each joint's last valid position; a joint never seen takes the
  mean of the person's valid joints (0.5 when the person is never seen)."""
  b, t, n = valid.shape
  xy = p_in.reshape(b, t, n, 2)
  valid = valid > 0
  last = jnp.max(jnp.where(valid, jnp.arange(t)[None, :, None], -1), axis=1)               # (B, N), -1: never
  last_xy = jnp.take_along_axis(xy, jnp.maximum(last, 0)[:, None, :, None], axis=1)[:, 0]   # (B, N, 2)
  w = valid[..., None].astype(xy.dtype)
  count = jnp.sum(w, axis=(1, 2))                                                          # (B, 1)
  person = jnp.where(count > 0, jnp.sum(xy * w, axis=(1, 2)) / jnp.maximum(count, 1.0), 0.5)  # (B, 2)
  return jnp.where((last >= 0)[..., None], last_xy, person[:, None, :]).reshape(b, 2 * n)


class PoseGenerator(nn.Module):
  """G_p: (P_in (B,T,2N), valid (B,T,N), z (B,Z)) -> (P_gen (B,T',2N), [encoder features]).

  output='absolute': P_gen = sigmoid(decoder), coordinates in [0, 1]. output='residual': P_gen = the last observed
  pose + decoder (its last convolution starts at zero, so an untrained generator repeats the last pose and
  training learns the displacement; the paper does not say which, docs/design.md).
  """
  channels: int = 64
  encoder_layers: int = 6
  noise_dim: int = 16
  out_len: int = 16
  output: str = 'absolute'
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, p_in, valid, z, train=False):
    """Returns (p_gen, feats); feats[i] is the output of encoder layer i, f_d = feats[-1] (B, T_d, C_d)."""
    n2 = p_in.shape[-1]
    feats = _encode(p_in, valid, self.channels, self.encoder_layers, self.dtype, self.bn_axis_name, train)
    h = feats[-1]
    plan = encoder_plan(self.channels, self.encoder_layers)
    zc = nn.Dense(plan[-1][0], dtype=self.dtype, name='noise')(z.astype(self.dtype))
    h = jnp.concatenate([h, jnp.broadcast_to(zc[:, None], h.shape[:2] + zc.shape[-1:])], axis=-1)
    # Decoder: undo each temporal stride of the encoder with nearest x2 upsampling, widths in reverse.
    for i, (c, s) in enumerate(reversed(plan)):
      if s == 2:
        h = jnp.repeat(h, 2, axis=1)
      h = nn.Conv(c, (3,), padding=1, use_bias=False, dtype=self.dtype, name=f'dec{i}')(h)
      h = nn.leaky_relu(_batch_norm(train, self.bn_axis_name, self.dtype, f'dec{i}_bn')(h), 0.2)
    h = resize_time(h, self.out_len)
    if self.output == 'residual':
      delta = nn.Conv(n2, (3,), padding=1, kernel_init=nn.initializers.zeros, dtype=self.dtype, name='out')(h)
      p_gen = last_observed_pose(p_in.astype(jnp.float32), valid)[:, None] + delta.astype(jnp.float32)
    elif self.output == 'absolute':
      p_gen = nn.sigmoid(nn.Conv(n2, (3,), padding=1, dtype=self.dtype, name='out')(h))
    else:
      raise ValueError(f'config.model.pose_output: unknown {self.output!r}; choose from {OUTPUTS}')
    return p_gen.astype(jnp.float32), feats


class PoseEncoder(nn.Module):
  """G_p's encoder alone (downstream f_d, Table I): (P_in (B,T,2N), valid (B,T,N)) -> f_d (B, T_d, C_d) in the
  compute dtype. Its variables are PoseGenerator's encoder entries (`encoder_variables`); no decoder runs."""
  channels: int = 64
  encoder_layers: int = 6
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, p_in, valid, train=False):
    return _encode(p_in, valid, self.channels, self.encoder_layers, self.dtype, self.bn_axis_name, train)[-1]


class PoseDiscriminator(nn.Module):
  """D_p(P | P_in): P (B,T',2N) future, P_in (B,T,2N) past -> logits (B,) float32. No batch statistics."""
  channels: int = 64
  layers: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, p, p_in, train=False):
    del train  # no BN or dropout; accepted for the uniform `module.apply(..., train=...)` convention
    h = jnp.concatenate([p_in, p], axis=1).astype(self.dtype)  # the past, then the candidate future
    h = jnp.concatenate([h, jnp.broadcast_to(  # marks which steps are the candidate (future) part
        (jnp.arange(h.shape[1]) >= p_in.shape[1]).astype(self.dtype)[None, :, None], h.shape[:2] + (1,))],
                        axis=-1)
    for i in range(self.layers):
      c = self.channels * 2 ** min(i, 2)
      h = nn.Conv(c, (3,), strides=(2 if i else 1,), padding=1, dtype=self.dtype, name=f'conv{i}')(h)
      h = nn.leaky_relu(h, 0.2)
    h = jnp.mean(h, axis=1)
    return nn.Dense(1, dtype=self.dtype, name='logit')(h)[:, 0].astype(jnp.float32)
