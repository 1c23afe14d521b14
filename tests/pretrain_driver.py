"""Subprocess driver of the two-process test: `python tests/pretrain_driver.py dist WORKDIR DATASET PID PORT`.

Process PID of two jax.distributed processes on CPU with gloo, 2 fake devices each: 2 steps of the tiny config's
pose and context branches (tests/test_multiprocess.py says why not the video branch); writes its final params to
WORKDIR/params_PID.npz.
"""
import os
import sys

MODE, WORKDIR, DATASET = sys.argv[1:4]
assert MODE == 'dist', MODE
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(__file__)]

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top,wrong-import-position

import pretrain_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax.train import networks  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax.train import pretrain  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  c = fx.tiny_config(DATASET)
  pid, port = int(sys.argv[4]), int(sys.argv[5])
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  c.distributed.update(coordinator_address=f'localhost:{port}', num_processes=2, process_id=pid)
  c.train.total_steps = 2
  c.loss.branches = ('pose', 'context')  # (elastic_driver.py's pose_context: the resumes read this checkpoint)
  c.logging.image_every_steps = 1000  # (image logging is covered in-process; here it would only add compiles)
  c.evals = ConfigDict()  # training steps only: the evaluators are covered in-process (tests/test_pretext.py)
  parallel.initialize(c)
  assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.device_count())
  loader, _ = pretrain.make_loader(c)
  state, _ = pretrain.train(c, WORKDIR, iter(loader), c.train.total_steps,
                            init_variables=fx.fast_init(networks.Networks(c)))
  flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
  np.savez(os.path.join(WORKDIR, f'params_{jax.process_index()}.npz'),
           **{jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in flat})
  print('driver: done at step', int(state.step.addressable_data(0)), flush=True)


if __name__ == '__main__':
  main()
