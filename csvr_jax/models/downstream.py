"""The downstream network: which pretrained features finetuning, linear probing and retrieval start from.

`config.finetune.features` picks it:
  'vnet'  the V-Network's pooled output (global average of its last map f_s): the protocol other
          self-supervised papers use, and the default;
  'fi'    the paper's integrated feature (IV-B, "the integrated feature f_i is utilized to finetune on downstream
          tasks"; Table I's f_i rows): f_s of the clip, f_d of the clip's poses through the pose encoder, the
          integration layer (eq. 3-5) -> f_i (B, T1, H1, W1, C1), global average pooled -> (B, C1);
  'fd'    the pose encoder alone (Table I's f_d row): f_d (B, T_d, C_d) of the clip's poses, averaged over time.
Finetuning trains every part it runs end to end; the frozen modes use the same pooled features.

Usage:
  model = DownstreamFeatures('fi', vnet=vnet, pose_g=PoseEncoder(...), integration=AdaINIntegration(...))
  out = model.apply(variables, clip, pose_in, pose_in_conf, train=False)   # out['pooled'] (B, C) float32
  # variables: {'params': {'vnet', 'pose_g', 'integration'}, 'batch_stats': {...}}: the same names as the
  # pretraining TrainState's networks (pose_g holds only the encoder's entries, pose_gan.encoder_variables).
The calling convention is the backbones' one (clip first, train keyword, a dict with 'pooled'), with the poses
of the batch contract ('pose_in' (B,T,N,2), 'pose_in_conf' (B,T,N)) as extra arguments: 'vnet' ignores them,
'fd' ignores the clip (None is fine).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

FEATURES = ('vnet', 'fi', 'fd')
POSE_KEYS = ('pose_in', 'pose_in_conf')
# The networks each choice runs (names of the pretraining TrainState).
NETWORKS = {'vnet': ('vnet',), 'fi': ('vnet', 'pose_g', 'integration'), 'fd': ('pose_g',)}
# How a run's row names the features in report.md ('vnet' is the usual protocol: unnamed).
LABELS = {'vnet': '', 'fi': 'f_i', 'fd': 'f_d'}


def check_features(features):
  if features not in FEATURES:
    raise ValueError(f'config.finetune.features={features!r}: choose one of {FEATURES}')
  return features


def input_keys(features):
  """Batch keys the features are computed from (what the loaders' batches must carry to the step)."""
  return {'vnet': ('clip',), 'fi': ('clip',) + POSE_KEYS, 'fd': POSE_KEYS}[check_features(features)]


def call_args(inputs, prepare_clip):
  """A batch holding input_keys (uint8 'clip', poses) -> (prepare_clip(clip) or None, {pose key: array}): the
  model's positional clip and keyword poses."""
  clip = prepare_clip(inputs['clip']) if 'clip' in inputs else None
  return clip, {k: inputs[k] for k in POSE_KEYS if k in inputs}


def pose_encoder_inputs(pose_in, pose_in_conf):
  """Batch poses -> the pose encoder's inputs, as in pretraining: (B,T,2N) x, y interleaved per joint, and the
  validity mask (B,T,N) (confidence > 0) as float32."""
  flat = pose_in.reshape(pose_in.shape[:2] + (-1,)).astype(jnp.float32)
  return flat, (pose_in_conf > 0).astype(jnp.float32)


class DownstreamFeatures(nn.Module):
  """(clip (B,T,S,S,3) normalised, pose_in (B,T,N,2), pose_in_conf (B,T,N)) -> {'pooled': (B, C) float32}."""
  features: str
  vnet: Any = None          # a video backbone ('vnet', 'fi')
  pose_g: Any = None        # pose_gan.PoseEncoder ('fi', 'fd')
  integration: Any = None   # integration.get_integration(...) with the V-Network's channels ('fi')

  @nn.compact
  def __call__(self, clip, pose_in=None, pose_in_conf=None, train=False):
    if self.features == 'vnet':
      return {'pooled': self.vnet(clip, train=train)['pooled']}
    f_d = self.pose_g(*pose_encoder_inputs(pose_in, pose_in_conf), train=train)
    if self.features == 'fd':
      return {'pooled': jnp.mean(f_d.astype(jnp.float32), axis=1)}
    f_s = self.vnet(clip, train=train)['features']
    f_i, _ = self.integration(f_s, f_d, train=train)
    return {'pooled': jnp.mean(f_i.astype(jnp.float32), axis=(1, 2, 3))}
