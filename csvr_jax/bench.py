"""Benchmarks: `python -m csvr_jax.bench --report=flops` | `--what=pipeline` | `--what=finetune_step,pretrain_step`
| `--what=data_prep` | `--what=conv3d`.

finetune_step times the `--mode=finetune` step (with and without device augmentation; `--reference=torch`:
against torchvision doing the same work), pretrain_step the `--mode=pretrain` steps (steps.StepFns). Each prints
ratios against a reference measured in the same run; the work lives in csvr_jax/benchmarks/ (one module per
concern, shared helpers in common.py), this file only dispatches.
"""
import importlib
import sys

from absl import app
from absl import flags

from csvr_jax import xla_flags
xla_flags.set_default_xla_flags()  # before any JAX backend starts: benchmarks measure what training runs
# The step benchmarks' flags (--arch, --batch, ...) must exist before app.run parses argv.
from csvr_jax.benchmarks import common as _common  # pylint: disable=unused-import,wrong-import-position

flags.DEFINE_string('report', None, 'Analytic report: flops.')
flags.DEFINE_list('what', [], 'Measured benchmarks: pipeline, finetune_step, pretrain_step, data_prep, conv3d.')
FLAGS = flags.FLAGS

# name -> "module:function"; each function takes no arguments and reads its own flags.
BENCHMARKS = {
    'flops': 'csvr_jax.benchmarks.flops:main',
    'pipeline': 'csvr_jax.benchmarks.pipeline:main',
    'finetune_step': 'csvr_jax.benchmarks.steps:main',
    'pretrain_step': 'csvr_jax.benchmarks.steps:main',
    'data_prep': 'data_prep.bench:main',
    'conv3d': 'csvr_jax.benchmarks.conv3d:main',
}


def main(argv):
  del argv
  names = ([FLAGS.report] if FLAGS.report else []) + list(FLAGS.what)
  if not names:
    print('error: give --report=flops or --what=NAME[,NAME]', file=sys.stderr)
    sys.exit(2)
  done = set()
  for name in names:
    if name not in BENCHMARKS:
      print(f'error: unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}', file=sys.stderr)
      sys.exit(2)
    target = BENCHMARKS[name]
    if target in done:  # finetune_step and pretrain_step share one runner that reads --what itself
      continue
    done.add(target)
    module_name, func = target.split(':')
    getattr(importlib.import_module(module_name), func)()


if __name__ == '__main__':
  app.run(main)
