"""OpenPose COCO-18 / BODY-25 and Kinetics-skeleton parsing, person tracking, normalisation."""
import json
import os

import numpy as np
import pytest

from data_prep import poses


def _person(cx, cy, conf, joints=18):
  kp = np.zeros((joints, 3))
  kp[:, 0] = cx + np.linspace(-5, 5, joints)
  kp[:, 1] = cy + np.linspace(-20, 20, joints)
  kp[:, 2] = conf
  return kp


def _write_openpose(folder, stem, frames_people):
  os.makedirs(folder, exist_ok=True)
  for t, people in enumerate(frames_people):
    data = {'version': 1.3, 'people': [{'person_id': [-1], 'pose_keypoints_2d': p.reshape(-1).tolist()}
                                       for p in people]}
    with open(os.path.join(folder, f'{stem}_{t:012d}_keypoints.json'), 'w') as f:
      json.dump(data, f)


def test_body25_maps_to_coco18():
  body25 = np.arange(75, dtype=float)
  coco = poses.to_coco18(body25)
  assert coco.shape == (18, 3)
  np.testing.assert_array_equal(coco[7], body25[21:24])   # l_wrist is 7 in both
  np.testing.assert_array_equal(coco[8], body25[27:30])   # r_hip: BODY-25 index 9 (8 is MidHip)
  np.testing.assert_array_equal(coco[17], body25[54:57])  # l_ear: BODY-25 index 18
  with pytest.raises(poses.PoseError, match='51 values'):
    poses.to_coco18(np.zeros(51), 'x.json')


def test_openpose_video_tracks_the_confident_person(tmp_path):
  # Person A (confident) walks right; a faint person B stands elsewhere; frame 2 has nobody.
  # Written as BODY-25 (75 values per person).
  frames = [[_person(100 + 10 * t, 100, 0.9, 25), _person(300, 100, 0.3, 25)] for t in range(5)]
  frames[1] = frames[1][::-1]  # listing order must not matter
  frames[2] = []
  _write_openpose(str(tmp_path / 'cls' / 'v1'), 'v1', frames)
  got, source = poses.load_poses('openpose', str(tmp_path), 'cls/v1.avi', num_frames=6, width=400, height=200)
  assert source == 'openpose' and got.shape == (6, 18, 3) and got.dtype == np.float16
  assert np.all(got[2] == 0) and np.all(got[5] == 0)  # no person; beyond the pose files
  for t in (0, 1, 3, 4):
    assert abs(float(got[t, 0, 2]) - 0.9) < 1e-3  # the confident person in every frame
    centre_x = got[t, :, 0].astype(float).mean() * 400
    assert abs(centre_x - (100 + 10 * t)) < 2
  assert got[..., :2].max() <= 1 and got[..., :2].min() >= 0


def test_tracking_follows_nearest_centre_not_confidence():
  # The track starts at the most confident detection (frame 0, x=50) and then follows the nearest person,
  # even when a more confident one appears far away.
  frames = [[_person(50, 50, 0.95)], [_person(55, 50, 0.5), _person(300, 50, 0.9)], [_person(60, 50, 0.5)]]
  track = poses.track_person(frames)
  np.testing.assert_allclose(track[:, :, 0].mean(1), [50, 55, 60])


def test_normalise_pixels_and_already_normalised():
  p = np.zeros((2, 18, 3), np.float32)
  p[0, 0] = (320, 120, 0.8)
  p[0, 1] = (700, -5, 0.5)   # outside the frame: clipped
  p[1, 3] = (7, 7, 0.0)      # confidence 0: zeroed
  got = poses.normalise(p, 640, 240)
  np.testing.assert_allclose(got[0, 0], (0.5, 0.5, 0.8))
  np.testing.assert_allclose(got[0, 1], (1.0, 0.0, 0.5))
  assert np.all(got[1] == 0)
  q = np.zeros((1, 18, 3), np.float32)
  q[0, 0] = (0.25, 0.75, 0.9)
  np.testing.assert_allclose(poses.normalise(q, 640, 240)[0, 0], (0.25, 0.75, 0.9))


def test_kinetics_skeleton(tmp_path):
  rng = np.random.default_rng(0)
  a = rng.uniform(0.1, 0.3, (18, 2))
  b = rng.uniform(0.6, 0.9, (18, 2))
  data = {'data': [
      {'frame_index': 1, 'skeleton': [{'pose': b.reshape(-1).tolist(), 'score': [0.2] * 18},
                                      {'pose': a.reshape(-1).tolist(), 'score': [0.8] * 18}]},
      {'frame_index': 3, 'skeleton': [{'pose': (a + 0.01).reshape(-1).tolist(), 'score': [0.7] * 18}]},
  ], 'label': 'testifying', 'label_index': 354}
  (tmp_path / 'abcdefghijk.json').write_text(json.dumps(data))
  # Kinetics mirror file name -> the ST-GCN file named by YouTube id.
  got, source = poses.load_poses('kinetics_skeleton', str(tmp_path), 'train/x/abcdefghijk_000010_000020.mp4',
                                 num_frames=4, width=340, height=256)
  assert source == 'kinetics_skeleton'
  np.testing.assert_allclose(got[0, :, :2].astype(float), a, atol=1e-3)
  assert np.all(got[1] == 0) and np.all(got[3] == 0)
  np.testing.assert_allclose(got[2, :, :2].astype(float), a + 0.01, atol=1e-3)
  assert poses.load_poses('kinetics_skeleton', str(tmp_path), 'zzz.mp4', 4, 340, 256)[1] == 'none'


@pytest.mark.parametrize('content', ['{"people": [', '{"people": [{"pose_keypoints_2d": [1, 2]}]}',
                                     '{"nobody": []}', '[1, 2]'])
def test_malformed_openpose_raises(tmp_path, content):
  folder = tmp_path / 'v'
  folder.mkdir()
  (folder / 'v_000000000000_keypoints.json').write_text(content)
  with pytest.raises(poses.PoseError, match='v_000000000000_keypoints.json'):
    poses.load_poses('openpose', str(tmp_path), 'v.mp4', 2, 64, 64)


def test_parse_spec(tmp_path):
  assert poses.parse_spec('none') == ('none', '')
  assert poses.parse_spec(f'openpose:{tmp_path}') == ('openpose', str(tmp_path))
  for bad in ('openpose', 'mediapipe:/x', f'openpose:{tmp_path}/missing'):
    with pytest.raises(ValueError, match='--poses'):
      poses.parse_spec(bad)
