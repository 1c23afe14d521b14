"""End to end: SynthActions -> build -> open_split; a UCF101-style tree with bad files; kill -9 and resume."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import data_prep_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
from csvr_jax.data import records
from data_prep import builder
from data_prep import synth_actions
from data_prep import video_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read_all(dataset_dir, split):
  src = records.open_split(dataset_dir, split)
  return [src[i] for i in range(len(src))]


def test_build_synth_actions(tmp_path):
  raw = str(tmp_path / 'raw')
  synth_actions.generate(raw, num_classes=3, videos_per_class=4, frames=12, size=32, seed=0, gop=5)
  spec = builder.BuildSpec(layout='ucf101', videos_dir=f'{raw}/videos', annotations=f'{raw}/ucfTrainTestlist',
                           poses=f'openpose:{raw}/poses', out_dir=str(tmp_path / 'out'), name='synth',
                           shard_size=5, reencode_gop=0)  # the codec's own key frames, compared below
  summary = builder.build(spec, workers=1)
  assert summary['videos_ok'] == 12 and summary['videos_skipped'] == 0 and summary['frames'] == 144
  assert summary['coverage']['train'] == dict(listed=9, found=9, decodable=9, too_short=0, bad_poses=0, usable=9,
                                              missing_poses=0)
  assert summary['fingerprint']['preprocessing']['gop_policy'] == "the codec's own key frames"
  d = summary['dataset_dir']
  assert records.class_names(d) == ['Walk', 'Run', 'Jump']
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  by_name = tfds.data_source('synth', split='test', data_dir=str(tmp_path / 'out'), try_gcs=False)
  assert len(by_name) == 3 and 'tensorflow' not in sys.modules  # the TFDS way of opening it works too
  test_list = open(f'{raw}/ucfTrainTestlist/testlist01.txt').read().split()
  for split, want_count in (('train', 9), ('test', 3)):
    recs = _read_all(d, split)
    assert len(recs) == want_count
    for r in recs:
      vid = r['video_id'].decode()
      assert (vid in test_list) == (split == 'test')
      assert r['label'] == ['Walk', 'Run', 'Jump'].index(vid.split('/')[0])
      assert r['num_frames'] == 12 and len(r['frames']) == 12 and r['pose_source'] == b'openpose'
      assert list(r['keyframe_indices']) == video_io.keyframe_indices(f'{raw}/videos/{vid}')
      assert r['keyframe_indices'][0] == 0 and r['gop'] == 0
      stem = os.path.basename(vid)[:-4]
      gt = json.load(open(f'{raw}/poses/{vid[:-4]}/{stem}_000000000004_keypoints.json'))['people']
      best = max(gt, key=lambda p: np.mean(p['pose_keypoints_2d'][2::3]))
      kp = np.array(best['pose_keypoints_2d']).reshape(18, 3)
      seen = kp[:, 2] > 0
      np.testing.assert_allclose(r['poses'][4][seen, :2].astype(float), kp[seen, :2] / 32, atol=2e-3)


def _cli(args, **kwargs):
  return subprocess.Popen([sys.executable, '-m', 'data_prep.build', *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs)


def test_cli_skips_bad_files(tmp_path):
  args = fx.ucf_tree(tmp_path) + [f'--out_dir={tmp_path}/out', '--name=ucf_bad', '--workers=2', '--shard_size=4',
                                '--reencode_gop=0']
  proc = _cli(args)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary['videos_ok'] == 5 and summary['videos_skipped'] == 7
  assert summary['skipped_by_kind'] == {'video': 6, 'pose': 1}
  assert 'ETA' in err or '<' in err  # tqdm progress bar with time left
  skipped = {s['video']: s for s in map(json.loads, open(f'{tmp_path}/out/ucf_bad/skipped.jsonl'))}
  assert set(skipped) == {'Alpha/v_Alpha_g10_c01.avi', 'Alpha/v_Alpha_g11_c01.avi', 'Beta/v_Beta_g12_c01.avi',
                          'Beta/v_Beta_g13_c01.avi', 'Beta/v_Beta_g14_c01.avi', 'Alpha/v_Alpha_g15_c01.avi',
                          'Alpha/v_Alpha_g02_c01.avi'}
  assert 'empty file' in skipped['Alpha/v_Alpha_g11_c01.avi']['reason']
  assert 'moov atom not found' in skipped['Beta/v_Beta_g12_c01.avi']['reason']  # FFmpeg's message, kept
  assert 'no video stream' in skipped['Beta/v_Beta_g13_c01.avi']['reason']
  assert '1 frame' in skipped['Beta/v_Beta_g14_c01.avi']['reason']
  assert 'not found' in skipped['Alpha/v_Alpha_g15_c01.avi']['reason']
  assert 'malformed OpenPose' in skipped['Alpha/v_Alpha_g02_c01.avi']['reason']
  assert {v: s['problem'] for v, s in skipped.items()} == {
      'Alpha/v_Alpha_g10_c01.avi': 'undecodable', 'Alpha/v_Alpha_g11_c01.avi': 'undecodable',
      'Beta/v_Beta_g12_c01.avi': 'undecodable', 'Beta/v_Beta_g13_c01.avi': 'undecodable',
      'Beta/v_Beta_g14_c01.avi': 'too_short', 'Alpha/v_Alpha_g15_c01.avi': 'missing',
      'Alpha/v_Alpha_g02_c01.avi': 'bad_poses'}
  # The coverage table: every train video has no pose file but one (malformed): 3 usable, all missing poses.
  assert summary['coverage'] == {
      'test': dict(listed=2, found=2, decodable=2, too_short=0, bad_poses=0, usable=2, missing_poses=2),
      'train': dict(listed=10, found=9, decodable=5, too_short=1, bad_poses=1, usable=3, missing_poses=3)}
  assert 'missing poses' in out and 'too short' in out
  d = summary['dataset_dir']
  test = _read_all(d, 'test')
  assert [r['video_id'].decode() for r in test] == ['Alpha/v_Alpha_g00_c01.avi', 'Beta/v_Beta_g00_c01.avi']
  assert [r['num_frames'] for r in test] == [8, 9] and [r['label'] for r in test] == [0, 1]
  assert [list(r['keyframe_indices']) for r in test] == [[0, 3, 6], [0, 3, 6]]
  train = _read_all(d, 'train')
  assert [r['num_frames'] for r in train] == [10, 11, 13]
  assert [list(r['keyframe_indices']) for r in train] == [[0, 4, 8], [0, 4, 8], [0, 5, 10]]
  assert all(r['pose_source'] == b'none' and not r['poses'].any() for r in train)  # no pose files: zeros
  rerun = _cli(args)  # the same command on a finished dataset reports it and changes nothing
  out2, _ = rerun.communicate(timeout=120)
  assert rerun.returncode == 0 and 'already built' in out2


def test_resume_after_kill_equals_uninterrupted(tmp_path):
  tree = fx.ucf_tree(tmp_path, bad=False)
  args = tree + [f'--out_dir={tmp_path}/out', '--name=resumed', '--workers=1', '--shard_size=1',
                 '--reencode_gop=4', '--keep_work']
  work = tmp_path / 'out' / '.resumed.work'
  proc = _cli(args, start_new_session=True)
  deadline = time.time() + 60
  while time.time() < deadline and not list(work.glob('*.pkl')):
    time.sleep(0.005)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.communicate()
  kept = {p.name: p.stat().st_mtime_ns for p in work.glob('*.pkl')}
  assert 1 <= len(kept) < 6, kept  # killed mid-way: some shards done, not all
  assert not (tmp_path / 'out' / 'resumed' / '1.0.0').exists()
  rerun = _cli(args)
  out, err = rerun.communicate(timeout=120)
  assert rerun.returncode == 0, err[-2000:]
  for name, mtime in kept.items():  # finished shards were kept, not redone
    assert (work / name).stat().st_mtime_ns == mtime
  d_resumed = json.loads(out.strip().splitlines()[-1])['dataset_dir']
  spec = builder.BuildSpec(layout='ucf101', videos_dir=tree[1].split('=', 1)[1],
                           annotations=tree[2].split('=', 1)[1], poses=tree[3].split('=', 1)[1],
                           out_dir=str(tmp_path / 'fresh'), name='fresh', shard_size=3, reencode_gop=4)
  d_fresh = builder.build(spec, workers=1)['dataset_dir']
  for split in ('train', 'test'):
    a, b = _read_all(d_resumed, split), _read_all(d_fresh, split)
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
      assert ra.keys() == rb.keys()
      for key in ra:
        np.testing.assert_array_equal(np.asarray(ra[key]), np.asarray(rb[key]), err_msg=key)
      assert list(ra['keyframe_indices']) == list(range(0, ra['num_frames'], 4)) and ra['gop'] == 4


def test_changed_options_refuse_a_stale_work_dir(tmp_path):
  tree = fx.ucf_tree(tmp_path, bad=False)
  base = dict(layout='ucf101', videos_dir=tree[1].split('=', 1)[1], annotations=tree[2].split('=', 1)[1],
              out_dir=str(tmp_path / 'out'), name='x')
  os.makedirs(builder.work_dir(builder.BuildSpec(**base)))
  class_names, tasks = builder.plan(builder.BuildSpec(**base))
  with open(os.path.join(builder.work_dir(builder.BuildSpec(**base)), 'work_key.txt'), 'w') as f:
    f.write('0' * 64)
  with pytest.raises(RuntimeError, match='other inputs, options'):
    builder.build(builder.BuildSpec(**base, jpeg_quality=50))
  assert class_names == ['Alpha', 'Beta'] and len(tasks) == 2


def _worker_pids(pid):
  """Pids of the spawned pool workers below `pid` (not multiprocessing's resource tracker)."""
  found = []
  for child in open(f'/proc/{pid}/task/{pid}/children').read().split():
    cmdline = open(f'/proc/{child}/cmdline', 'rb').read()
    if b'multiprocessing' in cmdline and b'resource_tracker' not in cmdline:
      found.append(int(child))
  return found


def test_dead_worker_is_recovered(tmp_path):
  # SIGKILL one worker mid-build, as a decoder segfault would: the build redoes its shard video by video in
  # isolation and ends with the same records as an undisturbed build.
  tree = fx.ucf_tree(tmp_path, bad=False)
  args = tree + [f'--out_dir={tmp_path}/out', '--name=crash', '--workers=2', '--shard_size=1', '--keep_work']
  work = tmp_path / 'out' / '.crash.work'
  proc = _cli(args)
  deadline, killed = time.time() + 90, False
  while time.time() < deadline and not killed and proc.poll() is None:
    started = list(work.glob('*.started')) if work.exists() else []
    pids = _worker_pids(proc.pid) if started else []
    if pids:
      os.kill(pids[0], signal.SIGKILL)
      killed = True
    time.sleep(0.005)
  out, err = proc.communicate(timeout=180)
  assert killed and proc.returncode == 0, err[-2000:]
  assert 'a worker process died' in err
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary['videos_ok'] == 6 and summary['videos_skipped'] == 0
  spec = builder.BuildSpec(layout='ucf101', videos_dir=tree[1].split('=', 1)[1],
                           annotations=tree[2].split('=', 1)[1], poses=tree[3].split('=', 1)[1],
                           out_dir=str(tmp_path / 'fresh'), name='fresh')
  d_fresh = builder.build(spec, workers=1)['dataset_dir']
  for split in ('train', 'test'):
    a, b = _read_all(summary['dataset_dir'], split), _read_all(d_fresh, split)
    assert [r['video_id'] for r in a] == [r['video_id'] for r in b]
    for ra, rb in zip(a, b):
      assert list(ra['frames']) == list(rb['frames']) and ra['num_frames'] == rb['num_frames']
