r"""Build a TFDS ArrayRecord dataset of video records from raw videos, official splits and (optional) poses.

  python -m data_prep.build --layout=ucf101 --videos_dir=UCF-101 --annotations=ucfTrainTestlist \
      --poses=openpose:POSE_DIR --out_dir=data --name=ucf101_split1 --workers=8

Layouts: ucf101 | hmdb51 | kinetics | ssv2 | folder (see data_prep/annotations.py). The dataset lands in
<out_dir>/<name>/1.0.0 (the folder to give as config.data.dataset_dir; fingerprint.json in it), with
skipped.jsonl and summary.json in <out_dir>/<name>/. Rerunning the same command after an interruption resumes it.
Check the inputs first with the same flags: `python -m data_prep.check ...` (data_prep/check.py).

Several hosts sharing --out_dir: run the same command on each with --num_tasks=N --task_index=i (0..N-1), then
once with --num_tasks=N --finalize (data_prep/builder.py).
"""
import json
import sys

from absl import app
from absl import flags
from absl import logging

from data_prep import annotations as annotations_lib
from data_prep import builder
from data_prep import coverage
from data_prep import keyframe_stats
from data_prep import poses as poses_lib

FLAGS = flags.FLAGS


def define_flags():
  """Command-line flags, defined only when run as a program (the module is also a library)."""
  flags.DEFINE_enum('layout', None, sorted(annotations_lib.LAYOUTS), 'Annotation layout.')
  flags.DEFINE_string('videos_dir', None, 'Root of the video files (paths in the split files are relative to it).')
  flags.DEFINE_string('annotations', '', 'Split files: UCF101 ucfTrainTestlist folder, HMDB51 split folder, '
                      'Kinetics CSV (or folder of CSVs), SSv2 label folder, folder layout: optional split list.')
  flags.DEFINE_string('poses', 'none', 'none | openpose:DIR | kinetics_skeleton:DIR')
  flags.DEFINE_string('out_dir', None, 'Output folder.')
  flags.DEFINE_string('name', None, 'Dataset name (lower_case_with_underscores).')
  flags.DEFINE_integer('split', 1, 'Official split (1-3) for UCF101 / HMDB51.')
  flags.DEFINE_integer('reencode_gop', builder.COVIAR_GOP, 'Re-encode every video with MPEG-4 Part 2 at this fixed '
                       'GOP first, as CoViAR (the key frames the context branch uses); 0: keep the codec\'s own key '
                       'frames.')
  flags.DEFINE_integer('jpeg_quality', 90, 'JPEG quality of the stored frames.')
  flags.DEFINE_integer('short_side', 128, 'Short side of the stored frames.')
  flags.DEFINE_integer('workers', 1, 'Worker processes (1: in this process).')
  flags.DEFINE_integer('shard_size', 32, 'Videos per work shard (the unit of resumption).')
  flags.DEFINE_integer('min_frames', 2, 'Videos with fewer decodable frames are skipped.')
  flags.DEFINE_float('folder_test_ratio', 0.2, 'folder layout without a split list: test fraction per class.')
  flags.DEFINE_integer('folder_seed', 0, 'folder layout without a split list: seed of the split.')
  flags.DEFINE_bool('keep_work', False, 'Keep the work shards after a successful build.')
  flags.DEFINE_integer('num_tasks', 1, 'Split the build over this many tasks (hosts) sharing --out_dir.')
  flags.DEFINE_integer('task_index', 0, 'This task, 0..num_tasks-1: builds its share of the work shards.')
  flags.DEFINE_bool('finalize', False, 'With --num_tasks > 1: assemble the dataset once every task has finished.')
  g = keyframe_stats.ClipGeometry()
  flags.DEFINE_integer('stats_clip_len', g.clip_len, 'Key-frame statistics: clip length (frames).')
  flags.DEFINE_integer('stats_future_len', g.future_len, 'Key-frame statistics: future clip length (frames).')
  flags.DEFINE_integer('stats_stride', g.stride, 'Key-frame statistics: temporal stride of the clip.')
  flags.DEFINE_integer('stats_iframe_margin', g.iframe_margin,
                       'Key-frame statistics: the clip window is widened by this many frames on each side.')
  flags.DEFINE_enum('stats_short_video_policy', g.short_video_policy, ['loop', 'pad'],
                    'Key-frame statistics: clips of videos shorter than clip + future.')


def spec_from_flags():
  """BuildSpec from the flags (also data_prep.check's, which writes no dataset: out_dir and name may be unset)."""
  return builder.BuildSpec(
      layout=FLAGS.layout, videos_dir=FLAGS.videos_dir, annotations=FLAGS.annotations,
      out_dir=FLAGS.out_dir or '', name=FLAGS.name or '',
      poses=FLAGS.poses, split=FLAGS.split, reencode_gop=FLAGS.reencode_gop, jpeg_quality=FLAGS.jpeg_quality,
      short_side=FLAGS.short_side, shard_size=FLAGS.shard_size, min_frames=FLAGS.min_frames,
      folder_test_ratio=FLAGS.folder_test_ratio, folder_seed=FLAGS.folder_seed)


def geometry_from_flags():
  return keyframe_stats.ClipGeometry(
      clip_len=FLAGS.stats_clip_len, future_len=FLAGS.stats_future_len, stride=FLAGS.stats_stride,
      iframe_margin=FLAGS.stats_iframe_margin, short_video_policy=FLAGS.stats_short_video_policy)


def validate_spec(spec):
  """One-line errors for options that would only fail deep inside the build."""
  poses_lib.parse_spec(spec.poses)
  if not 1 <= spec.jpeg_quality <= 100:
    raise ValueError(f'--jpeg_quality={spec.jpeg_quality}: want 1..100')
  if spec.reencode_gop < 0:
    raise ValueError(f'--reencode_gop={spec.reencode_gop}: want 0 (codec key frames) or a GOP >= 1')
  if spec.short_side < 2 or spec.min_frames < 1 or spec.shard_size < 1:
    raise ValueError('want --short_side >= 2, --min_frames >= 1 and --shard_size >= 1')


def _human_bytes(n):
  for unit in ('B', 'KB', 'MB', 'GB', 'TB'):
    if n < 1024 or unit == 'TB':
      return f'{n:.1f} {unit}'
    n /= 1024


def format_summary(summary):
  if summary.get('already_built'):
    head = f'already built: {summary["dataset_dir"]} (summary of that build)'
  else:
    head = f'built {summary["dataset_dir"]} in {summary["seconds"]:.1f} s'
  lines = [head,
           f'  videos ok {summary["videos_ok"]} {summary["videos_per_split"]}, skipped {summary["videos_skipped"]}'
           f' {summary["skipped_by_kind"] or ""}',
           f'  {summary["frames"]} frames, {summary["hours"]:.3f} hours of video, {summary["classes"]} classes',
           f'  {_human_bytes(summary["jpeg_bytes"])} of JPEG frames, {_human_bytes(summary["dataset_bytes"])} on disk']
  if summary['videos_skipped']:
    lines.append(f'  reasons: {summary["dataset_dir"].rsplit("/", 1)[0]}/skipped.jsonl')
  if summary['empty_splits']:
    lines.append(f'  warning: no usable video in split(s) {summary["empty_splits"]}; they are not written')
  if 'coverage' in summary:  # summaries of builds made before the coverage table and the fingerprint have none
    lines.append(coverage.format_table(summary['coverage'], summary['poses_requested']))
    lines.append(keyframe_stats.format_stats(summary['keyframes']))
    fp = summary['fingerprint']
    lines.append(f'fingerprint {fp["digest"][:16]} (fingerprint.json): '
                 + '; '.join(f'{k.replace("_", " ")} {v}' for k, v in fp['preprocessing'].items()))
  return '\n'.join(lines)


def format_task(result):
  return (f'task {result["task_index"]} of {result["num_tasks"]}: {result["shards"]} work shards '
          f'({result["videos"]} videos, {result["skipped"]} skipped) in {result["work_dir"]}; when every task has '
          'finished, run the same command with --finalize')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  for name in ('layout', 'videos_dir', 'out_dir', 'name'):
    if not getattr(FLAGS, name):
      print(f'error: --{name} is required', file=sys.stderr)
      sys.exit(2)
  spec = spec_from_flags()
  logging.set_verbosity(logging.WARNING)  # TFDS logs every file it writes; our own bar and summary suffice
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top - slow import, only here
  tfds.disable_progress_bar()
  try:
    validate_spec(spec)
    geometry = geometry_from_flags()
    geometry.validate()
    result = builder.build(spec, workers=FLAGS.workers, keep_work=FLAGS.keep_work, num_tasks=FLAGS.num_tasks,
                           task_index=FLAGS.task_index, finalize=FLAGS.finalize, geometry=geometry)
  except (ValueError, RuntimeError, OSError) as e:  # AnnotationError is a ValueError
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(format_task(result) if 'task_index' in result else format_summary(result))
  print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
  define_flags()
  app.run(main)
