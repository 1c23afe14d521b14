"""Resume: a pretraining process killed (-9) between checkpoints and rerun ends bitwise equal to the uninterrupted
run. Elastic resume: a pretraining checkpoint written on 1 device resumes on 8 and one written on 8 resumes on 1
(one process each), going on with the same global batches and the same losses as the uninterrupted run; a data
iterator state that cannot follow (another number of data workers here, of processes in test_multiprocess.py)
stops with a one-line error that says how to go on, and config.checkpoint.resume_data_order=False goes on."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

import pretrain_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
from csvr_jax import checkpoint
from csvr_jax import main as main_lib
from csvr_jax import parallel
from csvr_jax.data import pipeline

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'elastic_driver.py')
STEPS = 6
TIMEOUT = 900


@pytest.fixture(scope='module')
def env_and_data(tmp_path_factory):
  env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0', JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  env.pop('XLA_FLAGS', None)
  return env, fx.write_toy_dataset(tmp_path_factory.mktemp('toy'))


def _command(devices, data, steps, runs):
  return [sys.executable, DRIVER, str(devices), data, str(steps), *map(str, runs)]


def drive(env, devices, data, steps, *runs, check=True):
  """Runs tests/elastic_driver.py (one process, `devices` fake CPU devices; `runs`: 'WORKDIR[,OPTION...]' each,
  one after another) -> CompletedProcess."""
  p = subprocess.run(_command(devices, data, steps, runs), env=env, capture_output=True, text=True, timeout=TIMEOUT)
  if check and p.returncode:
    raise AssertionError(f'driver on {devices} devices exited {p.returncode}:\n{p.stdout[-3000:]}\n'
                         f'{p.stderr[-3000:]}')
  return p


def run_output(stdout, workdir):
  """The part of a driver's stdout that its run in `workdir` printed."""
  return stdout.split(f'driver: run {workdir}\n')[1].split('driver: run ')[0]


def _resume_copy(src, dst, from_step):
  """dst = src's workdir as it was when checkpoint `from_step` was the latest (later ones and the logs gone)."""
  shutil.copytree(src, dst)
  for step in os.listdir(dst / 'checkpoints'):
    if step.isdigit() and int(step) > from_step:
      shutil.rmtree(dst / 'checkpoints' / step)
  for log in ('metrics.jsonl', 'batches.jsonl'):
    os.remove(dst / log)


def _jsonl(path):
  return [json.loads(line) for line in open(path)]


def _losses(workdir):
  """step -> {metric: value} of metrics.jsonl, without the timings."""
  return {r['step']: {k: v for k, v in r.items() if k != 'step' and not k.startswith('perf/')}
          for r in _jsonl(workdir / 'metrics.jsonl')}


def _assert_same_metrics(got, want, steps, rtol, atol):
  """got[step] == want[step] to tolerance for every metric; -> the largest relative difference."""
  assert sorted(got) == steps
  worst = 0.0
  for step in steps:
    assert got[step].keys() == want[step].keys() and 'video_pred/d_loss' in got[step]
    for k in got[step]:
      np.testing.assert_allclose(got[step][k], want[step][k], rtol=rtol, atol=atol, err_msg=f'step {step} {k}')
      worst = max(worst, abs(got[step][k] - want[step][k]) / max(abs(want[step][k]), 1e-6))
  return worst


def _flat_params(workdir):
  state, step = checkpoint.read_checkpoint_item(str(workdir))
  leaves = jax.tree_util.tree_flatten_with_path(state['params'])[0]
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}, step


def test_checkpoints_resume_after_kill9_and_on_another_number_of_devices(env_and_data, tmp_path):
  """Each resumed run is compared with the run that wrote its checkpoint and went on uninterrupted: on the same
  device count bitwise; 8 and 1 devices round differently (the 8 == 1 device test: ~1e-6 a step), and that
  difference grows over the steps (up to ~2e-4 relative on gradient norms 4 steps on), so the two steps after a
  resume on another device count are held to 2e-5, later ones to 1e-3. A lost optimizer state, rng or data
  position moves them by percents."""
  env, data = env_and_data
  straight, killed, to_8dev, to_1dev = (tmp_path / d for d in ('straight_1dev', 'killed', 'to_8dev', 'to_1dev'))
  # Three processes (each traces the programs once; a process's later runs share them): the uninterrupted run
  # (checkpoints 2, 4, 6), then in the same process a run killed (-9) between checkpoints 2 and 4.
  first = drive(env, 1, data, STEPS, straight, f'{killed},kill_after_2', check=False)
  assert first.returncode == -9, first.stderr[-2000:]
  assert 'driver: done at step 6' in run_output(first.stdout, straight)
  assert sorted(os.listdir(killed / 'checkpoints')) == ['2']
  # A fresh process reruns the killed run's command (bitwise the uninterrupted run), then goes on from the 8-device
  # run's step-4 checkpoint (8 -> 1 device) once it is there; the 8-device run goes on from the uninterrupted
  # run's step-2 checkpoint (1 -> 8 devices) beside it.
  _resume_copy(straight, to_8dev, from_step=2)
  go_down = tmp_path / 'to_1dev_ready'
  ones = subprocess.Popen(_command(1, data, STEPS, [killed, f'{to_1dev},wait={go_down}']), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    up = drive(env, 8, data, STEPS, to_8dev)  # writes checkpoints 4, 6
    _resume_copy(to_8dev, to_1dev, from_step=4)
    go_down.touch()
    out, err = ones.communicate(timeout=TIMEOUT)
  finally:
    if ones.poll() is None:
      ones.kill()
  assert ones.returncode == 0, f'{out[-3000:]}\n{err[-3000:]}'
  assert 'resumed from step 2' in run_output(out, killed)
  (want, want_step), (got, got_step) = _flat_params(straight), _flat_params(killed)
  assert want_step == got_step == STEPS and want.keys() == got.keys() and len(want) > 50
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  assert _losses(killed) == _losses(straight)  # steps 1-2 from the killed run, 3-6 from the rerun
  assert 'resumed from step 2' in up.stdout and 'resumed from step 4' in run_output(out, to_1dev)

  batches = [b['video_index'] for b in _jsonl(straight / 'batches.jsonl')]
  assert len(batches) == STEPS and len({tuple(b) for b in batches}) > 1
  assert [b['video_index'] for b in _jsonl(to_8dev / 'batches.jsonl')] == batches[2:]
  assert [b['video_index'] for b in _jsonl(to_1dev / 'batches.jsonl')] == batches[4:]
  assert {b['devices'] for b in _jsonl(to_8dev / 'batches.jsonl')} == {8}

  want_up, got_up, got_down = _losses(straight), _losses(to_8dev), _losses(to_1dev)
  up_near = _assert_same_metrics({s: got_up[s] for s in (3, 4)}, want_up, [3, 4], rtol=2e-5, atol=1e-5)
  up_far = _assert_same_metrics({s: got_up[s] for s in (5, 6)}, want_up, [5, 6], rtol=1e-3, atol=1e-4)
  down_near = _assert_same_metrics(got_down, got_up, [5, 6], rtol=2e-5, atol=1e-5)
  final = [checkpoint.read_checkpoint_item(str(d))[0]['params'] for d in (to_8dev, to_1dev)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *final)
  print(f'largest relative metric difference: 1 -> 8 devices {up_near:.1e} (2 steps), {up_far:.1e} (3-4 steps); '
        f'8 -> 1 {down_near:.1e} (2 steps)')


# ---------------------------------------------------------------------- what the iterator state cannot follow
def _state(mesh, value):
  return parallel.replicate({'params': {'w': np.full(3, value, np.float32)}, 'step': np.int32(value)}, mesh)


def _loader_iter(dataset, workers):
  return iter(pipeline.pretrain_loader(fx.tiny_config().data, dataset, 'train', 2, seed=0, num_workers=workers))


def test_a_changed_worker_count_is_one_line_and_a_fresh_data_order_goes_on(tmp_path):
  data = fx.write_toy_dataset(tmp_path / 'toy')
  mesh = parallel.make_mesh(ConfigDict(dict(mesh=(('data', -1),))))
  it = _loader_iter(data, 0)
  first = next(it)['video_index']
  ckpt = checkpoint.TrainCheckpointer(str(tmp_path / 'run'), keep=2)
  ckpt.save(1, _state(mesh, 1), it)
  ckpt.save(2, _state(mesh, 2))  # saved without its data iterator
  ckpt.close()
  target = checkpoint.abstract_like(_state(mesh, 0))
  ckpt = checkpoint.TrainCheckpointer(str(tmp_path / 'run'), keep=2)
  with pytest.raises(checkpoint.ResumeError) as e:
    ckpt.restore(target, _loader_iter(data, 1), step=1)
  message = str(e.value)
  assert '\n' not in message and main_lib.is_user_facing(e.value)
  assert ('checkpoints/1/data: the Grain iterator state was written with 0 data worker processes per process and '
          'this run has 1 (config.data.num_workers); resume with config.data.num_workers=0, or set '
          'config.checkpoint.resume_data_order=False') in message
  with pytest.raises(checkpoint.ResumeError, match='checkpoints/2/data: no data iterator state in this checkpoint'):
    ckpt.restore(target, _loader_iter(data, 0), step=2)
  fresh = _loader_iter(data, 0)
  state = ckpt.restore(target, fresh, step=1, resume_data_order=False)
  assert int(state['step']) == 1 and next(fresh)['video_index'].tolist() == first.tolist()  # from the start
  resumed = _loader_iter(data, 0)
  ckpt.restore(target, resumed, step=1)
  assert next(resumed)['video_index'].tolist() != first.tolist()
  ckpt.close()
