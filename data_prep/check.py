r"""Check the inputs of a build before running it: the same flags as data_prep.build.

  python -m data_prep.check --layout=kinetics --videos_dir=K400 --annotations=kinetics400 \
      --poses=kinetics_skeleton:SKEL --workers=8

Prints, per split, listed / found / decodable / too short / bad poses / usable / missing poses
(data_prep/coverage.py), then every problem video with the decoder's or parser's message, then the speed. Each
video is probed, not decoded (data_prep.video_io.probe_video: container, stream, frame count from the metadata,
the first frame and one at the last key frame); of the poses, the file is looked up and the first OpenPose frame
file / the Kinetics-skeleton file is parsed. So a few problems only the build meets (a file cut inside its
last GOP, a malformed OpenPose file after the first frame, OpenPose files with nobody in any frame, a frame count
the metadata overstates) are reported by the build: in skipped.jsonl and its own coverage table. The last line
is the report as JSON.
"""
import functools
import json
import os
import sys
import time

from absl import app
from absl import flags

from data_prep import build as build_cli
from data_prep import builder
from data_prep import coverage
from data_prep import poses as poses_lib
from data_prep import video_io

FLAGS = flags.FLAGS


def check_video(spec, item):
  """(split, rel_path) -> dict(split, video, problem (coverage.PROBLEMS or None), poses (pose_file_status),
  reason)."""
  split, rel_path = item
  out = dict(split=split, video=rel_path, problem=None, poses=None, reason='')
  try:
    video_io.probe_video(os.path.join(spec.videos_dir, rel_path), spec.min_frames)
    kind, root = poses_lib.parse_spec(spec.poses)
    out['poses'] = poses_lib.pose_file_status(kind, root, rel_path)
    if out['poses'] == 'missing':
      out['reason'] = f'no pose file for it under {root}'
    elif out['poses'] == 'empty':
      out['reason'] = 'its pose file has nobody in it'
  except Exception as e:  # pylint: disable=broad-except - every problem is reported, the check goes on
    out['problem'] = coverage.problem_of(e)
    known = isinstance(e, (video_io.VideoError, poses_lib.PoseError))
    out['reason'] = str(e) if known else f'{type(e).__name__}: {e}'
  return out


def _probe_all(spec, items, workers, progress):
  """check_video over `items` in order, in `workers` processes (1: in this one)."""
  probe = functools.partial(check_video, spec)
  bar = builder.progress_bar(len(items), 0) if progress else None
  pool = builder.spawn_pool(workers) if workers > 1 else None
  try:
    chunk = max(1, min(64, len(items) // (4 * workers)))
    results = []
    for r in pool.map(probe, items, chunksize=chunk) if pool else map(probe, items):
      results.append(r)
      if bar:
        bar.update(1)
    return results
  finally:
    if pool:
      pool.shutdown()
    if bar:
      bar.close()


def check(spec, workers=1, progress=False):
  """Probes every listed video -> dict(coverage {split: counts}, problems [check_video dicts with a problem or
  without poses], videos, seconds, seconds_per_1000_videos, workers). Annotations are parsed as the build does."""
  start = time.perf_counter()
  _, tasks = builder.plan(spec)
  items = [(split, rel) for split, _, entries in tasks for rel, _ in entries]
  results = _probe_all(spec, items, workers, progress)
  table = coverage.Coverage()
  for r in results:
    table.add(r['split'], r['problem'], r['poses'] in ('missing', 'empty'))
  seconds = time.perf_counter() - start
  problems = [r for r in results if r['problem'] or r['poses'] in ('missing', 'empty')]
  return dict(coverage=table.as_dict(), problems=problems, videos=len(items), seconds=seconds,
              seconds_per_1000_videos=1000 * seconds / max(1, len(items)), workers=workers,
              poses_requested=spec.poses != 'none')


def format_report(report):
  lines = [coverage.format_table(report['coverage'], report['poses_requested'])]
  if report['problems']:
    lines.append(f'{len(report["problems"])} problem(s):')
    for p in report['problems']:
      lines.append(f'  {p["split"]}  {p["problem"] or p["poses"] + " poses"}  {p["video"]}: {p["reason"]}')
  else:
    lines.append('no problems found')
  lines.append(f'checked {report["videos"]} videos in {report["seconds"]:.1f} s with {report["workers"]} '
               f'worker(s): {report["seconds_per_1000_videos"]:.1f} s per 1000 videos')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  for name in ('layout', 'videos_dir'):
    if not getattr(FLAGS, name):
      print(f'error: --{name} is required', file=sys.stderr)
      sys.exit(2)
  spec = build_cli.spec_from_flags()
  try:
    build_cli.validate_spec(spec)
    report = check(spec, FLAGS.workers, progress=True)
  except (ValueError, RuntimeError, OSError) as e:  # AnnotationError is a ValueError
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(format_report(report))
  print(json.dumps(report, sort_keys=True))


if __name__ == '__main__':
  build_cli.define_flags()
  app.run(main)
