"""Where a downstream backbone comes from: `config.checkpoint.init_from`.

* ''                      random initialisation (seed config.seed): the paper's "from scratch" baseline;
* an export directory     csvr_jax.checkpoint.load_backbone_export (meta.json gives arch and width);
* a torchvision .pth/.npz a torchvision video model's state_dict (.pth needs torch; .npz holds the same arrays),
                          read by torch_interop.load_state_dict and converted with from_torchvision
                          (arch = config.model.vnet, width 1; the classifier 'fc.*' is dropped).
"""
import os

import jax
import jax.numpy as jnp

from csvr_jax import checkpoint
from csvr_jax import models
from csvr_jax import parallel


def build_backbone(config, arch, width, bn_axis_name=None):
  """The linen V-Network with the config's compute dtype."""
  return models.get_video_backbone(arch, width=width, dtype=config.model.dtype, bn_axis_name=bn_axis_name,
                                   conv_impl=config.model.conv_impl)


def init_key(seed):
  """Key for parameter initialisation: the 'rbg' PRNG (XLA's RngBitGenerator).

  Measured on this 2-core CPU: jitted init of a width-1/16 R3D-18 compiles in ~21 s with an 'rbg' key and
  ~225 s with the default threefry key (the threefry bit generation of every kernel is unrolled into the HLO).
  """
  return jax.random.key(seed, impl='rbg')


def init_backbone_variables(config, model, key):
  """Random {'params', 'batch_stats'} for a (1, T, S, S, 3) input; key from `init_key`."""
  x = jnp.zeros((1, config.data.clip_len, config.data.crop_size, config.data.crop_size, 3), jnp.float32)
  variables = jax.jit(lambda k: model.init(k, x, train=False),
                      compiler_options=parallel.compiler_options(config))(key)
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def load_backbone(config, bn_axis_name=None):
  """(model, variables {'params', 'batch_stats'} as numpy/jax arrays, meta or None) from init_from.

  For an export, arch and width come from its meta.json (the export defines the network); a mismatch with
  config.model is reported on stdout, not silently replaced.
  """
  path = config.checkpoint.init_from
  if not path:
    model = build_backbone(config, config.model.vnet, config.model.width, bn_axis_name)
    return model, init_backbone_variables(config, model, init_key(config.seed)), None
  if os.path.isdir(path):
    variables, meta = checkpoint.load_backbone_export(path)
    if (meta['arch'], float(meta['width'])) != (config.model.vnet, float(config.model.width)):
      print(f'note: {path} holds {meta["arch"]} width {meta["width"]}; using it instead of config.model '
            f'({config.model.vnet}, width {config.model.width})')
    model = build_backbone(config, meta['arch'], float(meta['width']), bn_axis_name)
    return model, {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}, meta
  if path.endswith(('.pth', '.pt', '.npz')) and os.path.isfile(path):
    from csvr_jax.models import torch_interop  # pylint: disable=g-import-not-at-top
    variables = torch_interop.from_torchvision(config.model.vnet, torch_interop.load_state_dict(path))
    model = build_backbone(config, config.model.vnet, 1.0, bn_axis_name)
    meta = {'arch': config.model.vnet, 'width': 1.0, 'source': 'torchvision', 'step': None,
            'path': os.path.abspath(path)}
    return model, {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}, meta
  raise ValueError(f'config.checkpoint.init_from={path!r}: not an export directory (with meta.json) nor a '
                   'torchvision .pth/.npz file')
