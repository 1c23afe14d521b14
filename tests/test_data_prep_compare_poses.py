"""data_prep.compare_poses: mean pixel distance over the joints both sources detect."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import data_prep_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
from data_prep import compare_poses


def test_mean_joint_distance_against_a_loop():
  rng = np.random.default_rng(0)
  a = np.concatenate([rng.uniform(0, 300, (12, 18, 2)), rng.uniform(0, 1, (12, 18, 1))], axis=-1)
  b = np.concatenate([rng.uniform(0, 300, (10, 18, 2)), rng.uniform(0, 1, (10, 18, 1))], axis=-1)
  a[a[..., 2] < 0.2, 2] = 0
  b[3] = 0  # a frame where b found nobody
  got = compare_poses.mean_joint_distance(a, b, min_confidence=0.1)
  dists, per_joint = [], {j: [] for j in range(18)}
  for t in range(10):  # the shorter track
    for j in range(18):
      if a[t, j, 2] > 0.1 and b[t, j, 2] > 0.1:
        d = ((a[t, j, 0] - b[t, j, 0]) ** 2 + (a[t, j, 1] - b[t, j, 1]) ** 2) ** 0.5
        dists.append(d)
        per_joint[j].append(d)
  assert got['joints'] == len(dists) and got['frames'] == 9
  assert got['mean_px'] == pytest.approx(np.mean(dists)) and got['median_px'] == pytest.approx(np.median(dists))
  assert got['per_joint']['r_wrist'] == pytest.approx(np.mean(per_joint[4]))
  nobody = compare_poses.mean_joint_distance(a, np.zeros_like(a))
  assert nobody['mean_px'] is None and nobody['joints'] == 0


def test_cli_on_the_real_openpose_file_against_a_shifted_copy(tmp_path):
  real = fx.realformats_dir()
  src = os.path.join(real, 'openpose', 'coco18_clean_and_jerk')
  shifted = tmp_path / 'clean_and_jerk'
  shifted.mkdir()
  for name in os.listdir(src):
    if name.endswith('_keypoints.json'):
      data = json.load(open(os.path.join(src, name)))
      for person in data['people']:
        kp = np.array(person['pose_keypoints_2d']).reshape(-1, 3)
        kp[kp[:, 2] > 0, :2] += (3.0, -4.0)  # 5 px for every detected joint
        person['pose_keypoints_2d'] = kp.reshape(-1).tolist()
      (shifted / name).write_text(json.dumps(data))
  proc = subprocess.run([sys.executable, '-m', 'data_prep.compare_poses', f'--video={src}/clean_and_jerk.mp4',
                         f'--poses_a=openpose:{src}', f'--poses_b=openpose:{tmp_path}'], cwd=fx.REPO,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  assert r['mean_px'] == pytest.approx(5.0, abs=1e-3) and r['frames'] == 300 and (r['width'], r['height']) == (340,
                                                                                                               256)
  assert r['joints'] == r['detected_a'] == r['detected_b'] > 5000
