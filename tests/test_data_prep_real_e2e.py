"""A real video end to end: clean_and_jerk.mp4 and its real OpenPose output -> data_prep.build -> a few
pretraining steps at tiny widths -> export -> retrieval.

One video is one class; the second class is the same footage played backwards (the real detections in reverse
order), and each class has a test video: the last 150 frames, forwards and backwards. The dataset is as honest
as one video allows, so the test checks the machinery (records equal to the real poses, CoViAR key frames,
finite losses, an export that retrieval reads), not accuracy.
"""
import json
import os

import numpy as np
import pytest

import data_prep_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
import pretrain_fixtures  # tests/ is on sys.path
from csvr_jax import checkpoint
from csvr_jax.data import fingerprint
from csvr_jax.data import records
from data_prep import builder
from data_prep import poses as poses_lib
from data_prep import video_io

NAME = 'clean_and_jerk'


def _write_variant(frames, order, fps, pose_src, video_path, pose_dir):
  """A video of `frames[order]` and its OpenPose files: the real frame files, renumbered in that order."""
  with open(video_path, 'wb') as f:
    f.write(video_io.encode_video(frames[order], fps, 'libx264', gop=250, fixed_gop=False,
                                  options={'preset': 'ultrafast'}))
  stem = os.path.splitext(os.path.basename(video_path))[0]
  os.makedirs(pose_dir)
  for t, source_frame in enumerate(order):
    with open(os.path.join(pose_src, f'{NAME}_{source_frame:012d}_keypoints.json')) as f:
      text = f.read()
    with open(os.path.join(pose_dir, f'{stem}_{t:012d}_keypoints.json'), 'w') as f:
      f.write(text)


def _two_class_tree(real, root):
  """videos/{forward,backward}/*.mp4 + poses/ + a split list; the real file itself is the forward train video."""
  src = os.path.join(real, 'openpose', 'coco18_clean_and_jerk')
  videos, pose_root = root / 'videos', root / 'poses'
  for cls in ('forward', 'backward'):
    (videos / cls).mkdir(parents=True)
    (pose_root / cls).mkdir(parents=True)
  os.symlink(os.path.join(src, f'{NAME}.mp4'), videos / 'forward' / f'{NAME}.mp4')
  os.symlink(src, pose_root / 'forward' / NAME)
  import av  # pylint: disable=g-import-not-at-top
  with av.open(os.path.join(src, f'{NAME}.mp4')) as container:
    frames = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])
    fps = float(container.streams.video[0].average_rate)
  n = len(frames)
  variants = {'forward/last_half': np.arange(n // 2, n), 'backward/reversed': np.arange(n)[::-1],
              'backward/last_half_reversed': np.arange(n // 2, n)[::-1]}
  for rel, order in variants.items():
    _write_variant(frames, order, fps, src, str(videos / f'{rel}.mp4'), str(pose_root / rel))
  (root / 'split.txt').write_text(f'forward/{NAME}.mp4 train\nbackward/reversed.mp4 train\n'
                                  'forward/last_half.mp4 test\nbackward/last_half_reversed.mp4 test\n')
  return videos, pose_root, variants


def test_clean_and_jerk_build_pretrain_export_retrieve(tmp_path):
  real = fx.realformats_dir()
  videos, pose_root, variants = _two_class_tree(real, tmp_path)
  spec = builder.BuildSpec(layout='folder', videos_dir=str(videos), annotations=str(tmp_path / 'split.txt'),
                           poses=f'openpose:{pose_root}', out_dir=str(tmp_path / 'data'), name='clean_and_jerk',
                           short_side=40)
  summary = builder.build(spec)
  assert summary['videos_per_split'] == {'test': 2, 'train': 2} and summary['videos_skipped'] == 0
  assert summary['keyframes']['splits']['train']['mean_gop'] == 12  # the CoViAR default
  dataset_dir = summary['dataset_dir']
  assert records.class_names(dataset_dir) == ['backward', 'forward']
  real_poses, _ = poses_lib.load_poses('openpose', os.path.join(real, 'openpose'), 'coco18_clean_and_jerk.mp4',
                                       300, 340, 256)
  train = records.open_split(dataset_dir, 'train')
  by_id = {train[i]['video_id'].decode(): train[i] for i in range(len(train))}
  forward, backward = by_id[f'forward/{NAME}.mp4'], by_id['backward/reversed.mp4']
  np.testing.assert_array_equal(forward['poses'], real_poses)
  np.testing.assert_array_equal(backward['poses'], real_poses[variants['backward/reversed']])
  assert list(forward['keyframe_indices']) == list(range(0, 300, 12)) and forward['gop'] == 12
  assert fingerprint.read_fingerprint(dataset_dir)['preprocessing']['short_side'] == 40

  from csvr_jax.train import evaluate  # pylint: disable=g-import-not-at-top - the training stack, only here
  from csvr_jax.train import networks  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import pretrain  # pylint: disable=g-import-not-at-top
  c = pretrain_fixtures.tiny_config(dataset_dir)  # 4 + 4 frames, 32x32 crops, width 1/16, fast_compile
  c.data.stride = 4
  c.train.total_steps = 3
  c.checkpoint.every_steps = 3
  c.logging.image_every_steps = 100
  workdir = str(tmp_path / 'pretrain')
  loader, size = pretrain.make_loader(c)  # the Grain loader of --mode=pretrain on the built records
  assert size == 2
  # Initial weights from numpy (pretrain_fixtures.fast_init): flax's initialisers would add ~10 s of compiling.
  init = pretrain_fixtures.fast_init(networks.Networks(c))
  state, _ = pretrain.train(c, workdir, iter(loader), c.train.total_steps, init_variables=init)
  assert int(state.step) == 3
  lines = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [line['step'] for line in lines] == [1, 2, 3]
  assert all(np.isfinite(v) for line in lines for v in line.values())
  assert {'pose/d_loss', 'context/loss', 'video_rec/l2'} <= lines[-1].keys()
  export = checkpoint.export_mode(c, workdir)
  assert checkpoint.load_backbone_export(export)[1]['step'] == 3
  fp = fingerprint.read_fingerprint(dataset_dir)  # carried into the checkpoint and the export
  assert checkpoint.read_checkpoint_dataset(workdir, 3)['fingerprint'] == fp
  assert {k: checkpoint.read_export_meta(export)[k] for k in ('dataset', 'dataset_fingerprint')} == {
      'dataset': 'clean_and_jerk', 'dataset_fingerprint': fp}

  c.checkpoint.init_from = export
  c.data.num_eval_clips, c.eval.batch_size = 2, 8
  r = evaluate.retrieval_mode(c, str(tmp_path / 'retrieval'))
  recalls = [r[f'retrieval/R@{k}'] for k in (1, 5, 10, 20, 50)]
  assert recalls == sorted(recalls) and recalls[1] == 1.0  # 2 gallery videos, one per class: top 5 holds both
  assert r['knn/top1'] == r['retrieval/R@1'] and r['retrieval/R@1'] in (0.0, 0.5, 1.0)
  runs = json.load(open(tmp_path / 'retrieval' / 'results.json'))['runs']
  assert runs[0]['pretrain_step'] == 3 and runs[0]['metrics']['retrieval/R@1'] == pytest.approx(r['retrieval/R@1'])
  assert runs[0]['pretrain_preprocessing']['short_side'] == 40 and runs[0]['preprocessing_differences'] == []
