"""torchvision <-> flax weights for r3d_18, mc3_18, r2plus1d_18 and s3d (numpy only; torch only for .pth files).

  from_torchvision(name, state_dict) -> {'params', 'batch_stats'} of csvr_jax.models.get_video_backbone(name)
  to_torchvision(name, variables)    -> state_dict of numpy arrays (torchvision key order)

Conv weights (O, I, kt, kh, kw) become kernels (kt, kh, kw, I, O); BatchNorm weight/bias/running_mean/
running_var/num_batches_tracked become scale/bias/mean/var/num_batches_tracked. The classifier (fc.* /
classifier.1.*) is not part of the V-Network: from_torchvision drops it and to_torchvision does not write it
(load the result with `model.load_state_dict(sd, strict=False)`; only the classifier is then missing).
Without a classifier, to_torchvision(name, from_torchvision(name, sd)) returns sd exactly.

CLI:
  python -m csvr_jax.models.torch_interop --to=orbax --in=r3d_18.pth --arch=r3d_18 --out=EXPORT_DIR
  python -m csvr_jax.models.torch_interop --to=pth --in=EXPORT_DIR --out=r3d_18.pth   (or --to=npz, x.npz)
"""
import os

import numpy as np

from csvr_jax.data import normalization
from csvr_jax.models.s3d import S3D_INCEPTION
from csvr_jax.models.video_backbones import VIDEO_RESNETS

ARCHS = ('r3d_18', 'mc3_18', 'r2plus1d_18', 's3d')
CLASSIFIER_PREFIXES = {'r3d_18': 'fc.', 'mc3_18': 'fc.', 'r2plus1d_18': 'fc.', 's3d': 'classifier.'}
BN_KEYS = (('weight', 'params', 'scale'), ('bias', 'params', 'bias'), ('running_mean', 'batch_stats', 'mean'),
           ('running_var', 'batch_stats', 'var'), ('num_batches_tracked', 'batch_stats', 'num_batches_tracked'))


def _resnet_layers(arch):
  """(torch module prefix, flax module path, 'conv' | 'bn') in torchvision's registration order."""
  stem, kinds = VIDEO_RESNETS[arch]
  if stem == 'r2plus1d':
    yield from (('stem.0', ('stem_conv_s',), 'conv'), ('stem.1', ('stem_bn_s',), 'bn'),
                ('stem.3', ('stem_conv_t',), 'conv'), ('stem.4', ('stem_bn',), 'bn'))
  else:
    yield from (('stem.0', ('stem_conv',), 'conv'), ('stem.1', ('stem_bn',), 'bn'))
  for i, kind in enumerate(kinds):
    for j in range(2):
      tp, fp = f'layer{i + 1}.{j}', f'layer{i + 1}_{j}'
      for c in (1, 2):
        if kind == '2plus1d':  # Sequential(Conv2Plus1D(conv_s, bn, relu, conv_t), bn, relu)
          yield from ((f'{tp}.conv{c}.0.0', (fp, f'conv{c}_s'), 'conv'),
                      (f'{tp}.conv{c}.0.1', (fp, f'conv{c}_mid_bn'), 'bn'),
                      (f'{tp}.conv{c}.0.3', (fp, f'conv{c}_t'), 'conv'))
        else:
          yield f'{tp}.conv{c}.0', (fp, f'conv{c}'), 'conv'
        yield f'{tp}.conv{c}.1', (fp, f'bn{c}'), 'bn'
      if i > 0 and j == 0:
        yield from ((f'{tp}.downsample.0', (fp, 'down_conv'), 'conv'), (f'{tp}.downsample.1', (fp, 'down_bn'), 'bn'))


def _unit(tp, fp):
  """Conv3dNormActivation at torch prefix tp <-> ConvBNReLU at flax path fp."""
  return ((f'{tp}.0', fp + ('conv',), 'conv'), (f'{tp}.1', fp + ('bn',), 'bn'))


def _s3d_layers():
  """Same as _resnet_layers for torchvision's S3D features[0..15]."""
  sep = lambda tp, fp: _unit(f'{tp}.0', fp[:-1] + (fp[-1] + '_s',)) + _unit(f'{tp}.1', fp[:-1] + (fp[-1] + '_t',))
  yield from sep('features.0', ('f0',))
  yield from _unit('features.2', ('f2',))
  yield from sep('features.3', ('f3',))
  for index in sorted(S3D_INCEPTION):
    tp, fp = f'features.{index}', (f'f{index}',)
    yield from _unit(f'{tp}.branch0', fp + ('b0',))
    for b in (1, 2):
      yield from _unit(f'{tp}.branch{b}.0', fp + (f'b{b}_0',))
      yield from sep(f'{tp}.branch{b}.1', fp + (f'b{b}_1',))
    yield from _unit(f'{tp}.branch3.1', fp + ('b3',))


def layer_map(name):
  """List of (torch prefix, flax module path, kind) for architecture `name`."""
  if name not in ARCHS:
    raise ValueError(f'torch interop supports {ARCHS}, not {name!r}')
  return list(_s3d_layers() if name == 's3d' else _resnet_layers(name))


def _put(tree, path, value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree, path, what):
  for key in path:
    if key not in tree:
      raise KeyError(f'variables lack {"/".join(path)} (needed for {what})')
    tree = tree[key]
  return np.asarray(tree)


def from_torchvision(name, state_dict):
  """torchvision state_dict (name -> array or CPU tensor) -> flax variables {'params', 'batch_stats'} (numpy)."""
  layers = layer_map(name)
  classifier = CLASSIFIER_PREFIXES[name]
  sd = {k: v for k, v in state_dict.items() if not k.startswith(classifier)}
  expected = [f'{p}.{t}' for p, _, kind in layers
              for t in (['weight'] if kind == 'conv' else [k for k, _, _ in BN_KEYS])]
  missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
  if missing or unexpected:
    raise ValueError(f'{name} state_dict mismatch: missing {missing[:5]} ({len(missing)}), '
                     f'unexpected {unexpected[:5]} ({len(unexpected)})')
  variables = {'params': {}, 'batch_stats': {}}
  for prefix, path, kind in layers:
    if kind == 'conv':
      w = np.asarray(sd[prefix + '.weight'], np.float32)
      _put(variables['params'], path + ('kernel',), np.transpose(w, tuple(range(2, w.ndim)) + (1, 0)))
      continue
    for torch_key, collection, flax_key in BN_KEYS:
      value = np.asarray(sd[f'{prefix}.{torch_key}'])
      value = value.astype(np.int32) if flax_key == 'num_batches_tracked' else value.astype(np.float32)
      _put(variables[collection], path + (flax_key,), value)
  return variables


def to_torchvision(name, variables):
  """flax variables {'params', 'batch_stats'} -> torchvision state_dict of numpy arrays (no classifier)."""
  sd = {}
  for prefix, path, kind in layer_map(name):
    if kind == 'conv':
      k = _get(variables['params'], path + ('kernel',), prefix)
      sd[prefix + '.weight'] = np.ascontiguousarray(
          np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2))), np.float32)
      continue
    for torch_key, collection, flax_key in BN_KEYS:
      value = _get(variables[collection], path + (flax_key,), prefix)
      # int64 like torch; the export format stores every leaf as float32, exact below 2**24 batches
      sd[f'{prefix}.{torch_key}'] = (np.asarray(np.rint(value), np.int64) if flax_key == 'num_batches_tracked'
                                     else np.asarray(value, np.float32))
  return sd


# ------------------------------------------------------------------ files and CLI

def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise SystemExit('error: reading or writing .pth files needs PyTorch (pip install torch); '
                     '.npz files work without it') from None
  return torch


def load_state_dict(path):
  """A .pth (torch.save of a state_dict, or of {'state_dict': ...}) or .npz file -> dict of numpy arrays."""
  if path.endswith('.npz'):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  obj = _import_torch().load(path, map_location='cpu', weights_only=True)
  obj = obj.get('state_dict', obj.get('model', obj)) if isinstance(obj, dict) else obj
  if not isinstance(obj, dict):
    raise SystemExit(f'error: {path} holds a {type(obj).__name__}, not a state_dict')
  if obj and all(k.startswith('module.') for k in obj):  # saved from DataParallel / DDP
    obj = {k[len('module.'):]: v for k, v in obj.items()}
  return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def save_state_dict(sd, path):
  """dict of numpy arrays -> .pth (torch tensors) or .npz, by the file's extension."""
  if path.endswith('.npz'):
    np.savez(path, **sd)
    return
  torch = _import_torch()
  torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, path)


def convert(to, src, out, arch=None, clip_len=16, crop_size=112):
  """torchvision .pth/.npz -> export dir (to='orbax'), or export dir -> .pth/.npz (to='pth'|'npz')."""
  from csvr_jax import checkpoint  # pylint: disable=import-outside-toplevel
  if to == 'orbax':
    if arch not in ARCHS:
      raise SystemExit(f'error: --arch must be one of {ARCHS}, not {arch!r}')
    meta = dict(arch=arch, width=1.0, clip_len=clip_len, crop_size=crop_size, mean=list(normalization.KINETICS_MEAN),
                std=list(normalization.KINETICS_STD), step=0, source=f'torchvision:{os.path.abspath(src)}')
    checkpoint.save_backbone_export(out, from_torchvision(arch, load_state_dict(src)), meta)
    return out
  if to not in ('pth', 'npz'):
    raise SystemExit(f'error: --to must be orbax, pth or npz, not {to!r}')
  if to == 'pth':
    _import_torch()  # fail before reading the export
  variables, meta = checkpoint.load_backbone_export(src)
  if meta['width'] != 1.0:
    raise SystemExit(f'error: {src} has width {meta["width"]}; torchvision models have width 1')
  out = out if out.endswith('.' + to) else f'{out}.{to}'
  save_state_dict(to_torchvision(meta['arch'], variables), out)
  return out


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  print('wrote', convert(f.to, getattr(f, 'in'), f.out, f.arch, f.clip_len, f.crop_size))


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_enum('to', None, ['orbax', 'pth', 'npz'], 'Target: orbax export dir, or .pth / .npz state_dict.')
  flags.DEFINE_string('in', None, 'torchvision .pth/.npz (--to=orbax) or export dir (--to=pth|npz).')
  flags.DEFINE_string('out', None, 'Export dir (--to=orbax) or state_dict file.')
  flags.DEFINE_string('arch', None, f'One of {ARCHS} (--to=orbax; exports record their own arch).')
  flags.DEFINE_integer('clip_len', 16, 'Clip length recorded in the export meta.')
  flags.DEFINE_integer('crop_size', 112, 'Crop size recorded in the export meta.')
  flags.mark_flags_as_required(['to', 'in', 'out'])


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
