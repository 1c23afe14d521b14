"""MediaPipe -> OpenPose JSON: the landmark mapping (main venv), and the real extractor when its own venv exists."""
import glob
import json
import os
import subprocess

import numpy as np
import pytest

from data_prep import extract_poses
from data_prep import poses
from data_prep import synth_actions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The extractor runs in its own venv (mediapipe pins numpy<2); set MEDIAPIPE_PYTHON or create .venv-mediapipe.
MEDIAPIPE_PYTHON = os.environ.get('MEDIAPIPE_PYTHON', os.path.join(REPO, '.venv-mediapipe', 'bin', 'python'))


def test_blazepose_to_coco18_mapping():
  lm = np.zeros((33, 3))
  lm[:, 0] = np.arange(33) / 100  # x encodes the BlazePose index
  lm[:, 1] = 0.5
  lm[:, 2] = 0.9
  lm[11, 2], lm[12, 2] = 0.8, 0.6  # shoulders
  coco = extract_poses.blazepose_to_coco18(lm, width=200, height=100)
  assert coco.shape == (18, 3)
  index = np.round(coco[:, 0] / 2).astype(int)  # x * 200 / 2 = BlazePose index
  assert list(index[[0, 2, 3, 4, 5, 6, 7]]) == [0, 12, 14, 16, 11, 13, 15]  # nose, right arm, left arm
  assert list(index[8:]) == [24, 26, 28, 23, 25, 27, 5, 2, 8, 7]         # legs, eyes, ears
  assert coco[1, 0] == pytest.approx((11 + 12) / 2 * 2) and coco[1, 2] == pytest.approx(0.6)  # neck
  assert np.all(coco[:, 1] == 50)
  data = extract_poses.openpose_json([coco])  # what data_prep.poses reads back
  assert np.allclose(poses.to_coco18(data['people'][0]['pose_keypoints_2d']), coco, atol=1e-3)


@pytest.mark.skipif(not os.path.exists(MEDIAPIPE_PYTHON), reason='no MediaPipe venv (.venv-mediapipe)')
def test_mediapipe_finds_the_synthetic_figure(tmp_path):
  synth_actions.generate(str(tmp_path / 'raw'), num_classes=1, videos_per_class=1, frames=6, size=256, seed=0)
  out = tmp_path / 'poses'
  proc = subprocess.run([MEDIAPIPE_PYTHON, '-m', 'data_prep.extract_poses', '--backend=mediapipe',
                         f'--videos_dir={tmp_path}/raw/videos', f'--out_dir={out}'], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  files = sorted(glob.glob(f'{out}/Walk/v_Walk_g01_c01/*_keypoints.json'))
  assert len(files) == 6
  errors = []
  for path in files:
    found = json.load(open(path))['people']
    truth = json.load(open(path.replace(str(out), f'{tmp_path}/raw/poses')))['people']
    if found and truth:
      a = np.array(found[0]['pose_keypoints_2d']).reshape(18, 3)
      b = max((np.array(p['pose_keypoints_2d']).reshape(18, 3) for p in truth), key=lambda k: k[:, 2].mean())
      seen = b[:, 2] > 0
      errors.append(np.median(np.linalg.norm(a[seen, :2] - b[seen, :2], axis=1)))
  assert len(errors) >= 4 and np.median(errors) < 20  # pixels in a 256x256 frame


@pytest.mark.skipif(not os.path.exists(MEDIAPIPE_PYTHON), reason='no MediaPipe venv (.venv-mediapipe)')
def test_mediapipe_agrees_with_real_openpose_on_clean_and_jerk(tmp_path):
  # The number in docs/design.md (Data): mean 3.8 px over the joints both detect, 340x256, 300 frames.
  import data_prep_fixtures as fx  # pylint: disable=g-import-not-at-top - tests/ is on sys.path
  from data_prep import compare_poses  # pylint: disable=g-import-not-at-top
  src = os.path.join(fx.realformats_dir(), 'openpose', 'coco18_clean_and_jerk')
  videos = tmp_path / 'videos'
  videos.mkdir()
  os.symlink(os.path.join(src, 'clean_and_jerk.mp4'), videos / 'clean_and_jerk.mp4')
  proc = subprocess.run([MEDIAPIPE_PYTHON, '-m', 'data_prep.extract_poses', '--backend=mediapipe',
                         f'--videos_dir={videos}', f'--out_dir={tmp_path}/mediapipe'], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = compare_poses.compare(os.path.join(src, 'clean_and_jerk.mp4'), f'openpose:{src}',
                            f'openpose:{tmp_path}/mediapipe')
  assert r['frames'] == 300 and r['joints'] > 5000 and r['mean_px'] < 6
