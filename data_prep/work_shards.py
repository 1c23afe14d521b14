"""The build's work folder: one pickle per work shard, written atomically, shared by every task of a build.

`<out_dir>/.<name>.work/<split>-<index:05d>.pkl` holds a small header (read alone when assembling) followed by
the shard's records. Several tasks (data_prep.build --num_tasks) may write into one work folder on shared
storage: each shard has exactly one writer, and temporary names carry the host and process id.
"""
import os
import pickle
import socket

# Bumped when the shard contents change: a work folder left by another version is refused, not misread.
WORK_FORMAT = 2


def work_dir(spec):
  return os.path.join(spec.out_dir, f'.{spec.name}.work')


def shard_path(spec, split, index):
  return os.path.join(work_dir(spec), f'{split}-{index:05d}.pkl')


def started_path(spec, split, index):
  """Marker written when a shard is started: lets the parent find the shards a dead worker was on."""
  return shard_path(spec, split, index) + '.started'


def atomic_write_bytes(path, data):
  tmp = f'{path}.tmp.{socket.gethostname()}.{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_shard(spec, split, index, outcomes):
  """outcomes: [('record', record dict) | ('skip', skip dict)] in entry order -> (videos, skipped)."""
  records = [value for kind, value in outcomes if kind == 'record']
  skipped = [value for kind, value in outcomes if kind == 'skip']
  header = dict(num_records=len(records), skipped=skipped)
  atomic_write_bytes(shard_path(spec, split, index),
                     pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
                     + pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))
  return len(outcomes), len(skipped)


def read_shard(spec, split, index, with_records):
  """-> (header dict, list of records or None) of a work shard."""
  with open(shard_path(spec, split, index), 'rb') as f:
    header = pickle.load(f)
    return header, (pickle.load(f) if with_records else None)
