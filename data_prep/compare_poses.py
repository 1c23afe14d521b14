r"""Compare two pose sources on one video: the mean pixel distance of the joints both detect.

  python -m data_prep.compare_poses --video=clean_and_jerk.mp4 \
      --poses_a=openpose:OPENPOSE_DIR --poses_b=openpose:MEDIAPIPE_DIR [--min_confidence=0.0]

Each source is read as data_prep.build reads it (data_prep/poses.py: COCO-18, one person tracked through the
video), in pixels of the video's frames. A joint counts where both sources give it a confidence above
--min_confidence (0: both detect it). MediaPipe's output of data_prep.extract_poses is already in COCO-18
(its neck is the shoulder midpoint, its hips BlazePose's).
"""
import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

from csvr_jax.data.records import COCO18_JOINTS
from data_prep import poses as poses_lib
from data_prep import video_io

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('video', None, 'The video both pose sources were computed on.')
  flags.DEFINE_string('poses_a', None, 'openpose:DIR | kinetics_skeleton:DIR (the reference)')
  flags.DEFINE_string('poses_b', None, 'openpose:DIR | kinetics_skeleton:DIR')
  flags.DEFINE_float('min_confidence', 0.0, 'A joint counts where both confidences exceed this.')


def tracked_pixels(spec, rel_path, width, height):
  """(F, 18, 3) float32: x, y in pixels of a width x height video and the confidence (0: not detected)."""
  kind, root = poses_lib.parse_spec(spec)
  if kind == 'openpose':
    frames_people = poses_lib.read_openpose_video(root, rel_path)
  else:
    path = poses_lib.kinetics_skeleton_file(root, rel_path)
    frames_people = poses_lib.read_kinetics_skeleton(path) if path else None
  if frames_people is None:
    raise ValueError(f'{spec}: no pose file for {rel_path}')
  poses = poses_lib.normalise(poses_lib.track_person(frames_people), width, height)
  poses[..., :2] *= np.array([width, height], np.float32)
  return poses


def mean_joint_distance(a, b, min_confidence=0.0):
  """Distances between two (F, 18, 3) pixel pose tracks over the joints both detect.

  Frames beyond the shorter track are ignored. Returns dict(mean_px, median_px, joints (how many joint
  positions were compared), frames (frames with at least one), per_joint {COCO-18 name: mean px or None}).
  """
  n = min(len(a), len(b))
  a, b = np.asarray(a, np.float64)[:n], np.asarray(b, np.float64)[:n]
  both = (a[..., 2] > min_confidence) & (b[..., 2] > min_confidence)
  dist = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1)
  per_joint = {name: (float(dist[:, j][both[:, j]].mean()) if both[:, j].any() else None)
               for j, name in enumerate(COCO18_JOINTS)}
  if not both.any():
    return dict(mean_px=None, median_px=None, joints=0, frames=0, per_joint=per_joint)
  return dict(mean_px=float(dist[both].mean()), median_px=float(np.median(dist[both])), joints=int(both.sum()),
              frames=int(both.any(axis=1).sum()), per_joint=per_joint)


def compare(video, poses_a, poses_b, min_confidence=0.0):
  info = video_io.probe_video(video)
  rel = os.path.basename(video)
  a = tracked_pixels(poses_a, rel, info['width'], info['height'])
  b = tracked_pixels(poses_b, rel, info['width'], info['height'])
  out = mean_joint_distance(a, b, min_confidence)
  out.update(video=video, width=info['width'], height=info['height'], frames_a=len(a), frames_b=len(b),
             detected_a=int((a[..., 2] > min_confidence).sum()), detected_b=int((b[..., 2] > min_confidence).sum()))
  return out


def main(argv):
  del argv
  if not (FLAGS.video and FLAGS.poses_a and FLAGS.poses_b):
    print('error: --video, --poses_a and --poses_b are required', file=sys.stderr)
    sys.exit(2)
  try:
    r = compare(FLAGS.video, FLAGS.poses_a, FLAGS.poses_b, FLAGS.min_confidence)
  except (ValueError, OSError, video_io.VideoError, poses_lib.PoseError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  mean = 'n/a' if r['mean_px'] is None else f'{r["mean_px"]:.2f} px'
  print(f'{r["video"]} ({r["width"]}x{r["height"]}): mean distance {mean} over {r["joints"]} joints both detect '
        f'in {r["frames"]} frames (a: {r["detected_a"]} joints in {r["frames_a"]} frames, b: {r["detected_b"]} '
        f'in {r["frames_b"]})')
  for name, d in r['per_joint'].items():
    print(f'  {name:<11} {"-" if d is None else f"{d:.1f} px"}')
  print(json.dumps(r, sort_keys=True))


if __name__ == '__main__':
  define_flags()
  app.run(main)
