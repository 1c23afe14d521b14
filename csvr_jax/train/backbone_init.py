"""Where a downstream network comes from: `config.checkpoint.init_from`, and which: `config.finetune.features`.

init_from:
* ''                      random initialisation (seed config.seed): the paper's "from scratch" baseline; every
                          part the features run is initialised (V-Network: init_key(seed), as always; pose
                          generator: seed + 2; integration layer: seed + 3; the classifier uses seed + 1);
* an export directory     csvr_jax.checkpoint (meta.json gives arch, width and the branches' settings);
* a torchvision .pth/.npz a torchvision video model's state_dict (.pth needs torch; .npz holds the same arrays),
                          read by torch_interop.load_state_dict and converted with from_torchvision
                          (arch = config.model.vnet, width 1; the classifier 'fc.*' is dropped). V-Network only.
features (models/downstream.py): 'vnet' | 'fi' | 'fd'; `load_downstream` builds the DownstreamFeatures model and
its variables, `load_backbone` the V-Network alone.
"""
import os

import jax
import jax.numpy as jnp

from csvr_jax import checkpoint
from csvr_jax import models
from csvr_jax import parallel
from csvr_jax.models import downstream
from csvr_jax.models import integration
from csvr_jax.models import pose_gan


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


# ------------------------------------------------------------------ the downstream network (features)

def _clip(config):
  return jnp.zeros((1, config.data.clip_len, config.data.crop_size, config.data.crop_size, 3), jnp.float32)


def _poses(config):
  n = config.model.num_joints
  return jnp.zeros((1, config.data.clip_len, n, 2), jnp.float32), jnp.ones((1, config.data.clip_len, n), jnp.float32)


def example_inputs(config):
  """One-sample (clip, pose_in, pose_in_conf) zeros of the configured shapes (for init and eval_shape)."""
  return (_clip(config),) + _poses(config)


def _feature_channels(config, vnet):
  """C1 of the V-Network's last feature map (abstract evaluation, nothing compiled)."""
  out = jax.eval_shape(lambda x: vnet.init_with_output(jax.random.key(0), x, train=False)[0], _clip(config))
  return out['features'].shape[-1]


def branch_modules(config, branches, channels, bn_axis_name=None):
  """(PoseEncoder, integration layer or None) from meta['branches'] settings; channels: the V-Network's C1."""
  dtype = jnp.dtype(config.model.dtype)
  p = branches['pose_g']
  encoder = pose_gan.PoseEncoder(channels=p['channels'], encoder_layers=p['encoder_layers'], dtype=dtype,
                                 bn_axis_name=bn_axis_name)
  integ = None if channels is None else integration.get_integration(
      branches['integration']['type'], channels=channels, dtype=dtype, bn_axis_name=bn_axis_name)
  return encoder, integ


def random_branch_variables(config, branches, vnet=None):
  """Random {'pose_g': a whole PoseGenerator's variables, 'integration': ... (when vnet, the V-Network module,
  is given)}: what an export's branches/ holds; seeds as in the module docstring."""
  p = branches['pose_g']
  dtype = jnp.dtype(config.model.dtype)
  generator = pose_gan.PoseGenerator(channels=p['channels'], encoder_layers=p['encoder_layers'],
                                     noise_dim=p['noise_dim'], out_len=p['out_len'], dtype=dtype)
  pose_in, conf = downstream.pose_encoder_inputs(*_poses(config))
  z = jnp.zeros((1, p['noise_dim']), jnp.float32)
  opts = parallel.compiler_options(config)
  out = {'pose_g': jax.jit(lambda k: generator.init(k, pose_in, conf, z, train=False),
                           compiler_options=opts)(init_key(config.seed + 2))}
  if vnet is not None:
    encoder, integ = branch_modules(config, branches, _feature_channels(config, vnet))
    f_d = jax.eval_shape(lambda: encoder.init_with_output(jax.random.key(0), pose_in, conf)[0])
    f_s = jax.eval_shape(lambda x: vnet.init_with_output(jax.random.key(0), x, train=False)[0], _clip(config))
    f_s, f_d = jnp.zeros(f_s['features'].shape, f_s['features'].dtype), jnp.zeros(f_d.shape, f_d.dtype)
    out['integration'] = jax.jit(lambda k: integ.init(k, f_s, f_d, train=False),
                                 compiler_options=opts)(init_key(config.seed + 3))
  return {name: {'params': v['params'], 'batch_stats': v.get('batch_stats', {})} for name, v in out.items()}


def _branches(config, meta, with_integration, vnet):
  """(settings, variables) of the branches: from the export, or random when init_from is ''."""
  features = f'config.finetune.features={config.finetune.features!r}'
  if meta is None:
    branches = checkpoint.branch_meta(config)
    return branches, random_branch_variables(config, branches, vnet if with_integration else None)
  if meta['source'] == 'torchvision':
    raise ValueError(f'config.checkpoint.init_from={config.checkpoint.init_from!r} is a torchvision V-Network; '
                     f'{features} needs a csvr_jax export with the pose and integration branches')
  variables = checkpoint.load_branches_export(config.checkpoint.init_from, meta, features)
  return meta['branches'], variables


def _meta_only(config):
  """The export's meta (None for a random init) without reading the V-Network ('fd' does not run it); a
  torchvision file has no meta but its source ('torchvision', which carries no branches)."""
  path = config.checkpoint.init_from
  if not path:
    return None
  if os.path.isdir(path):
    return checkpoint.read_export_meta(path)
  if path.endswith(('.pth', '.pt', '.npz')) and os.path.isfile(path):
    return {'source': 'torchvision'}
  raise ValueError(f'config.checkpoint.init_from={path!r}: not an export directory (with meta.json) nor a '
                   'torchvision .pth/.npz file')


def load_downstream(config, bn_axis_name=None):
  """(DownstreamFeatures model, variables {'params', 'batch_stats'} keyed by network, meta or None) for
  config.finetune.features from config.checkpoint.init_from (see the module docstring)."""
  features = downstream.check_features(config.finetune.features)
  names = downstream.NETWORKS[features]
  modules, variables = {}, {}
  if 'vnet' in names:
    modules['vnet'], variables['vnet'], meta = load_backbone(config, bn_axis_name)
  else:
    meta = _meta_only(config)
  checkpoint.warn_on_preprocessing_difference(meta, config.data.dataset_dir)
  if 'pose_g' in names:
    branches, branch_vars = _branches(config, meta, 'integration' in names, modules.get('vnet'))
    channels = _feature_channels(config, modules['vnet']) if 'integration' in names else None
    modules['pose_g'], integ = branch_modules(config, branches, channels, bn_axis_name)
    variables['pose_g'] = pose_gan.encoder_variables(branch_vars['pose_g'], branches['pose_g']['encoder_layers'])
    if integ is not None:
      modules['integration'], variables['integration'] = integ, branch_vars['integration']
  model = downstream.DownstreamFeatures(features, **modules)
  params = {n: v['params'] for n, v in variables.items()}
  batch_stats = {n: v['batch_stats'] for n, v in variables.items() if v.get('batch_stats')}  # none: no entry
  return model, {'params': params, 'batch_stats': batch_stats}, meta
