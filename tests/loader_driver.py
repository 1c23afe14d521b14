"""Subprocess driver of tests/test_grain_adapter.py: `python tests/loader_driver.py DATASET`.

Builds the pretraining loader exactly as `--mode=pretrain` does (pretrain.make_loader) with data.num_workers=2,
takes one batch, prints `ready PID` and the ids of its child processes (Grain's workers and multiprocessing's
resource tracker, from /proc), then waits to be killed.
"""
import os
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(__file__)]
os.environ['JAX_PLATFORMS'] = 'cpu'


def child_pids(pid):
  """Ids of the live processes whose parent is `pid`."""
  found = []
  for entry in os.listdir('/proc'):
    if entry.isdigit():
      try:
        with open(f'/proc/{entry}/stat') as f:
          state, ppid = f.read().rsplit(')', 1)[1].split()[:2]
      except OSError:  # exited meanwhile
        continue
      if int(ppid) == pid and state != 'Z':
        found.append(int(entry))
  return found


def main():
  import pretrain_fixtures as fx  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import pretrain  # pylint: disable=g-import-not-at-top
  c = fx.tiny_config(sys.argv[1])
  c.data.num_workers = 2
  loader, _ = pretrain.make_loader(c)
  it = iter(loader)
  next(it)
  print('ready', os.getpid(), *child_pids(os.getpid()), flush=True)
  time.sleep(600)


if __name__ == '__main__':  # (spawned workers import this module as __mp_main__)
  main()
