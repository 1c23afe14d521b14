"""csvr_jax/data/grain_adapter.py: what it relies on in Grain still holds (a failure names the Grain version), no
process set-up at import, and worker processes exit when the process that reads the data is SIGKILLed."""
import os
import signal
import subprocess
import sys
import time

import grain
import numpy as np
import pytest

from csvr_jax.data import grain_adapter

HERE = os.path.dirname(os.path.abspath(__file__))
GRAIN = f'grain {grain_adapter.grain_version()}'


class _Probe(grain_adapter.SharedMemoryOutput):
  """batch_fn writing its rows with `empty`; reports the shared memory block it wrote into ('' if none)."""

  def __call__(self, rows):
    out = self.empty((len(rows), 3), np.int32)
    out[:] = np.asarray(rows, np.int32)[:, None]
    shm = getattr(out, 'shm', None)
    return {'x': out, 'written_to': shm.name if shm is not None else ''}


def _probe_batches(workers):
  grain_adapter.prepare_loader(workers)  # (3.: marks absl flags parsed for the workers)
  loader = grain.DataLoader(data_source=list(range(6)), operations=[grain.transforms.Batch(2, batch_fn=_Probe())],
                            sampler=grain.samplers.IndexSampler(6, shuffle=False, num_epochs=1),
                            shard_options=grain.sharding.NoSharding(), worker_count=workers)
  return list(loader)


def test_check_grain():
  grain_adapter.check_grain()


def test_worker_batches_are_written_into_the_shared_memory_they_are_handed_over_in():
  """2. and 1.: Grain tells the batch_fn in a worker to use shared memory, and passes that memory on uncopied."""
  in_process = _probe_batches(0)
  assert [b['written_to'] for b in in_process] == ['', '', ''] and type(in_process[0]['x']) is np.ndarray
  batches = _probe_batches(1)
  assert [b['x'][:, 0].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]
  for b in batches:
    assert b['written_to'], f'{GRAIN} no longer calls enable_shared_memory_output() on a batch_fn in its workers'
    received = getattr(b['x'], 'shm', None)
    assert received is not None and received.name == b['written_to'], (
        f'{GRAIN} copies a SharedMemoryArray batch from its workers instead of handing it over')


def test_iterator_state_files_name_the_process_count(tmp_path):
  """4.: one state file per process, named by its index and the process count, with the worker count."""
  loader = grain.DataLoader(data_source=list(range(6)), sampler=grain.samplers.IndexSampler(6, seed=0),
                            shard_options=grain.sharding.NoSharding(), worker_count=0)
  it = iter(loader)
  next(it)
  (tmp_path / 'data').mkdir()
  grain.checkpoint.CheckpointHandler().save(tmp_path / 'data', args=grain.checkpoint.CheckpointSave(it))
  counts = grain_adapter.saved_process_counts(str(tmp_path / 'data'))
  assert counts == {1: [0]}, f'{GRAIN} names iterator state files {sorted(os.listdir(tmp_path / "data"))}'
  with open(grain_adapter.state_file(str(tmp_path / 'data'), 0, 1)) as f:
    assert grain_adapter.state_worker_count(f.read()) == 0, f'{GRAIN}: DataLoader states lost their worker_count'
  assert grain_adapter.state_worker_count(it.get_state()) == 0
  assert grain_adapter.saved_process_counts(str(tmp_path / 'absent')) == {}
  assert grain_adapter.state_worker_count(iter(grain.MapDataset.range(3).to_iter_dataset()).get_state()) is None
  with pytest.raises(grain_adapter.GrainAdapterError, match=f'{GRAIN}: an iterator state is no longer JSON'):
    grain_adapter.state_worker_count(b'not json')


def test_no_process_setup_at_import_only_when_a_loader_is_built():
  code = ('from configs import base\n'
          'from csvr_jax.data import grain_adapter, pipeline\n'
          'before = grain_adapter.tune_malloc.cache_info().currsize\n'
          'pipeline.finetune_loader(base.get_config().data, [{}], "train", 1, seed=0, shard_index=0, shard_count=1,'
          ' num_workers=0)\n'
          'print(before, grain_adapter.tune_malloc.cache_info().currsize, grain_adapter.watch_parent())\n')
  p = subprocess.run([sys.executable, '-c', code], cwd=os.path.dirname(HERE), capture_output=True, text=True,
                     timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert p.returncode == 0, p.stderr[-2000:]
  assert p.stdout.split() == ['0', '1', 'None']  # tuned once the loader is built; no parent watch in a main process


def _alive(pid):
  """True while `pid` runs (a zombie counts as gone: it has exited, only its parent has not collected it)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


def test_workers_exit_when_the_training_process_is_killed(tmp_path):
  """SIGKILL of a process that reads pretraining batches with data.num_workers=2: no child outlives it by more
  than a few seconds (before the adapter's parent watch they ran on indefinitely)."""
  import pretrain_fixtures as fx  # pylint: disable=g-import-not-at-top
  dataset = fx.write_toy_dataset(tmp_path)
  p = subprocess.Popen([sys.executable, os.path.join(HERE, 'loader_driver.py'), dataset], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=dict(os.environ, XLA_FLAGS=''))
  try:
    line = p.stdout.readline().split()
    assert line[:2] == ['ready', str(p.pid)], (line, p.stderr.read()[-3000:] if p.poll() is not None else '')
    children = [int(x) for x in line[2:]]
    assert len(children) >= 2, children  # the two workers (and multiprocessing's resource tracker)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    start = time.monotonic()
    while any(map(_alive, children)) and time.monotonic() - start < 10:
      time.sleep(0.05)
    left = [pid for pid in children if _alive(pid)]
    waited = time.monotonic() - start
  finally:
    if p.poll() is None:
      p.kill()
  for pid in left:  # do not leave them behind when the test fails
    os.kill(pid, signal.SIGKILL)
  assert not left and waited < 5, f'{len(left)} of {len(children)} children alive {waited:.1f} s after SIGKILL'
  print(f'children of the killed process exited {waited:.2f} s after SIGKILL')
