"""Subprocess driver of the resume tests: `python tests/elastic_driver.py DEVICES DATASET STEPS RUN [RUN ...]`,
RUN = WORKDIR[,OPTION...].

Pretrains the tiny config (pretrain_fixtures.tiny_config, checkpoints every 2 steps) for STEPS steps in one
process with DEVICES fake CPU devices, once per RUN in order, each resuming from its WORKDIR's latest checkpoint if
there is one, with the data iterator as --mode=pretrain builds it. Runs of one process share their jitted programs
(csvr_jax/train/shared_programs.py), as a study process's jobs do; each prints `driver: run WORKDIR` first.
Appends the video indices of every batch it takes to WORKDIR/batches.jsonl. Options: fresh_data_order:
config.checkpoint.resume_data_order=False. kill_after_2: SIGKILLs the process when the run asks for its third batch
once the step-2 checkpoint is on disk, i.e. between checkpoints. pose_context: the pose and context branches only
(loss.branches), the two-process test's config. wait=FILE: starts the run once FILE exists (the test makes it when
the run's checkpoint is in place).
"""
import json
import os
import signal
import sys
import time

PARENT = os.getppid()  # (before the slow imports: a wait= run gives up when the test that started it is gone)
DEVICES, DATASET, STEPS = sys.argv[1:4]
RUNS = [run.split(',') for run in sys.argv[4:]]
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

  def __init__(self, it, workdir, kill_after_2):
    self.it, self.workdir, self.kill_after_2, self.taken = it, workdir, kill_after_2, 0

  def __next__(self):
    self.taken += 1
    if self.kill_after_2 and self.taken == 3:
      done = os.path.join(self.workdir, 'checkpoints', '2')
      while not os.path.isdir(done):  # orbax renames the temporary folder when the save is complete
        time.sleep(0.05)
      time.sleep(0.5)
      os.kill(os.getpid(), signal.SIGKILL)
    batch = next(self.it)
    with open(os.path.join(self.workdir, 'batches.jsonl'), 'a') as f:
      f.write(json.dumps({'devices': jax.device_count(), 'video_index': batch['video_index'].tolist()}) + '\n')
    return batch

  def get_state(self):
    return self.it.get_state()

  def set_state(self, state):
    self.it.set_state(state)

  def start_prefetch(self):  # (grain.checkpoint's restore calls it)
    self.it.start_prefetch()


def train(workdir, options):
  """One run: pretrains the tiny config in `workdir` (resuming from its latest checkpoint) for STEPS steps."""
  unknown = {o for o in options if not o.startswith('wait=')} - {'fresh_data_order', 'kill_after_2', 'pose_context'}
  assert not unknown, unknown
  c = fx.tiny_config(DATASET)
  c.train.total_steps = int(STEPS)
  if 'pose_context' in options:
    c.loss.branches = ('pose', 'context')
  c.checkpoint.keep = 10
  c.logging.image_every_steps = 1000  # (image logging is covered in-process; here it would only add compiles)
  c.checkpoint.resume_data_order = 'fresh_data_order' not in options
  c.evals = ConfigDict()  # training steps only: no evaluators at the checkpoints
  os.makedirs(workdir, exist_ok=True)
  loader, _ = pretrain.make_loader(c)
  data = RecordBatches(iter(loader), workdir, 'kill_after_2' in options)
  state, _ = pretrain.train(c, workdir, data, c.train.total_steps, init_variables=fx.fast_init(networks.Networks(c)))
  print('driver: done at step', int(state.step.addressable_data(0)), flush=True)


def main():
  assert jax.device_count() == int(DEVICES) and jax.process_count() == 1
  for workdir, *options in RUNS:
    for wait in (o[len('wait='):] for o in options if o.startswith('wait=')):
      while not os.path.exists(wait):
        if os.getppid() != PARENT:  # the test that started this process is gone: so is the reason to wait
          sys.exit(f'driver: the parent process died while waiting for {wait}')
        time.sleep(0.1)
    print('driver: run', workdir, flush=True)
    train(workdir, options)


if __name__ == '__main__':
  main()
