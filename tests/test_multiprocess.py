"""Real processes: two jax.distributed CPU processes (gloo) train in lockstep and hold identical parameters, and
their checkpoint resumes in one process only with a fresh data order (the one-line error first). (kill -9 between
checkpoints and a rerun: tests/test_elastic_resume.py.) Compiled steps are shared between the subprocesses through
a persistent compilation cache.

The processes train the pose and context branches (loss.branches), not the video branch: what two processes add
(each its own data shard, the context loss's all-gathered I-frame keys, global-batch means of every loss term and
of the BatchNorm statistics, a GAN's D and G updated in one step, a checkpoint written by both) is in those two;
the video branch, the largest of the three to trace and compile, adds none of it (its 8 == 1 device equality:
tests/test_pretrain.py). 174 -> 115 CPU-s on the 2-core VM."""
import os
import socket
import subprocess
import sys

import numpy as np

import test_elastic_resume as elastic  # tests/ is on sys.path
from csvr_jax import checkpoint

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pretrain_driver.py')
TIMEOUT = 900


env_and_data = elastic.env_and_data  # the same subprocess environment and toy dataset fixture


def _final_params(workdir):
  state, step = checkpoint.read_checkpoint_item(str(workdir))
  return state['params'], step


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_with_jax_distributed_hold_identical_params(env_and_data, tmp_path):
  env, data = env_and_data
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, DRIVER, 'dist', str(tmp_path), data, str(pid), str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
  outs = [p.communicate(timeout=TIMEOUT) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, f'{out[-2000:]}\n{err[-3000:]}'
    assert 'driver: done at step 2' in out
  a, b = (np.load(tmp_path / f'params_{pid}.npz') for pid in (0, 1))
  assert a.files == b.files and len(a.files) > 50
  for k in a.files:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  _, step = _final_params(tmp_path)
  assert step == 2

  # One process cannot take over the two processes' data shards: a one-line error says so and how to go on.
  refused = elastic.drive(env, 1, data, 4, f'{tmp_path},pose_context', check=False)
  assert refused.returncode != 0
  last = refused.stderr.strip().splitlines()[-1]
  assert last.startswith('csvr_jax.checkpoint.ResumeError: ') and (
      'the Grain iterator state was written by 2 processes and this run has 1: each process reads its own shard '
      'of the data, so the data order cannot follow a change in the number of processes; resume with 2 '
      'processes, or set config.checkpoint.resume_data_order=False') in last, refused.stderr[-2000:]
  fresh = elastic.drive(env, 1, data, 4, f'{tmp_path},fresh_data_order,pose_context')
  assert 'resumed from step 2' in fresh.stdout and 'the data order starts afresh' in fresh.stdout
  assert 'driver: done at step 4' in fresh.stdout and _final_params(tmp_path)[1] == 4
