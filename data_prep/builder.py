"""Resumable, parallel, multi-host build: annotated videos -> work shards -> one TFDS ArrayRecord dataset.

Stage 1 turns each video into a record (data_prep.video_io + data_prep.poses) in shards of `shard_size`
videos; each shard is written atomically (temp file + rename) to `<out_dir>/.<name>.work/`
(data_prep/work_shards.py), so a build killed at any point keeps its finished shards and the same command redoes
only the missing ones. Stage 2 (data_prep/assemble.py) streams the shards, in plan order, into the TFDS writer,
which itself renames a complete dataset into place. Records and their order depend only on the inputs and
options, never on the worker count, the task count, interruptions or dead workers.

Several hosts (`num_tasks` > 1): task i builds the shards whose plan position is i modulo num_tasks into the
shared work folder and stops; one finalising call (`finalize=True`, same spec) checks that every shard is there
and assembles exactly what a one-host build writes. Explicit rather than "the last task to finish assembles":
tasks that end together cannot both assemble, and a task that died is named instead of waited for.
"""
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time

from data_prep import annotations as annotations_lib
from data_prep import assemble as assemble_lib
from data_prep import coverage
from data_prep import keyframe_stats
from data_prep import poses as poses_lib
from data_prep import video_io
from data_prep import work_shards

work_dir = work_shards.work_dir
shard_path = work_shards.shard_path
skipped_path = assemble_lib.skipped_path
summary_path = assemble_lib.summary_path
COVIAR_GOP = 12  # CoViAR re-encodes with MPEG-4 Part 2 at a fixed GOP of 12; the paper follows it


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
  reencode_gop: int = COVIAR_GOP
  jpeg_quality: int = 90
  short_side: int = 128
  shard_size: int = 32
  min_frames: int = 2
  folder_test_ratio: float = 0.2
  folder_seed: int = 0


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


def _work_key(spec, class_names, tasks):
  """What a work folder was made from: a resumed or finalising run must have the same."""
  content = json.dumps([work_shards.WORK_FORMAT, dataclasses.asdict(spec), class_names, tasks], sort_keys=True)
  return hashlib.sha256(content.encode()).hexdigest()


def task_share(tasks, num_tasks, task_index):
  """The work shards task `task_index` of `num_tasks` builds: every num_tasks-th in plan order (interleaved, so
  each task gets a mix of long and short splits)."""
  return tasks[task_index::num_tasks]


def make_record(spec, rel_path, label):
  """One video -> record dict (csvr_jax/data/records.py). Raises VideoError / PoseError."""
  path = os.path.join(spec.videos_dir, rel_path)
  video_io.check_file(path)
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
    return 'skip', dict(video=rel_path, split=split, kind=_skip_kind(e), problem=coverage.problem_of(e),
                        reason=reason)


def process_shard(spec, split, index, entries, on_video=None):
  """Builds one shard and writes it atomically; returns (number of videos, number skipped).

  on_video: called after each video (in-process progress); worker processes report per shard instead.
  A `.started` marker lets the parent find the shards a dead worker was on.
  """
  open(work_shards.started_path(spec, split, index), 'w').close()
  outcomes = []
  for rel_path, label in entries:
    outcomes.append(video_outcome(spec, split, rel_path, label))
    if on_video:
      on_video()
  return work_shards.write_shard(spec, split, index, outcomes)


def spawn_pool(workers):
  ctx = multiprocessing.get_context('spawn')  # no inherited locks or threads from the parent
  return concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)


def isolate_shard(spec, split, index, entries):
  """Builds a shard one video at a time in a 1-process pool: a video that kills its process (a decoder
  crash) is skipped with kind 'crash' and the pool is replaced. Returns (videos, skipped)."""
  outcomes, pool = [], None
  try:
    for rel_path, label in entries:
      pool = pool or spawn_pool(1)
      try:
        outcomes.append(pool.submit(video_outcome, spec, split, rel_path, label).result())
      except concurrent.futures.process.BrokenProcessPool:
        pool.shutdown(wait=True)
        pool = None
        outcomes.append(('skip', dict(video=rel_path, split=split, kind='crash', problem='undecodable',
                                      reason=f'{os.path.join(spec.videos_dir, rel_path)}: the process preparing '
                                             'it died (decoder crash or out of memory)')))
  finally:
    if pool:
      pool.shutdown(wait=True)
  return work_shards.write_shard(spec, split, index, outcomes)


def progress_bar(total, initial):
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, unit='video', desc='videos', file=sys.stderr, dynamic_ncols=True,
              mininterval=0.5)


def run_shards(spec, tasks, workers):
  """Builds the shards that are not on disk yet, `workers` processes (1: in this process).

  With workers > 1, a worker that dies (a decoder segfault, the OOM killer) breaks the pool: the shards it
  was on are redone video by video in isolation (isolate_shard), then the pool restarts for the rest.
  """
  for t in tasks:  # only this task's markers: other tasks may be running on the same work folder
    if os.path.exists(work_shards.started_path(spec, t[0], t[1])):
      os.remove(work_shards.started_path(spec, t[0], t[1]))  # left by an interrupted run, not a crash
  done = lambda t: os.path.exists(shard_path(spec, t[0], t[1]))
  todo = [t for t in tasks if not done(t)]
  total = sum(len(t[2]) for t in tasks)
  bar = progress_bar(total, total - sum(len(t[2]) for t in todo))
  try:
    if workers <= 1:
      for split, index, entries in todo:
        process_shard(spec, split, index, entries, on_video=lambda: bar.update(1))
      return
    fruitless = 0  # pool breaks in a row that finished no shard: workers that die on start-up
    while todo:
      try:
        with spawn_pool(workers) as pool:
          futures = [pool.submit(process_shard, spec, *t) for t in todo]
          for future in concurrent.futures.as_completed(futures):
            bar.update(future.result()[0])
        todo = []
      except concurrent.futures.process.BrokenProcessPool:
        suspects = [t for t in todo if not done(t) and os.path.exists(work_shards.started_path(spec, t[0], t[1]))]
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


def _prepare_work_dir(spec, class_names, tasks):
  os.makedirs(work_dir(spec), exist_ok=True)
  key_path = os.path.join(work_dir(spec), 'work_key.txt')
  key = _work_key(spec, class_names, tasks)
  if os.path.exists(key_path):
    with open(key_path) as f:
      if f.read().strip() != key:
        raise RuntimeError(f'{work_dir(spec)}: left by a build with other inputs, options or data_prep version; '
                           'remove it or use another --name / --out_dir')
  else:
    work_shards.atomic_write_bytes(key_path, key.encode())  # tasks starting together write the same bytes


def _already_built(spec, is_task):
  """The earlier summary if the dataset is complete; None if there is none (or a half-finished one, removed,
  except by a task: the finalising call may be writing it)."""
  from data_prep import tfds_writer  # pylint: disable=g-import-not-at-top
  dataset_dir = tfds_writer.dataset_dir_for(spec.out_dir, spec.name)
  if not os.path.exists(dataset_dir):
    return None
  if os.path.exists(summary_path(spec)):
    with open(summary_path(spec)) as f:
      return dict(json.load(f), already_built=True)
  if not os.path.isdir(work_dir(spec)):
    raise FileExistsError(f'{dataset_dir}: dataset exists (not made by data_prep.build, or its summary was '
                          'deleted); remove it or use another --name')
  if is_task:
    raise RuntimeError(f'{dataset_dir}: being finalised, or its finalising was interrupted (then rerun '
                       '--finalize); a task has nothing left to build')
  shutil.rmtree(dataset_dir)  # killed between writing the dataset and its summary: assemble it again
  return None


def _missing_shards(spec, tasks, num_tasks):
  missing = [i for i, t in enumerate(tasks) if not os.path.exists(shard_path(spec, t[0], t[1]))]
  if missing:
    owners = sorted({i % num_tasks for i in missing})
    raise RuntimeError(f'{work_dir(spec)}: {len(missing)} of {len(tasks)} work shards are missing (built by '
                       f'--task_index {", ".join(map(str, owners))} of --num_tasks={num_tasks}); run those tasks '
                       'first')


def build(spec, workers=1, keep_work=False, num_tasks=1, task_index=0, finalize=False,
          geometry=keyframe_stats.ClipGeometry()):
  """The whole build (num_tasks=1), one task's share of the work shards (num_tasks > 1), or the finalising
  assembly of all tasks' shards (finalize=True). Resumes from the work shards of an earlier run of the same spec.

  Returns the summary (data_prep/assemble.py; `already_built` when the dataset existed), or for a task
  dict(task_index, num_tasks, shards, videos, skipped, work_dir). geometry: the clip the key-frame statistics
  are computed for (it does not change the records).
  """
  if not 0 <= task_index < num_tasks:
    raise ValueError(f'--task_index={task_index}, --num_tasks={num_tasks}: want 0 <= task_index < num_tasks')
  is_task = num_tasks > 1 and not finalize
  done = _already_built(spec, is_task)
  if done is not None:
    return done
  start = time.time()
  class_names, tasks = plan(spec)
  _prepare_work_dir(spec, class_names, tasks)
  if is_task:
    share = task_share(tasks, num_tasks, task_index)
    run_shards(spec, share, workers)
    skipped = sum(len(work_shards.read_shard(spec, t[0], t[1], with_records=False)[0]['skipped']) for t in share)
    return dict(task_index=task_index, num_tasks=num_tasks, shards=len(share),
                videos=sum(len(t[2]) for t in share), skipped=skipped, work_dir=work_dir(spec))
  if finalize:
    _missing_shards(spec, tasks, num_tasks)
  else:
    run_shards(spec, tasks, workers)
  summary = assemble_lib.assemble(spec, class_names, tasks, start, geometry)
  if not keep_work:
    shutil.rmtree(work_dir(spec), ignore_errors=True)
  return summary
