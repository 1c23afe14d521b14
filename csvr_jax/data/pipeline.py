"""Grain input pipelines: records -> per-host numpy batches -> one global jax.Array.

All functions take `data_config` = the `data` section of the config (configs/base.py). `batch_size` is the
PER-HOST batch (global batch / number of processes). Host side: decode only the sampled frames' JPEGs, random
resized crop + flip (poses follow); the jitted step then calls `augment.device_augment` (colour jitter, blur,
normalisation) on 'clip', 'future_clip' (shared_axes=1) and 'iframes' (shared_axes=0), and
`augment.normalize` on evaluation clips. S = crop_size, T = clip_len, T' = future_len, M = max_iframes.

Batch contract (keys, dtypes, shapes per host):
  pretrain_loader:
    'clip'         uint8 (B, T, S, S, 3)
    'future_clip'  uint8 (B, T', S, S, 3)   same crop and flip as 'clip'
    'iframes'      uint8 (B, M, S, S, 3)    own crop and flip per I-frame; zeros where the mask is False
    'iframe_mask'  bool (B, M)
    'pose_in'      float32 (B, T, 18, 2)     x, y in [0, 1] of the (flipped) crop; 0 where invalid
    'pose_in_conf' float32 (B, T, 18)        0 = invalid (no person, joint cropped out, padded position)
    'pose_gt'      float32 (B, T', 18, 2);  'pose_gt_conf' float32 (B, T', 18): the same for the future clip
    'video_index'  int32 (B,)                index of the video in the split (same video -> same index)
    'label'        int32 (B,)
    'looped'       bool (B,)                 the video was shorter than clip + future (short-video policy)
  finetune_loader: 'clip' uint8 (B, T, S, S, 3), 'pose_in' float32 (B, T, 18, 2), 'pose_in_conf' float32
    (B, T, 18) (the clip's poses through its crop and flip, as in pretraining), 'label' int32 (B,).
  eval_loader (num_eval_clips uniformly spaced clips x centre crop per video, every video exactly once):
    'clip' uint8 (B, T, S, S, 3), 'pose_in', 'pose_in_conf' (as finetune_loader), 'label' int32 (B,),
    'video_index' int32 (B,), 'clip_index' int32 (B,), 'valid' bool (B,): False on the padding rows that fill
    the last batch (their indices are -1, clip and poses zeros).

Loaders return grain.DataLoader objects: `it = iter(loader)`; `next(it)` -> dict of numpy arrays;
`it.get_state()` -> bytes and `it.set_state(bytes)` restore the exact batch sequence (with or without worker
processes; save the state with the train state, e.g. grain.checkpoint.CheckpointSave). Randomness is per
record position (grain derives a Philox generator from `seed` and the position), so it does not depend on the
number of workers. Sharding: shard_index/shard_count default to the JAX process (ShardByJaxProcess); a shuffled
global order is dealt out round-robin, so processes see disjoint records. `to_global_batch(batch, mesh)` turns
each host's batch into one global jax.Array sharded along the batch axis. `split_size(dataset_dir, split)` gives
the number of videos (for epoch lengths and `eval_batches_per_host`).

Pretraining rendering happens in the batch step: the map draws a sample's randomness (window, I-frames, boxes,
flips; poses transformed) and the batch_fn (`_PretrainBatch`) decodes and crops every row straight into the
batch arrays (in worker processes: into the shared memory grain hands batches over in), instead of per-sample
arrays that Batch then copies; same draws, same pixels (`samples.pretrain_sample` is the one-row reference).
The per-sample functions live in csvr_jax/data/samples.py; what the loaders rely on in Grain beyond its public API,
and the set-up of the loading and worker processes (malloc tuning, workers that exit with their parent), in
csvr_jax/data/grain_adapter.py.

Throughput and where a sample's CPU time goes: `python -m csvr_jax.bench --what=pipeline`, docs/performance.md.
"""
import collections
import threading
import types

import grain
import jax
import numpy as np

from csvr_jax.data import grain_adapter
from csvr_jax.data import records
from csvr_jax.data import samples


class IndexedSource:
  """Random-access source yielding (index, record or its serialized bytes): the sample keeps its video index."""

  def __init__(self, source, name):
    self._source, self._name = source, name

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return int(index), self._source[index]

  def __setstate__(self, state):  # unpickled in a worker process as it starts
    grain_adapter.setup_worker_process()
    self.__dict__.update(state)

  def __repr__(self):  # grain compares it when restoring an iterator state
    return f'IndexedSource({self._name}, n={len(self)})'


class EvalClipSource:
  """Rows (video, clip) of the evaluation protocol, padded to `padded_len` with padding rows.

  Rows are video-major (row = video * num_clips + clip) and the loader deals them out round-robin, so the
  rows a process (or worker) reads next mostly belong to the same video: the last few records are kept, which
  reads each video about once instead of num_clips times.
  """

  _CACHED_RECORDS = 4

  def __init__(self, source, name, num_clips, padded_len):
    self._source, self._name, self._num_clips, self._len = source, name, num_clips, padded_len
    self._num_rows = len(source) * num_clips
    self._init_cache()

  def _init_cache(self):
    self._cache = collections.OrderedDict()
    self._lock = threading.Lock()  # grain reads with a thread pool

  def __getstate__(self):  # pickled into worker processes: without the lock and the cached records
    state = dict(self.__dict__)
    del state['_cache'], state['_lock']
    return state

  def __setstate__(self, state):  # unpickled in a worker process as it starts
    grain_adapter.setup_worker_process()
    self.__dict__.update(state)
    self._init_cache()

  def __len__(self):
    return self._len

  def _record(self, video):
    with self._lock:
      record = self._cache.get(video)
    if record is None:
      record = self._source[video]
      with self._lock:
        self._cache[video] = record
        while len(self._cache) > self._CACHED_RECORDS:
          self._cache.popitem(last=False)
    return record

  def __getitem__(self, index):
    index = int(index)
    if index >= self._num_rows:
      return -1, -1, None  # padding row (not None: grain drops None elements)
    video, clip = divmod(index, self._num_clips)
    return video, clip, self._record(video)

  def __repr__(self):
    return f'EvalClipSource({self._name}, clips={self._num_clips}, n={self._len})'


def _as_record(element):
  """A source element -> record: serialized bytes are parsed lazily, records (dicts) pass through."""
  if isinstance(element, bytes):
    return records.parse_serialized(element)
  return element


def _params(data_config):
  """Plain, picklable copy of the data section (worker processes receive the transforms by pickle)."""
  return types.SimpleNamespace(**data_config.to_dict())


class _PendingSample:
  """A pretraining sample between the map (random draws) and the batch (rendering): a leaf for grain."""

  __slots__ = ('fields', 'jpegs', 'views')

  def __init__(self, fields, jpegs, views):
    self.fields, self.jpegs, self.views = fields, jpegs, views


class _PretrainMap(grain.transforms.RandomMap):
  """Per record: the sample's random draws (rng = grain's per-position generator); pixels come in the batch."""

  def __init__(self, data_config):
    self._c = _params(data_config)

  def random_map(self, element, rng):
    index, record = element
    return _PendingSample(*samples.pretrain_draws(_as_record(record), index, self._c, rng))


class _PretrainBatch(grain_adapter.SharedMemoryOutput):
  """grain batch_fn of the pretrain loader: renders each sample's views straight into the batch arrays.

  Measured on the dev VM, toggling within one loader: +11-15% samples per core against rendering in the map and
  stacking, of which the saved np.stack copy is ~1.5%; the rest likely comes from decoding and resizing the
  batch's frames back to back (decoder and resize code and tables stay in the CPU caches instead of alternating
  with record reads and parsing). In worker processes the arrays are Grain's shared memory
  (grain_adapter.SharedMemoryOutput): the batch is rendered straight into the memory it is handed over in, as
  grain's own batching does.
  """

  def __init__(self, data_config):
    self._c = _params(data_config)

  def __call__(self, pending):
    c, b, s = self._c, len(pending), self._c.crop_size
    batch = {'clip': self.empty((b, c.clip_len, s, s, 3), np.uint8),
             'future_clip': self.empty((b, c.future_len, s, s, 3), np.uint8),
             'iframes': self.empty((b, c.max_iframes, s, s, 3), np.uint8)}
    for row, sample in enumerate(pending):
      samples.render_pretrain(sample.jpegs, sample.views, s, batch['clip'][row], batch['future_clip'][row],
                              batch['iframes'][row])
    for key in pending[0].fields:
      batch[key] = np.stack([sample.fields[key] for sample in pending])
    return batch


class _FinetuneMap(grain.transforms.RandomMap):

  def __init__(self, data_config):
    self._c = _params(data_config)

  def random_map(self, element, rng):
    return samples.finetune_sample(_as_record(element[1]), self._c, rng)


class _EvalMap(grain.transforms.Map):

  def __init__(self, data_config):
    self._c = _params(data_config)

  def map(self, element):
    video, clip, record = element
    if video < 0:
      return samples.eval_padding(self._c)
    return samples.eval_sample(_as_record(record), video, clip, self._c)


# ------------------------------------------------------------------------------------------------ loaders
def _shard_options(shard_index, shard_count):
  if shard_index is None and shard_count is None:
    return grain.sharding.ShardByJaxProcess(drop_remainder=True)
  if shard_index is None or shard_count is None:
    raise ValueError('give both shard_index and shard_count, or neither (one shard per JAX process)')
  return grain.sharding.ShardOptions(shard_index=shard_index, shard_count=shard_count, drop_remainder=True)


def _open(dataset_dir, split):
  """(source, name) for a dataset folder, or an in-memory sequence of records (tests, benchmarks).

  A folder's source yields serialized records: the map parses them (`_as_record`) in the worker, converting
  only the fields and frames a sample uses.
  """
  if isinstance(dataset_dir, str):
    return records.open_split_serialized(dataset_dir, split), f'{dataset_dir}:{split}'
  return dataset_dir, f'memory:{split}:{len(dataset_dir)}'


def split_size(dataset_dir, split):
  """Number of videos in a split (dataset folder or in-memory list of records)."""
  return len(_open(dataset_dir, split)[0])


def _loader(source, sampler, operations, shard, data_config, num_workers):
  if num_workers is None:
    num_workers = data_config.num_workers
  grain_adapter.prepare_loader(num_workers)
  # No read-ahead threads: each worker process reads a record (~1 MB, ~0.5 ms) right before mapping it. The
  # pipeline is CPU-bound, and worker processes already overlap one another's reads; grain's read threads
  # (2 threads, 16 records ahead) cost ~15% of the samples per core on the dev VM (GIL hand-offs, futures,
  # and 16 MB of records pushed through the caches) for no gain in wall-clock rate.
  read = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
  return grain.DataLoader(data_source=source, sampler=sampler, operations=operations, worker_count=num_workers,
                          worker_buffer_size=data_config.prefetch, shard_options=shard, read_options=read)


def pretrain_loader(data_config, dataset_dir, split, batch_size, seed, shard_index=None, shard_count=None,
                    num_workers=None, num_epochs=None):
  """Endless (or `num_epochs`) shuffled pretraining batches; see the module docstring for the fields.

  dataset_dir: folder with dataset_info.json (or an in-memory list of record dicts). seed: shuffle and
  augmentation seed (32-bit). num_workers: None = data_config.num_workers.
  """
  source, name = _open(dataset_dir, split)
  sampler = grain.samplers.IndexSampler(len(source), shuffle=True, seed=seed, num_epochs=num_epochs)
  ops = [_PretrainMap(data_config),
         grain.transforms.Batch(batch_size, drop_remainder=True, batch_fn=_PretrainBatch(data_config))]
  return _loader(IndexedSource(source, name), sampler, ops, _shard_options(shard_index, shard_count), data_config,
                 num_workers)


def finetune_loader(data_config, dataset_dir, split, batch_size, seed, shard_index=None, shard_count=None,
                    num_workers=None, num_epochs=None):
  """Shuffled training batches {'clip', 'pose_in', 'pose_in_conf', 'label'} (random clip, random resized crop,
  flip; the poses follow)."""
  source, name = _open(dataset_dir, split)
  sampler = grain.samplers.IndexSampler(len(source), shuffle=True, seed=seed, num_epochs=num_epochs)
  ops = [_FinetuneMap(data_config), grain.transforms.Batch(batch_size, drop_remainder=True)]
  return _loader(IndexedSource(source, name), sampler, ops, _shard_options(shard_index, shard_count), data_config,
                 num_workers)


def eval_batches_per_host(num_videos, num_clips, batch_size, shard_count):
  """Batches each host yields for one pass of the evaluation loader (the same on every host)."""
  rows = num_videos * num_clips
  return -(-rows // (batch_size * shard_count))


def eval_loader(data_config, dataset_dir, split, batch_size, shard_index=None, shard_count=None,
                num_workers=None):
  """One pass over every video: num_eval_clips clips x centre crop each, in order, last batch padded.

  Rows are dealt out round-robin to the shards; every host yields `eval_batches_per_host(...)` batches, so
  all hosts step together. Aggregate features per 'video_index' over rows with 'valid'.
  """
  source, name = _open(dataset_dir, split)
  shard = _shard_options(shard_index, shard_count)
  clips = data_config.num_eval_clips
  padded = eval_batches_per_host(len(source), clips, batch_size, shard.shard_count) * batch_size * shard.shard_count
  rows = EvalClipSource(source, name, clips, padded)
  sampler = grain.samplers.IndexSampler(padded, shuffle=False, num_epochs=1)
  ops = [_EvalMap(data_config), grain.transforms.Batch(batch_size, drop_remainder=False)]
  return _loader(rows, sampler, ops, shard, data_config, num_workers)


# ------------------------------------------------------------------------------------ host -> global array
def to_global_batch(batch, mesh, data_axes=None):
  """Per-host numpy batch -> pytree of global jax.Arrays, batch axis sharded over `data_axes` of `mesh`.

  data_axes: mesh axis names the batch dimension is split over (None = all axes of the mesh). The global
  batch is the concatenation of the hosts' batches in process order.
  """
  axes = tuple(mesh.axis_names) if data_axes is None else tuple(data_axes)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axes))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
