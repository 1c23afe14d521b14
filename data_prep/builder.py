"""Resumable, parallel build: annotated videos -> work shards -> one TFDS ArrayRecord dataset.

Stage 1 turns each video into a record (data_prep.video_io + data_prep.poses) in shards of `shard_size`
videos; each shard is written atomically (temp file + rename) to `<out_dir>/.<name>.work/`, so a build killed
at any point keeps its finished shards and the same command redoes only the missing ones. Stage 2 streams the
shards, in plan order, into the TFDS writer (data_prep.tfds_writer; one ArrayRecord file per non-empty work
shard, so peak memory is one shard), which itself renames a complete dataset into place. Records and their
order depend only on the inputs and options, never on the worker count, interruptions or dead workers.
"""
import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import sys
import time

from data_prep import annotations as annotations_lib
from data_prep import poses as poses_lib
from data_prep import video_io


@dataclasses.dataclass(frozen=True)
class BuildSpec:
  """Everything that determines the records (the worker count does not)."""
  layout: str
  videos_dir: str
  annotations: str
  out_dir: str
  name: str
  poses: str = 'none'
  split: int = 1
  reencode_gop: int = 0
  jpeg_quality: int = 90
  short_side: int = 128
  shard_size: int = 32
  min_frames: int = 2
  folder_test_ratio: float = 0.2
  folder_seed: int = 0


def work_dir(spec):
  return os.path.join(spec.out_dir, f'.{spec.name}.work')


def skipped_path(spec):
  """One JSON line per skipped video: {video, split, kind (video | pose | crash | error), reason}."""
  return os.path.join(spec.out_dir, spec.name, 'skipped.jsonl')


def summary_path(spec):
  return os.path.join(spec.out_dir, spec.name, 'summary.json')


def atomic_write_bytes(path, data):
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def plan(spec):
  """-> (class_names, tasks): tasks = [(split, shard_index, [(rel_path, label), ...])] in a fixed order."""
  kwargs = {}
  if spec.layout == 'folder':
    kwargs = dict(test_ratio=spec.folder_test_ratio, seed=spec.folder_seed)
  class_names, splits = annotations_lib.parse(spec.layout, spec.annotations, spec.videos_dir, spec.split,
                                              **kwargs)
  tasks = []
  for split in sorted(splits):
    entries = splits[split]
    for i in range(0, len(entries), spec.shard_size):
      tasks.append((split, i // spec.shard_size, entries[i:i + spec.shard_size]))
  return class_names, tasks


def _fingerprint(spec, class_names, tasks):
  content = json.dumps([dataclasses.asdict(spec), class_names, tasks], sort_keys=True)
  return hashlib.sha256(content.encode()).hexdigest()


def shard_path(spec, split, index):
  return os.path.join(work_dir(spec), f'{split}-{index:05d}.pkl')


def make_record(spec, rel_path, label):
  """One video -> record dict (csvr_jax/data/records.py). Raises VideoError / PoseError."""
  path = os.path.join(spec.videos_dir, rel_path)
  if not os.path.isfile(path):
    raise video_io.VideoError(f'{path}: file not found')
  if os.path.getsize(path) == 0:
    raise video_io.VideoError(f'{path}: empty file')
  video = video_io.prepare_video(path, spec.short_side, spec.jpeg_quality, spec.reencode_gop, spec.min_frames)
  kind, root = poses_lib.parse_spec(spec.poses)
  poses, source = poses_lib.load_poses(kind, root, rel_path, video['num_frames'], video['width'],
                                       video['height'])
  return dict(video_id=rel_path.replace(os.sep, '/'), label=label, num_frames=video['num_frames'],
              fps=video['fps'], frames=video['frames'], keyframe_indices=video['keyframe_indices'],
              poses=poses, pose_source=source, gop=video['gop'])


def _skip_kind(error):
  if isinstance(error, poses_lib.PoseError):
    return 'pose'
  return 'video' if isinstance(error, video_io.VideoError) else 'error'


def video_outcome(spec, split, rel_path, label):
  """-> ('record', record dict) or ('skip', {video, split, kind, reason}); never raises for a bad video."""
  try:
    return 'record', make_record(spec, rel_path, label)
  except Exception as e:  # pylint: disable=broad-except - any bad video is skipped, the build goes on
    reason = str(e) if isinstance(e, (video_io.VideoError, poses_lib.PoseError)) else f'{type(e).__name__}: {e}'
    return 'skip', dict(video=rel_path, split=split, kind=_skip_kind(e), reason=reason)


def _write_shard(spec, split, index, outcomes):
  records = [value for kind, value in outcomes if kind == 'record']
  skipped = [value for kind, value in outcomes if kind == 'skip']
  # Two pickles back to back: a small header (read alone when assembling), then the records.
  header = dict(num_records=len(records), skipped=skipped)
  atomic_write_bytes(shard_path(spec, split, index),
                     pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
                     + pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))
  return len(outcomes), len(skipped)


def _started_path(spec, split, index):
  return shard_path(spec, split, index) + '.started'


def process_shard(spec, split, index, entries, on_video=None):
  """Builds one shard and writes it atomically; returns (number of videos, number skipped).

  on_video: called after each video (in-process progress); worker processes report per shard instead.
  A `.started` marker lets the parent find the shards a dead worker was on.
  """
  open(_started_path(spec, split, index), 'w').close()
  outcomes = []
  for rel_path, label in entries:
    outcomes.append(video_outcome(spec, split, rel_path, label))
    if on_video:
      on_video()
  return _write_shard(spec, split, index, outcomes)


def _spawn_pool(workers):
  ctx = multiprocessing.get_context('spawn')  # no inherited locks or threads from the parent
  return concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)


def isolate_shard(spec, split, index, entries):
  """Builds a shard one video at a time in a 1-process pool: a video that kills its process (a decoder
  crash) is skipped with kind 'crash' and the pool is replaced. Returns (videos, skipped)."""
  outcomes, pool = [], None
  try:
    for rel_path, label in entries:
      pool = pool or _spawn_pool(1)
      try:
        outcomes.append(pool.submit(video_outcome, spec, split, rel_path, label).result())
      except concurrent.futures.process.BrokenProcessPool:
        pool.shutdown(wait=True)
        pool = None
        outcomes.append(('skip', dict(video=rel_path, split=split, kind='crash',
                                      reason=f'{os.path.join(spec.videos_dir, rel_path)}: the process preparing '
                                             'it died (decoder crash or out of memory)')))
  finally:
    if pool:
      pool.shutdown(wait=True)
  return _write_shard(spec, split, index, outcomes)


def _progress(total, initial):
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, unit='video', desc='videos', file=sys.stderr, dynamic_ncols=True,
              mininterval=0.5)


def run_shards(spec, tasks, workers):
  """Builds the shards that are not on disk yet, `workers` processes (1: in this process).

  With workers > 1, a worker that dies (a decoder segfault, the OOM killer) breaks the pool: the shards it
  was on are redone video by video in isolation (isolate_shard), then the pool restarts for the rest.
  """
  for marker in glob.glob(os.path.join(work_dir(spec), '*.started')):
    os.remove(marker)  # left by an interrupted run: that was not a crash of these shards
  done = lambda t: os.path.exists(shard_path(spec, t[0], t[1]))
  todo = [t for t in tasks if not done(t)]
  total = sum(len(t[2]) for t in tasks)
  bar = _progress(total, total - sum(len(t[2]) for t in todo))
  try:
    if workers <= 1:
      for split, index, entries in todo:
        process_shard(spec, split, index, entries, on_video=lambda: bar.update(1))
      return
    fruitless = 0  # pool breaks in a row that finished no shard: workers that die on start-up
    while todo:
      try:
        with _spawn_pool(workers) as pool:
          futures = [pool.submit(process_shard, spec, *t) for t in todo]
          for future in concurrent.futures.as_completed(futures):
            bar.update(future.result()[0])
        todo = []
      except concurrent.futures.process.BrokenProcessPool:
        suspects = [t for t in todo if not done(t) and os.path.exists(_started_path(spec, t[0], t[1]))]
        bar.write(f'a worker process died; redoing {len(suspects)} shard(s) one video at a time',
                  file=sys.stderr)
        for t in suspects:
          isolate_shard(spec, *t)
        left = [t for t in todo if not done(t)]
        fruitless = 0 if len(left) < len(todo) else fruitless + 1
        if fruitless >= 3:
          raise RuntimeError('worker processes keep dying before finishing any shard; '
                             'run with --workers=1 to see why') from None
        todo = left
        bar.n = total - sum(len(t[2]) for t in todo)  # futures lost with the pool never reported
        bar.refresh()
  finally:
    bar.close()


def _read_shard(spec, split, index, with_records):
  """-> (header dict, list of records or None) of a work shard."""
  with open(shard_path(spec, split, index), 'rb') as f:
    header = pickle.load(f)
    return header, (pickle.load(f) if with_records else None)


def _shard_records(spec, split, index, totals):
  """The records of one work shard, adding to `totals` as they are read (TFDS calls this while writing)."""
  for record in _read_shard(spec, split, index, with_records=True)[1]:
    totals['videos'] += 1
    totals['frames'] += record['num_frames']
    totals['seconds'] += record['num_frames'] / record['fps']
    totals['jpeg_bytes'] += sum(len(f) for f in record['frames'])
    totals['per_split'][split] = totals['per_split'].get(split, 0) + 1
    yield record


def assemble(spec, class_names, tasks, start_time):
  """Work shards -> skipped.jsonl + TFDS dataset + summary.json; returns the summary dict."""
  from data_prep import tfds_writer  # pylint: disable=g-import-not-at-top - TFDS only where it is needed
  skipped, count, nonempty = [], {}, {}
  for split, index, _ in tasks:
    header, _ = _read_shard(spec, split, index, with_records=False)
    skipped.extend(header['skipped'])
    count[split] = count.get(split, 0) + header['num_records']
    nonempty[(split, index)] = header['num_records'] > 0
  lines = ''.join(json.dumps(s, sort_keys=True) + '\n' for s in skipped)
  os.makedirs(os.path.join(spec.out_dir, spec.name), exist_ok=True)
  atomic_write_bytes(skipped_path(spec), lines.encode())
  empty = sorted(s for s, n in count.items() if n == 0)
  if len(empty) == len(count):
    raise RuntimeError(f'{spec.name}: every video was skipped; see {skipped_path(spec)}')
  for leftover in glob.glob(os.path.join(spec.out_dir, spec.name, '*incomplete*')):
    shutil.rmtree(leftover, ignore_errors=True)  # an interrupted earlier TFDS write
  totals = dict(videos=0, frames=0, seconds=0.0, jpeg_bytes=0, per_split={})
  shards = {}  # one output ArrayRecord file per non-empty work shard, in plan order
  for split, index, _ in tasks:
    if nonempty[(split, index)]:
      shards.setdefault(split, []).append(functools.partial(_shard_records, spec, split, index, totals))
  dataset_dir = tfds_writer.write_sharded(
      spec.out_dir, spec.name, class_names, shards,
      description=f'{spec.layout} videos from {spec.videos_dir} (split {spec.split}), poses {spec.poses}.')
  dataset_bytes = sum(os.path.getsize(p) for p in glob.glob(os.path.join(dataset_dir, '*')))
  kinds = {}
  for s in skipped:
    kinds[s['kind']] = kinds.get(s['kind'], 0) + 1
  summary = dict(dataset_dir=dataset_dir, videos_ok=totals['videos'], videos_skipped=len(skipped),
                 skipped_by_kind=kinds, videos_per_split=totals['per_split'], empty_splits=empty,
                 frames=totals['frames'], hours=totals['seconds'] / 3600, jpeg_bytes=totals['jpeg_bytes'],
                 dataset_bytes=dataset_bytes, classes=len(class_names), seconds=time.time() - start_time)
  atomic_write_bytes(summary_path(spec),
                     json.dumps(summary, indent=1, sort_keys=True).encode())
  return summary


def build(spec, workers=1, keep_work=False):
  """The whole build; resumes from the work shards of an earlier run of the same spec. Returns the summary."""
  from data_prep import tfds_writer  # pylint: disable=g-import-not-at-top
  dataset_dir = tfds_writer.dataset_dir_for(spec.out_dir, spec.name)
  if os.path.exists(dataset_dir):
    if os.path.exists(summary_path(spec)):
      with open(summary_path(spec)) as f:
        return dict(json.load(f), already_built=True)
    if not os.path.isdir(work_dir(spec)):
      raise FileExistsError(f'{dataset_dir}: dataset exists (not made by data_prep.build, or its summary was '
                            'deleted); remove it or use another --name')
    shutil.rmtree(dataset_dir)  # killed between writing the dataset and its summary: assemble it again
  start = time.time()
  class_names, tasks = plan(spec)
  os.makedirs(work_dir(spec), exist_ok=True)
  fingerprint_path = os.path.join(work_dir(spec), 'fingerprint.txt')
  fingerprint = _fingerprint(spec, class_names, tasks)
  if os.path.exists(fingerprint_path):
    with open(fingerprint_path) as f:
      if f.read().strip() != fingerprint:
        raise RuntimeError(f'{work_dir(spec)}: left by a build with other inputs or options; '
                           'remove it or use another --name / --out_dir')
  else:
    atomic_write_bytes(fingerprint_path, fingerprint.encode())
  run_shards(spec, tasks, workers)
  summary = assemble(spec, class_names, tasks, start)
  if not keep_work:
    shutil.rmtree(work_dir(spec), ignore_errors=True)
  return summary
