"""Subprocess driver of the resume tests: `python tests/elastic_driver.py DEVICES WORKDIR DATASET STEPS
[fresh_data_order | kill_after_2]`.

Pretrains the tiny config (pretrain_fixtures.tiny_config, checkpoints every 2 steps) for STEPS steps in one
process with DEVICES fake CPU devices, resuming from WORKDIR's latest checkpoint if there is one, with the
data iterator as --mode=pretrain builds it. Appends the video indices of every batch it takes to
WORKDIR/batches.jsonl. fresh_data_order: config.checkpoint.resume_data_order=False. kill_after_2: SIGKILLs
itself when asked for its third batch once the step-2 checkpoint is on disk, i.e. between checkpoints.
"""
import json
import os
import signal
import sys
import time

DEVICES, WORKDIR, DATASET, STEPS = sys.argv[1:5]
FRESH_DATA_ORDER = sys.argv[5:] == ['fresh_data_order']
KILL_AFTER_2 = sys.argv[5:] == ['kill_after_2']
os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={DEVICES}'
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(__file__)]

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top,wrong-import-position

import pretrain_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax.train import networks  # pylint: disable=g-import-not-at-top,wrong-import-position
from csvr_jax.train import pretrain  # pylint: disable=g-import-not-at-top,wrong-import-position


class RecordBatches:
  """Hands out the loader's batches, appending each one's 'video_index' to batches.jsonl."""

  def __init__(self, it):
    self.it, self.taken = it, 0

  def __next__(self):
    self.taken += 1
    if KILL_AFTER_2 and self.taken == 3:
      done = os.path.join(WORKDIR, 'checkpoints', '2')
      while not os.path.isdir(done):  # orbax renames the temporary folder when the save is complete
        time.sleep(0.05)
      time.sleep(0.5)
      os.kill(os.getpid(), signal.SIGKILL)
    batch = next(self.it)
    with open(os.path.join(WORKDIR, 'batches.jsonl'), 'a') as f:
      f.write(json.dumps({'devices': jax.device_count(), 'video_index': batch['video_index'].tolist()}) + '\n')
    return batch

  def get_state(self):
    return self.it.get_state()

  def set_state(self, state):
    self.it.set_state(state)

  def start_prefetch(self):  # (grain.checkpoint's restore calls it)
    self.it.start_prefetch()


def main():
  c = fx.tiny_config(DATASET)
  c.train.total_steps = int(STEPS)
  c.checkpoint.keep = 10
  c.logging.image_every_steps = 1000  # (image logging is covered in-process; here it would only add compiles)
  c.checkpoint.resume_data_order = not FRESH_DATA_ORDER
  c.evals = ConfigDict()  # training steps only: no evaluators at the checkpoints
  assert jax.device_count() == int(DEVICES) and jax.process_count() == 1
  os.makedirs(WORKDIR, exist_ok=True)
  loader, _ = pretrain.make_loader(c)
  state, _ = pretrain.train(c, WORKDIR, RecordBatches(iter(loader)), c.train.total_steps,
                            init_variables=fx.fast_init(networks.Networks(c)))
  print('driver: done at step', int(state.step.addressable_data(0)), flush=True)


if __name__ == '__main__':
  main()
