"""Subprocess driver of the pretraining tests: `python tests/pretrain_driver.py MODE WORKDIR DATASET [PID PORT]`.

MODE: 'run' (4 joint steps, 8 fake devices), 'kill' (the same, but SIGKILLs itself once the step-2
checkpoint is on disk, i.e. between checkpoints), 'dist' (2 steps as process PID of two jax.distributed
processes on CPU with gloo, 2 devices each; writes its final params to WORKDIR/params_PID.npz).
"""
import os
import signal
import sys
import time

MODE, WORKDIR, DATASET = sys.argv[1:4]
DIST = MODE == 'dist'
os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={2 if DIST else 8}'
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(__file__)]

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top,wrong-import-position

import pretrain_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax.train import networks  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax.train import pretrain  # pylint: disable=g-import-not-at-top,wrong-import-position


class KillBetweenCheckpoints:
  """Hands out batches; asked for batch 3 (step 2 done and saved), waits for checkpoint 2 and kill -9s."""

  def __init__(self, it):
    self.it, self.n = it, 0

  def __next__(self):
    self.n += 1
    if self.n == 3:
      done = os.path.join(WORKDIR, 'checkpoints', '2')
      while not os.path.isdir(done):  # orbax renames the temporary folder when the save is complete
        time.sleep(0.05)
      time.sleep(0.5)
      os.kill(os.getpid(), signal.SIGKILL)
    return next(self.it)

  def get_state(self):
    return self.it.get_state()

  def set_state(self, s):
    self.it.set_state(s)


def main():
  c = fx.tiny_config(DATASET)
  if DIST:
    pid, port = int(sys.argv[4]), int(sys.argv[5])
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    c.distributed.update(coordinator_address=f'localhost:{port}', num_processes=2, process_id=pid)
    c.train.total_steps = 2
    c.logging.image_every_steps = 1000
    parallel.initialize(c)
    assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.device_count())
  else:
    c.logging.image_every_steps = 1000  # (image logging is covered in-process; here it would only add compiles)
  c.evals = ConfigDict()  # training steps only: the evaluators are covered in-process (tests/test_pretext.py)
  loader, _ = pretrain.make_loader(c)
  it = iter(loader)
  if MODE == 'kill':
    it = KillBetweenCheckpoints(it)
  state, _ = pretrain.train(c, WORKDIR, it, c.train.total_steps, init_variables=fx.fast_init(networks.Networks(c)))
  if DIST:
    flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
    np.savez(os.path.join(WORKDIR, f'params_{jax.process_index()}.npz'),
             **{jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in flat})
  print('driver: done at step', int(state.step.addressable_data(0)), flush=True)


if __name__ == '__main__':
  main()
