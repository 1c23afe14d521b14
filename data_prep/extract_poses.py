r"""Estimate poses offline with MediaPipe and write them as OpenPose JSON (read by data_prep.build like OpenPose).

Runs in its OWN virtual environment: mediapipe 0.10.21 pins numpy<2 and protobuf<5, which break jax, grain and
tfds, so it is kept out of the main one.

  python3.11 -m venv .venv-mediapipe && .venv-mediapipe/bin/pip install -r data_prep/requirements-mediapipe.txt
  .venv-mediapipe/bin/python -m data_prep.extract_poses --backend=mediapipe --videos_dir=UCF-101 \
      --out_dir=poses_ucf101 --workers=4
  .venv/bin/python -m data_prep.build ... --poses=openpose:poses_ucf101

Output: `<out_dir>/<video path without extension>/<stem>_<frame:012d>_keypoints.json`, one per decoded frame,
coordinates in pixels of the original video, as OpenPose `--write_json` writes them. BlazePose's 33 landmarks are
mapped to COCO-18 (neck = shoulder midpoint, confidence = the lower shoulder visibility); confidence is the
landmark visibility. MediaPipe Pose follows one person. Resumable: a finished video has a `_done` marker and is
skipped by a rerun. Imports only av, numpy, absl and mediapipe (this file must run in that venv).
"""
import json
import multiprocessing
import os
import shutil
import sys

from absl import app
from absl import flags
import numpy as np

FLAGS = flags.FLAGS


def define_flags():
  """Command-line flags, defined only when run as a program (the module is also a library)."""
  flags.DEFINE_enum('backend', 'mediapipe', ['mediapipe'], 'Pose estimator.')
  flags.DEFINE_string('videos_dir', None, 'Root folder of the videos (searched recursively).')
  flags.DEFINE_string('out_dir', None, 'Output folder of OpenPose-format JSON.')
  flags.DEFINE_integer('workers', 1, 'Worker processes.')
  flags.DEFINE_float('min_detection_confidence', 0.5, 'MediaPipe detection threshold.')


VIDEO_EXTENSIONS = ('.mp4', '.avi', '.webm', '.mkv', '.mov', '.m4v', '.mpg', '.mpeg', '.flv', '.3gp', '.ogv')
# BlazePose landmark index for each COCO-18 joint; None = neck (shoulder midpoint).
BLAZEPOSE_TO_COCO18 = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)


def blazepose_to_coco18(landmarks, width, height):
  """(33, 3) BlazePose (x, y normalised, visibility) -> (18, 3) COCO-18 in pixels with confidence."""
  lm = np.asarray(landmarks, np.float64)
  out = np.zeros((18, 3))
  for coco, blaze in enumerate(BLAZEPOSE_TO_COCO18):
    if blaze is None:
      out[coco, :2] = (lm[11, :2] + lm[12, :2]) / 2
      out[coco, 2] = min(lm[11, 2], lm[12, 2])
    else:
      out[coco] = lm[blaze]
  out[:, 0] *= width
  out[:, 1] *= height
  return out


def openpose_json(people):
  """list of (18, 3) pixel arrays -> OpenPose --write_json dict."""
  return {'version': 1.3, 'people': [
      {'person_id': [-1], 'pose_keypoints_2d': np.round(p.reshape(-1), 3).tolist(), 'face_keypoints_2d': [],
       'hand_left_keypoints_2d': [], 'hand_right_keypoints_2d': []} for p in people]}


def find_videos(videos_dir):
  """Sorted video paths relative to videos_dir."""
  found = []
  for root, dirs, files in os.walk(videos_dir):
    dirs.sort()
    for name in sorted(files):
      if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
        found.append(os.path.relpath(os.path.join(root, name), videos_dir))
  return found


def extract_video(task):
  """(videos_dir, out_dir, rel_path, min_conf) -> (rel_path, frames written or an error string)."""
  videos_dir, out_dir, rel_path, min_conf = task
  import av  # pylint: disable=g-import-not-at-top
  import mediapipe as mp  # pylint: disable=g-import-not-at-top
  stem_path = os.path.splitext(rel_path)[0]
  final = os.path.join(out_dir, stem_path)
  if os.path.exists(os.path.join(final, '_done')):
    return rel_path, 'done before'
  tmp = final + '.partial'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  stem = os.path.basename(stem_path)
  count = 0
  try:
    with av.open(os.path.join(videos_dir, rel_path)) as container, \
         mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1,
                                min_detection_confidence=min_conf) as pose:
      for frame in container.decode(video=0):
        rgb = frame.to_ndarray(format='rgb24')
        result = pose.process(rgb)
        people = []
        if result.pose_landmarks:
          lm = [(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark]
          people.append(blazepose_to_coco18(lm, frame.width, frame.height))
        with open(os.path.join(tmp, f'{stem}_{count:012d}_keypoints.json'), 'w') as f:
          f.write(json.dumps(openpose_json(people)))
        count += 1
  except Exception as e:  # pylint: disable=broad-except - a bad video is reported, the others go on
    shutil.rmtree(tmp, ignore_errors=True)
    return rel_path, f'error: {type(e).__name__}: {e}'
  open(os.path.join(tmp, '_done'), 'w').close()
  shutil.rmtree(final, ignore_errors=True)
  os.replace(tmp, final)
  return rel_path, count


def main(argv):
  del argv
  if not FLAGS.videos_dir or not FLAGS.out_dir:
    print('error: --videos_dir and --out_dir are required', file=sys.stderr)
    sys.exit(2)
  videos = find_videos(FLAGS.videos_dir)
  if not videos:
    print(f'error: {FLAGS.videos_dir}: no video files', file=sys.stderr)
    sys.exit(1)
  tasks = [(FLAGS.videos_dir, FLAGS.out_dir, v, FLAGS.min_detection_confidence) for v in videos]
  errors = 0
  with multiprocessing.get_context('spawn').Pool(max(1, FLAGS.workers)) as pool:
    for i, (rel, result) in enumerate(pool.imap(extract_video, tasks)):
      if isinstance(result, str) and result.startswith('error'):
        errors += 1
      print(f'[{i + 1}/{len(tasks)}] {rel}: {result}', flush=True)
  print(f'{len(videos) - errors} videos done, {errors} failed; poses in {FLAGS.out_dir}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
