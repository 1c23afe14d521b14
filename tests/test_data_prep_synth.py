"""SynthActions: reproducible files, separable motion classes, poses aligned with the drawn figure."""
import filecmp
import os

import numpy as np
import pytest

from csvr_jax.data import records
from data_prep import synth_actions
from data_prep import synth_figure
from data_prep import video_io

_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))


def _true_joints(name, params):
  """(F, 18, 2) noise-free joints of one video, without rendering."""
  return np.stack([synth_figure.skeleton(synth_actions.motion_angles(name, params, i / params['fps']),
                                         params['height'], params['base_x'], params['ground_y'],
                                         params['width_factor'], params['facing'])
                   for i in range(params['frames'])])


def _motion_descriptor(joints, height):
  """Mirror-invariant summary of a joint trajectory: spread and mean height of each joint around the hips."""
  hips = joints[:, [8, 11]].mean(1)
  rel = (joints - hips[:, None]) / height
  rel[..., 0] = np.abs(rel[..., 0])
  return np.concatenate([rel.std(0).reshape(-1), rel.mean(0)[:, 1],
                         [np.abs(np.diff(hips[:, 0])).mean() / height, hips[:, 1].std() / height]])


def test_motion_classes_are_separable():
  # Nearest class centroid of trajectory descriptors, on videos with fresh random size/position/facing/speed/
  # phase: the ten motions must be told apart (a tiny 3D CNN then has a real motion signal to learn).
  names = synth_actions.class_names(10)
  data = {}
  for split, offset in (('train', 0), ('test', 100)):
    data[split] = [(_motion_descriptor(_true_joints(name, p), p['height']), c)
                   for c, name in enumerate(names) for k in range(3)
                   for p in [synth_actions.video_params(np.random.default_rng([5, c, k + offset]), 64, 32, 25)]]
  x = np.stack([d for d, _ in data['train']])
  centroids = np.stack([x[[c == i for _, c in data['train']]].mean(0) for i in range(10)])
  scale = x.std(0) + 1e-6
  predicted = [np.argmin((((centroids - d) / scale) ** 2).sum(1)) for d, _ in data['test']]
  accuracy = np.mean([p == c for p, (_, c) in zip(predicted, data['test'])])
  assert accuracy >= 0.9, accuracy


def test_generate_is_reproducible_and_ucf_like(tmp_path):
  kw = dict(num_classes=2, videos_per_class=4, frames=8, size=32, seed=3, gop=4)
  synth_actions.generate(str(tmp_path / 'a'), **kw)
  synth_actions.generate(str(tmp_path / 'b'), **kw)
  lists = tmp_path / 'a' / 'ucfTrainTestlist'
  assert (lists / 'classInd.txt').read_text() == '1 Walk\n2 Run\n'
  assert (lists / 'testlist01.txt').read_text().split() == ['Walk/v_Walk_g01_c01.mp4', 'Run/v_Run_g01_c01.mp4']
  assert (lists / 'trainlist02.txt').read_text().splitlines()[0] == 'Walk/v_Walk_g01_c01.mp4 1'
  for rel in ('videos/Run/v_Run_g03_c01.mp4', 'poses/Walk/v_Walk_g02_c01/v_Walk_g02_c01_000000000005_keypoints.json'):
    assert filecmp.cmp(tmp_path / 'a' / rel, tmp_path / 'b' / rel, shallow=False), rel
  video = str(tmp_path / 'a' / 'videos' / 'Run' / 'v_Run_g03_c01.mp4')
  assert video_io.keyframe_indices(video) == [0, 4]  # H.264 with real I-frames at most `gop` apart
  assert len(os.listdir(tmp_path / 'a' / 'poses' / 'Run' / 'v_Run_g03_c01')) == 8


def test_pose_matches_drawn_figure():
  rng = np.random.default_rng(0)
  params = synth_actions.video_params(rng, 64, 6, 25)
  background = synth_actions.scene(3, rng, 64)
  frames, joints = synth_actions.render('Squat', params, background)
  assert frames.shape == (6, 64, 64, 3) and joints.shape == (6, 18, 2)
  for frame, j in zip(frames, joints):
    for joint in (1, 9, 12):  # neck (torso), knees (thick legs): the figure, not the background, is there
      x, y = np.round(j[joint]).astype(int)
      assert np.abs(frame[y, x].astype(int) - background[y, x]).sum() > 30
  poses = synth_actions.openpose_frames(joints, 64, np.random.default_rng(1))
  kp = np.array(max(poses[0]['people'], key=lambda p: np.mean(p['pose_keypoints_2d'][2::3]))['pose_keypoints_2d'])
  kp = kp.reshape(18, 3)
  seen = kp[:, 2] > 0
  assert seen.sum() >= 12 and np.abs(kp[seen, :2] - joints[0][seen]).max() < 2.0  # small noise only


def test_context_ties_scene_to_class_partially():
  # With context=1 every video of a class shows the class's scene; with 0 the scene is drawn at random.
  rng = np.random.default_rng(0)
  for context, low, high in ((1.0, 1.0, 1.0), (0.5, 0.45, 0.65), (0.0, 0.0, 0.2)):
    own = np.mean([synth_actions.choose_scene(label, context, rng) == label for label in range(10)
                   for _ in range(100)])
    assert low <= own <= high, (context, own)  # 0.5 -> 0.5 + 0.5 / 10 own-scene by chance
  a, b = synth_actions.scene(0, np.random.default_rng(0), 32), synth_actions.scene(1, np.random.default_rng(0), 32)
  assert np.abs(a.astype(int) - b).mean() > 10  # scene types look different


def test_bad_arguments():
  with pytest.raises(ValueError, match='--classes'):
    synth_actions.class_names(99)
  with pytest.raises(ValueError, match='--size'):
    synth_actions.generate('/nonexistent', size=31)


def test_generate_and_build_is_idempotent(tmp_path):
  kw = dict(num_classes=2, videos_per_class=4, frames=6, size=32)
  d = synth_actions.generate_and_build(str(tmp_path), **kw)
  src = records.open_split(d, 'train')
  assert len(src) == 6 and records.class_names(d) == ['Walk', 'Run'] and src[0]['pose_source'] == b'openpose'
  stamp = os.path.getmtime(os.path.join(d, 'dataset_info.json'))
  assert synth_actions.generate_and_build(str(tmp_path), **kw) == d  # reused
  assert os.path.getmtime(os.path.join(d, 'dataset_info.json')) == stamp
  d2 = synth_actions.generate_and_build(str(tmp_path), **dict(kw, frames=8))  # other arguments: rebuilt
  assert d2 == d and records.open_split(d2, 'test')[0]['num_frames'] == 8
