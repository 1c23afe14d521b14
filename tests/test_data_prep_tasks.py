"""A build split over tasks (--num_tasks / --task_index, then --finalize) equals the one-host build."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import data_prep_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
from csvr_jax.data import records
from data_prep import builder


def _read_all(dataset_dir, split):
  src = records.open_split(dataset_dir, split)
  return [src[i] for i in range(len(src))]


def _spec(tree, out_dir, name):
  args = dict(a[2:].split('=', 1) for a in tree)
  return builder.BuildSpec(layout=args['layout'], videos_dir=args['videos_dir'], annotations=args['annotations'],
                           poses=args['poses'], out_dir=out_dir, name=name, shard_size=2, short_side=24)


def test_two_tasks_then_finalize_equal_one_host(tmp_path):
  tree = fx.ucf_tree(tmp_path)  # with bad videos: skipped.jsonl must come out the same too
  args = tree + [f'--out_dir={tmp_path}/shared', '--name=k', '--shard_size=2', '--short_side=24', '--num_tasks=2']
  cli = lambda *extra: subprocess.Popen([sys.executable, '-m', 'data_prep.build', *args, *extra], cwd=fx.REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  tasks = [cli(f'--task_index={i}') for i in range(2)]  # both at once, on one work folder
  outs = [p.communicate(timeout=120) for p in tasks]
  for p, (out, err) in zip(tasks, outs):
    assert p.returncode == 0, err[-2000:]
    assert 'run the same command with --finalize' in out
  done = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
  assert sorted(d['task_index'] for d in done) == [0, 1] and sum(d['videos'] for d in done) == 12
  assert not os.path.exists(tmp_path / 'shared' / 'k' / '1.0.0')  # tasks write no dataset
  final = cli('--finalize')
  out, err = final.communicate(timeout=120)
  assert final.returncode == 0, err[-2000:]
  split_build = json.loads(out.strip().splitlines()[-1])
  one_host = builder.build(_spec(tree, str(tmp_path / 'alone'), 'k'))
  drop = lambda s: {k: v for k, v in s.items() if k not in ('seconds', 'dataset_dir')}
  assert drop(split_build) == drop(one_host)
  for name in ('skipped.jsonl', 'summary.json'):
    assert os.path.exists(tmp_path / 'shared' / 'k' / name)
  assert open(tmp_path / 'shared' / 'k' / 'skipped.jsonl').read() == open(tmp_path / 'alone' / 'k' /
                                                                           'skipped.jsonl').read()
  assert open(os.path.join(split_build['dataset_dir'], 'fingerprint.json')).read() == open(
      os.path.join(one_host['dataset_dir'], 'fingerprint.json')).read()
  for split in ('train', 'test'):
    a, b = _read_all(split_build['dataset_dir'], split), _read_all(one_host['dataset_dir'], split)
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):  # record for record, field for field
      assert ra.keys() == rb.keys()
      for key in ra:
        np.testing.assert_array_equal(np.asarray(ra[key]), np.asarray(rb[key]), err_msg=key)
  assert not os.path.exists(tmp_path / 'shared' / '.k.work')  # removed after finalising


def test_finalize_names_the_tasks_still_missing(tmp_path):
  tree = fx.ucf_tree(tmp_path, bad=False)
  spec = _spec(tree, str(tmp_path / 'out'), 'm')
  result = builder.build(spec, num_tasks=3, task_index=1)
  assert result['shards'] == 1 and result['videos'] == 2  # plan position 1 of 0..2 (test-0, train-0, train-1)
  with pytest.raises(RuntimeError, match=r'2 of 3 work shards are missing \(built by --task_index 0, 2 of'):
    builder.build(spec, num_tasks=3, finalize=True)
  with pytest.raises(ValueError, match='--task_index=3, --num_tasks=3'):
    builder.build(spec, num_tasks=3, task_index=3)
  for i in (0, 2):
    builder.build(spec, num_tasks=3, task_index=i)
  summary = builder.build(spec, num_tasks=3, finalize=True)
  assert summary['videos_ok'] == 6
  assert builder.build(spec, num_tasks=3, task_index=0)['already_built']  # a late task finds it done
