"""Checkpoints (orbax) and the export of the pretrained networks.

Export format (read by the finetune / retrieval / linear-probe modes and by torch_interop's CLI):
  EXPORT_DIR/variables/   orbax StandardCheckpointer pytree {'params': ..., 'batch_stats': ...} of the V-Network
                          alone (numpy float32; torch_interop converts it to a torchvision state_dict)
  EXPORT_DIR/branches/    orbax pytree {'pose_g': {'params', 'batch_stats'}, 'integration': {...}}: the pose
                          generator (the downstream 'fd' / 'fi' features run its encoder) and the integration layer
  EXPORT_DIR/meta.json    {'arch', 'width', 'clip_len', 'crop_size', 'mean', 'std', 'step', 'source', 'branches',
                          'dataset', 'dataset_fingerprint'}
                          'branches' = the modules' settings: {'pose_g': {'channels', 'encoder_layers', 'noise_dim',
                          'out_len'}, 'integration': {'type'}} (the integration layer's channels are the V-Network's)
                          'dataset' = the pretraining dataset's name, 'dataset_fingerprint' = its fingerprint.json
                          (csvr_jax/data/fingerprint.py; null for a dataset built without one); both absent when the
                          networks were not pretrained (a random initialisation) and in exports written before them
Exports written before branches/ existed (and torchvision conversions) hold the V-Network only: meta.json has no
'branches', and `load_branches_export` says how to re-export.
"""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from csvr_jax import report
from csvr_jax.data import fingerprint as fingerprint_lib

META_FILE = 'meta.json'
VARIABLES_DIR = 'variables'
BRANCHES_DIR = 'branches'
META_KEYS = ('arch', 'width', 'clip_len', 'crop_size', 'mean', 'std', 'step', 'source')
BRANCH_NETWORKS = ('pose_g', 'integration')


def _save_tree(path, tree):
  host = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), dict(tree))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, host, force=True)


def save_backbone_export(export_dir, variables, meta, branches=None):
  """Writes the V-Network's `variables` ({'params', 'batch_stats'}), optionally the `branches`
  ({'pose_g': variables, 'integration': variables}, described by meta['branches']) and `meta` (META_KEYS)."""
  missing = [k for k in META_KEYS if k not in meta]
  if missing:
    raise ValueError(f'export meta lacks keys {missing}')
  if branches is not None and sorted(branches) != sorted(meta.get('branches', {})):
    raise ValueError(f'export: branches {sorted(branches)} but meta describes {sorted(meta.get("branches", {}))}')
  export_dir = os.path.abspath(export_dir)
  os.makedirs(export_dir, exist_ok=True)
  _save_tree(os.path.join(export_dir, VARIABLES_DIR), variables)
  if branches is not None:
    _save_tree(os.path.join(export_dir, BRANCHES_DIR), branches)
  tmp = os.path.join(export_dir, META_FILE + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(dict(meta), f, indent=2)
  os.replace(tmp, os.path.join(export_dir, META_FILE))  # meta.json last: its presence marks a complete export


def load_backbone_export(export_dir):
  """Returns (variables, meta) of an export written by save_backbone_export: the V-Network's variables."""
  meta = read_export_meta(export_dir)
  with ocp.StandardCheckpointer() as ckptr:
    variables = ckptr.restore(os.path.join(os.path.abspath(export_dir), VARIABLES_DIR))
  return variables, meta


def read_export_meta(export_dir):
  """meta.json of an export (FileNotFoundError naming it if absent)."""
  meta_path = os.path.join(os.path.abspath(export_dir), META_FILE)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f'{meta_path} not found: not a csvr_jax export (run --mode=export first)')
  with open(meta_path) as f:
    return json.load(f)


def load_branches_export(export_dir, meta, purpose):
  """{'pose_g': variables, 'integration': variables} of an export; `purpose` names what needs them, e.g.
  "config.finetune.features='fi'" (the first words of the error for an export without them)."""
  export_dir = os.path.abspath(export_dir)
  if 'branches' not in meta:
    raise ValueError(f'{purpose} needs the pose and integration branches, but {export_dir} holds the V-Network '
                     'only (exported before branches/ existed, or converted from torchvision): re-export it with '
                     '`python -m csvr_jax.main --mode=export --config=<its config> --workdir=<its pretraining '
                     'workdir>`')
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(os.path.join(export_dir, BRANCHES_DIR))


# ------------------------------------------------------------------------------- training checkpoints
#
# workdir/checkpoints/<step>/{state, data, config, dataset}: the whole TrainState (params, batch_stats,
# optimizer states, step, rng as raw uint32 key data), the Grain iterator state of every process, the config as
# JSON, and the training dataset (`dataset_record`: name, folder, fingerprint). Saves are asynchronous and atomic
# (orbax writes to a temporary folder and renames), so a kill -9 during a save leaves the previous checkpoint as
# the latest. The train state restores onto any number of devices and processes (the target's shardings); the
# data iterator only onto the number of processes and data workers that wrote it (`check_data_state`).

CHECKPOINT_DIR = 'checkpoints'
DATA_ITEM = 'data'
DATASET_ITEM = 'dataset'
FORMAT_ITEM = 'format'
# The layout of what a training checkpoint holds. 2: per-network TrainState / FinetuneState ({'backbone': {'vnet',
# ...}}), the dataset and format items (2026-11-27). Checkpoints without a format item are format 1.
FORMAT_VERSION = 2
RESUME_FLAG = 'config.checkpoint.resume_data_order'
# Config keys that decide the networks' parameter trees: named when a checkpoint does not fit the current model.
MODEL_KEYS = ('model.vnet', 'model.width', 'model.inet', 'model.integration', 'model.video_gan',
              'model.video_gan_levels', 'model.video_g_channels', 'model.video_d_channels', 'model.pose_channels',
              'model.pose_encoder_layers', 'model.embed_dim', 'model.head_hidden', 'finetune.features',
              'finetune.num_classes', 'data.clip_len', 'data.future_len')


class ResumeError(ValueError):
  """A checkpoint that cannot be resumed as asked; the message is one line and says how to go on."""


def _json_config(config):
  return json.loads(config.to_json_best_effort())


def dataset_record(dataset_dir):
  """{'name', 'dir', 'fingerprint'} of a dataset folder (config.data.dataset_dir; fingerprint None when it has
  none, or for an in-memory dataset)."""
  if not isinstance(dataset_dir, str) or not dataset_dir:
    return {'name': report.dataset_name(dataset_dir), 'dir': '', 'fingerprint': None}
  return {'name': report.dataset_name(dataset_dir), 'dir': os.path.abspath(dataset_dir),
          'fingerprint': fingerprint_lib.read_fingerprint(dataset_dir)}


def _flat(tree, prefix=''):
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f'{prefix}{key}.').items()}
  return {prefix.rstrip('.'): tree}


def _leaf_shapes(tree):
  """{path: shape} with every path entry as text (a struct field, dict key or tuple index: orbax saves all of
  them as nested dicts and lists)."""
  name = lambda k: str(getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k))))
  return {'/'.join(name(k) for k in path): tuple(getattr(x, 'shape', ()) or ())
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_fits(step_dir, abstract_state, config=None):
  """One-line ResumeError unless the checkpoint in step_dir holds exactly abstract_state's arrays (tree paths
  and shapes): written by another model or by an older checkpoint format, it cannot be resumed."""
  with ocp.PyTreeCheckpointer() as ckptr:
    saved = ckptr.metadata(os.path.join(step_dir, 'state')).item_metadata.tree
  if _leaf_shapes(saved) == _leaf_shapes(abstract_state):
    return
  version_path = os.path.join(step_dir, FORMAT_ITEM)
  version = 1
  if os.path.isdir(version_path):
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
      version = ckptr.restore(version_path)['format_version']
  why = f'checkpoint format {version}' + (' (written before formats were recorded)' if version == 1 else '')
  differs = []
  config_path = os.path.join(step_dir, 'config')
  if config is not None and os.path.isdir(config_path):
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
      saved_config, now = _flat(ckptr.restore(config_path)), _flat(_json_config(config))
    differs = [f'{k} {saved_config.get(k)!r} vs {now.get(k)!r}' for k in MODEL_KEYS if saved_config.get(k) != now.get(k)]
  raise ResumeError(f'{step_dir}: the saved state does not fit this model ({why}; this code writes format '
                    f'{FORMAT_VERSION}' + (f'; the checkpoint vs now: {", ".join(differs)}' if differs else '')
                    + '): resume with the config it was written with, or use another workdir')


def check_data_state(data_item_dir, data_iter):
  """One-line ResumeError unless this process can restore its Grain iterator state from `data_item_dir`:
  Grain keeps one state per process (its shard of the data) and per data worker, and neither count can change."""
  from csvr_jax.data import grain_adapter  # pylint: disable=g-import-not-at-top  (grain: training only)
  counts = grain_adapter.saved_process_counts(data_item_dir)
  how = f'or set {RESUME_FLAG}=False to restore the train state and start the data order afresh'
  if not counts:
    raise ResumeError(f'{data_item_dir}: no data iterator state in this checkpoint; {how}')
  n, i = jax.process_count(), jax.process_index()
  if n not in counts:
    saved = '/'.join(str(c) for c in sorted(counts))
    raise ResumeError(f'{data_item_dir}: the Grain iterator state was written by {saved} processes and this run '
                      f'has {n}: each process reads its own shard of the data, so the data order cannot follow a '
                      f'change in the number of processes; resume with {saved} processes, {how}')
  with open(grain_adapter.state_file(data_item_dir, i, n)) as f:
    saved_workers = grain_adapter.state_worker_count(f.read())
  workers = grain_adapter.state_worker_count(data_iter.get_state())
  if None not in (saved_workers, workers) and saved_workers != workers:
    raise ResumeError(f'{data_item_dir}: the Grain iterator state was written with {saved_workers} data worker '
                      f'processes per process and this run has {workers} (config.data.num_workers); resume with '
                      f'config.data.num_workers={saved_workers}, {how}')


class TrainCheckpointer:
  """Saves / restores (train state, data iterator, config, dataset) under workdir/checkpoints; keeps the last
  `keep`."""

  def __init__(self, workdir, keep):
    import grain  # pylint: disable=g-import-not-at-top
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    self._grain = grain.checkpoint
    self._datasets = {}  # dataset_dir -> dataset_record: the fingerprint is read once per run
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       DATA_ITEM: grain.checkpoint.CheckpointHandler(),
                       'config': ocp.JsonCheckpointHandler(),
                       DATASET_ITEM: ocp.JsonCheckpointHandler(),
                       FORMAT_ITEM: ocp.JsonCheckpointHandler()})

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step, state, data_iter=None, config=None):
    """Starts an asynchronous save of step `step` (a no-op if that step is already saved). With the config, the
    record of its dataset (config.data.dataset_dir) is saved too."""
    if step in self.manager.all_steps():
      return False
    items = {'state': ocp.args.StandardSave(state)}
    if data_iter is not None:
      items[DATA_ITEM] = self._grain.CheckpointSave(data_iter)
    if config is not None:
      items['config'] = ocp.args.JsonSave(_json_config(config))
      items[FORMAT_ITEM] = ocp.args.JsonSave({'format_version': FORMAT_VERSION})
      dataset_dir = config.data.dataset_dir
      if dataset_dir not in self._datasets:
        self._datasets[dataset_dir] = dataset_record(dataset_dir)
      items[DATASET_ITEM] = ocp.args.JsonSave(self._datasets[dataset_dir])
    return self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, abstract_state, data_iter=None, step=None, resume_data_order=True, config=None):
    """Restores the train state onto abstract_state's shardings (any device count) and, when resume_data_order,
    the data iterator in place (ResumeError when it cannot follow, see check_data_state) -> state. A state that
    does not fit abstract_state (another model, or an older checkpoint format) is a one-line ResumeError naming
    the format and, with `config`, the model keys that differ from the checkpoint's."""
    step = self.manager.latest_step() if step is None else step
    check_fits(os.path.join(self.directory, str(step)), abstract_state, config)
    items = {'state': ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None and resume_data_order:
      check_data_state(os.path.join(self.directory, str(step), DATA_ITEM), data_iter)
      items[DATA_ITEM] = self._grain.CheckpointRestore(data_iter)
    elif data_iter is not None and jax.process_index() == 0:
      print(f'{RESUME_FLAG}=False: the train state resumes from step {step}, the data order starts afresh',
            flush=True)
    return self.manager.restore(step, args=ocp.args.Composite(**items))['state']

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def host_copy(state):
  """Replicated state -> numpy on this host (its first local shard is the whole value): what checkpoints save.
  Orbax then writes plain arrays; saving the 8-way replicated jax.Arrays compiled one slice program per
  parameter shape."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, state)


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) of a state tree, the target for `TrainCheckpointer.restore`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
                      state)


class PreemptionFlag:
  """Turns SIGTERM (SLURM / TPU preemption notice) into a flag the loop polls: save, then exit cleanly."""

  def __init__(self):
    import signal  # pylint: disable=g-import-not-at-top
    self.raised = False
    self._previous = signal.signal(signal.SIGTERM, self._handler)

  def _handler(self, signum, frame):
    del signum, frame
    self.raised = True

  def any_process(self):
    """True when any process got SIGTERM (a collective when several processes run: call it in lockstep)."""
    if jax.process_count() == 1:
      return self.raised
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return bool(np.max(multihost_utils.process_allgather(np.int32(self.raised))))

  def restore(self):
    import signal  # pylint: disable=g-import-not-at-top
    signal.signal(signal.SIGTERM, self._previous)


def read_dataset_item(step_dir):
  """The dataset record (`dataset_record`) saved in a checkpoint's step folder (checkpoint_source); None for
  checkpoints written before it existed, or saved without a config."""
  path = os.path.join(os.path.abspath(step_dir), DATASET_ITEM)
  if not os.path.isdir(path):
    return None
  with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
    return ckptr.restore(path)


def read_checkpoint_dataset(workdir, step):
  """`read_dataset_item` of checkpoint `step` of a training workdir."""
  return read_dataset_item(checkpoint_source(workdir, step))


def read_checkpoint_item(workdir, item='state', step=None):
  """Restores one item of a training checkpoint as numpy, on any device topology (a run saved on 4 devices
  of 2 hosts exports on a laptop) -> (tree, step)."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'{directory} not found: no training checkpoint in this workdir (run --mode=pretrain)')
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
    step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'{directory} holds no complete checkpoint')
  path = os.path.join(directory, str(step), item)
  if item == 'config':
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
      return ckptr.restore(path), step
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = ckptr.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy)), step


def export_meta(config, step, source):
  """meta.json of a V-Network export (META_KEYS) from the config, with the pretraining dataset ('dataset',
  'dataset_fingerprint': `pretraining_dataset`); step None: not pretrained (a random init), no dataset."""
  d = config.data
  meta = dict(arch=config.model.vnet, width=float(config.model.width), clip_len=int(d.clip_len),
              crop_size=int(d.crop_size), mean=list(d.mean), std=list(d.std),
              step=None if step is None else int(step), source=source)
  if step is not None:
    record = pretraining_dataset(config, source)
    meta.update(dataset=record['name'], dataset_fingerprint=record['fingerprint'])
  return meta


def pretraining_dataset(config, source):
  """The dataset record (`dataset_record`) of the networks an export takes from `source`: the record its source
  checkpoint saved (one saved before dataset records: the config's dataset by name, fingerprint unknown); for a
  source that is not a checkpoint (networks in memory), config.data.dataset_dir's."""
  if isinstance(source, str) and os.path.isdir(source):
    saved = read_dataset_item(source)
    return saved or {'name': report.dataset_name(config.data.dataset_dir), 'dir': '', 'fingerprint': None}
  return dataset_record(config.data.dataset_dir)


def branch_meta(config):
  """meta['branches']: the settings of the exported branch modules (from config.model)."""
  m, d = config.model, config.data
  return {'pose_g': dict(channels=int(m.pose_channels), encoder_layers=int(m.pose_encoder_layers),
                         noise_dim=int(m.pose_noise_dim), out_len=int(d.future_len)),
          'integration': dict(type=str(m.integration))}


def write_export(export_dir, config, params, batch_stats, step, source, pretrain_workdir=None):
  """The export builder (--mode=export, the demo): a TrainState's `params` / `batch_stats` (network name ->
  tree; restored numpy or live jax arrays) -> the V-Network and the branches under export_dir. Returns meta.
  pretrain_workdir: its results.json's pretext metrics (Table II) up to `step` travel along in meta."""
  take = lambda name: {'params': params[name], 'batch_stats': batch_stats.get(name, {})}  # no BN: no entry
  meta = {**export_meta(config, step, source), 'branches': branch_meta(config)}
  if pretrain_workdir is not None:
    from csvr_jax import report  # pylint: disable=g-import-not-at-top
    meta.update(report.pretext_meta(pretrain_workdir, step))
  save_backbone_export(export_dir, take('vnet'), meta, {name: take(name) for name in BRANCH_NETWORKS})
  return meta


def checkpoint_source(workdir, step):
  """The `source` an export of checkpoint `step` of `workdir` records."""
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR, str(step))


def export_mode(config, workdir):
  """`--mode=export`: the latest checkpoint's V-Network and branches (params + batch_stats) -> workdir/export/."""
  state, step = read_checkpoint_item(workdir)
  export_dir = os.path.join(workdir, 'export')
  if jax.process_index() == 0:
    meta = write_export(export_dir, config, state['params'], state['batch_stats'], step,
                        checkpoint_source(workdir, step), workdir)
    print(f'exported V-Network {meta["arch"]} and {", ".join(BRANCH_NETWORKS)} (step {step}) to '
          f'{os.path.abspath(export_dir)}')
  return export_dir


def preprocessing_warning(meta, dataset_dir):
  """One line when an export (its meta) was pretrained under another preprocessing than the dataset it is now
  evaluated on (csvr_jax/data/fingerprint.py), e.g. 'short side 128 vs 160'; None when they agree, or when
  either has no fingerprint (older exports and datasets, random initialisations, torchvision weights)."""
  if not meta or not meta.get('dataset_fingerprint'):
    return None
  target = dataset_record(dataset_dir)
  differences = fingerprint_lib.preprocessing_differences(meta['dataset_fingerprint'], target['fingerprint'])
  if not differences:
    return None
  return (f'warning: the backbone was pretrained on {meta.get("dataset", "?")} under other preprocessing than '
          f'{target["name"]} (pretraining vs now): {"; ".join(differences)}')


def warn_on_preprocessing_difference(meta, dataset_dir):
  """Prints `preprocessing_warning` (process 0) and returns it."""
  line = preprocessing_warning(meta, dataset_dir)
  if line and jax.process_index() == 0:
    print(line, flush=True)
  return line
