"""data_prep.build's last step: the work shards of every task -> skipped.jsonl, the TFDS ArrayRecord dataset (one
file per non-empty work shard, in plan order, streamed: peak memory is one shard), fingerprint.json in the
dataset folder, and summary.json (coverage table, key-frame statistics, the fingerprint) beside it."""
import functools
import glob
import json
import os
import shutil
import time

from data_prep import coverage as coverage_lib
from data_prep import dataset_fingerprint
from data_prep import keyframe_stats
from data_prep import poses as poses_lib
from data_prep import work_shards


def skipped_path(spec):
  """One JSON line per skipped video: {video, split, kind (video | pose | crash | error), problem (one of
  coverage.PROBLEMS), reason}."""
  return os.path.join(spec.out_dir, spec.name, 'skipped.jsonl')


def summary_path(spec):
  return os.path.join(spec.out_dir, spec.name, 'summary.json')


class _Totals:
  """What the summary and the fingerprint need, gathered while TFDS streams the records."""

  def __init__(self, spec, geometry):
    self.poses_requested = spec.poses != 'none'
    self.videos = self.frames = self.jpeg_bytes = 0
    self.seconds = 0.0
    self.per_split, self.video_ids = {}, {}
    self.coverage = coverage_lib.Coverage()
    self.keyframes = keyframe_stats.KeyframeStats(geometry)

  def add(self, split, record):
    self.videos += 1
    self.frames += record['num_frames']
    self.seconds += record['num_frames'] / record['fps']
    self.jpeg_bytes += sum(len(f) for f in record['frames'])
    self.per_split[split] = self.per_split.get(split, 0) + 1
    self.video_ids.setdefault(split, []).append(record['video_id'])
    missing = self.poses_requested and (record['pose_source'] == 'none' or not poses_lib.has_person(record['poses']))
    self.coverage.add(split, None, missing)
    self.keyframes.add(split, record['keyframe_indices'], record['num_frames'])


def _shard_records(spec, split, index, totals):
  """The records of one work shard, counted into `totals` as they are read (TFDS calls this while writing)."""
  for record in work_shards.read_shard(spec, split, index, with_records=True)[1]:
    totals.add(split, record)
    yield record


def assemble(spec, class_names, tasks, start_time, geometry):
  """Work shards of `tasks` (all on disk) -> dataset + files beside it; returns the summary dict."""
  from data_prep import tfds_writer  # pylint: disable=g-import-not-at-top - TFDS only where it is needed
  totals = _Totals(spec, geometry)
  skipped, count, nonempty = [], {}, {}
  for split, index, _ in tasks:
    header, _ = work_shards.read_shard(spec, split, index, with_records=False)
    skipped.extend(header['skipped'])
    for s in header['skipped']:
      totals.coverage.add(split, s['problem'])
    count[split] = count.get(split, 0) + header['num_records']
    nonempty[(split, index)] = header['num_records'] > 0
  lines = ''.join(json.dumps(s, sort_keys=True) + '\n' for s in skipped)
  os.makedirs(os.path.join(spec.out_dir, spec.name), exist_ok=True)
  work_shards.atomic_write_bytes(skipped_path(spec), lines.encode())
  empty = sorted(s for s, n in count.items() if n == 0)
  if len(empty) == len(count):
    raise RuntimeError(f'{spec.name}: every video was skipped; see {skipped_path(spec)}')
  for leftover in glob.glob(os.path.join(spec.out_dir, spec.name, '*incomplete*')):
    shutil.rmtree(leftover, ignore_errors=True)  # an interrupted earlier TFDS write
  shards = {}
  for split, index, _ in tasks:
    if nonempty[(split, index)]:
      shards.setdefault(split, []).append(functools.partial(_shard_records, spec, split, index, totals))
  dataset_dir = tfds_writer.write_sharded(
      spec.out_dir, spec.name, class_names, shards,
      description=f'{spec.layout} videos from {spec.videos_dir} (split {spec.split}), poses {spec.poses}.')
  dataset_bytes = sum(os.path.getsize(p) for p in glob.glob(os.path.join(dataset_dir, '*')))
  keyframes = totals.keyframes.result()
  fingerprint = dataset_fingerprint.make_fingerprint(spec, class_names, totals.per_split, totals.video_ids,
                                                     keyframes)
  dataset_fingerprint.write_fingerprint(dataset_dir, fingerprint)
  kinds = {}
  for s in skipped:
    kinds[s['kind']] = kinds.get(s['kind'], 0) + 1
  summary = dict(dataset_dir=dataset_dir, videos_ok=totals.videos, videos_skipped=len(skipped),
                 skipped_by_kind=kinds, videos_per_split=totals.per_split, empty_splits=empty,
                 frames=totals.frames, hours=totals.seconds / 3600, jpeg_bytes=totals.jpeg_bytes,
                 dataset_bytes=dataset_bytes, classes=len(class_names), seconds=time.time() - start_time,
                 coverage=totals.coverage.as_dict(), poses_requested=totals.poses_requested, keyframes=keyframes,
                 fingerprint=fingerprint)
  work_shards.atomic_write_bytes(summary_path(spec), json.dumps(summary, indent=1, sort_keys=True).encode())
  return summary
