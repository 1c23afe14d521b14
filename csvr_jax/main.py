"""Entry point: `python -m csvr_jax.main --config=configs/k400.py --workdir=runs/k400 [--mode=...]`.

Thin on purpose (flax examples): parse flags, pick the mode function, call it with (config, workdir).
The logic lives in importable libraries so that Colab and tests can call it directly.
"""
import importlib
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from csvr_jax import xla_flags

xla_flags.set_default_xla_flags()  # before any JAX backend starts (NDHWC 3D convolutions on GPU)

# mode -> "module:function"; each function takes (config, workdir).
MODES = {
    'pretrain': 'csvr_jax.train.pretrain:run',
    'export': 'csvr_jax.checkpoint:export_mode',
    'finetune': 'csvr_jax.train.finetune:run',
    'retrieval': 'csvr_jax.train.evaluate:retrieval_mode',
    'linear_probe': 'csvr_jax.train.evaluate:linear_probe_mode',
    'demo': 'csvr_jax.demo:run',
    'experiment': 'csvr_jax.experiment:run',
    'study': 'csvr_jax.study.run:run',
}

config_flags.DEFINE_config_file('config', None, 'Path to a config file (optionally :variant), e.g. '
                                'configs/demo.py:quick.', lock_config=True)
flags.mark_flag_as_required('config')
flags.DEFINE_string('workdir', 'runs/default', 'Where checkpoints, logs and reports go.')
flags.DEFINE_string('mode', None, f'One of {sorted(MODES)}; default: config.mode.')
flags.DEFINE_bool('dry_run', False, 'Load the config, check the mode, print what would run, and exit.')
FLAGS = flags.FLAGS


class UserError(Exception):
  """An error whose message is the whole story: printed as one line, exit status 2."""


def resolve_mode(name):
  """Returns the mode's function, or raises UserError for an unknown or not yet implemented mode."""
  if name not in MODES:
    raise UserError(f'unknown --mode={name!r}; choose one of {sorted(MODES)}')
  module_name, func_name = MODES[name].split(':')
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name == module_name:
      raise UserError(f'mode {name!r} is not implemented yet ({module_name} does not exist)') from None
    raise
  if not hasattr(module, func_name):
    raise UserError(f'mode {name!r} is not implemented yet ({module_name}.{func_name} does not exist)')
  return getattr(module, func_name)


def parse_flags(argv):
  """absl's parser, but a bad flag, config file or config override is one line, not a traceback."""
  try:
    rest = FLAGS(argv)
    FLAGS.config.mode  # the config file loads lazily: force it here so its errors are caught too
    return rest
  except (AttributeError, KeyError) as e:
    print(f'error: unknown config key {str(e).strip(chr(34))} (every key is declared in configs/base.py)',
          file=sys.stderr)
  except (flags.Error, OSError, TypeError, ValueError) as e:
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    print(f'error: bad command line: {lines[-1] if lines else type(e).__name__}', file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = FLAGS.config
  mode = FLAGS.mode or config.mode
  try:
    run = resolve_mode(mode)
    from csvr_jax import validate  # pylint: disable=import-outside-toplevel  # imports JAX: after the flags
    validate.validate(config)
    if FLAGS.dry_run:
      print(f'dry run: mode={mode} workdir={FLAGS.workdir} vnet={config.model.vnet} '
            f'batch={config.train.batch_size} dataset_dir={config.data.dataset_dir or "-"}')
      return
    enable_compilation_cache(config.train.compilation_cache_dir, FLAGS.workdir)
    run(config, FLAGS.workdir)
  except Exception as e:  # pylint: disable=broad-except
    if type(e).__name__ == 'Preempted':  # train/loop.py: saved after SIGTERM; exit as a SIGTERM'd process does
      print(str(e), flush=True)
      sys.exit(128 + 15)
    if not is_user_facing(e):
      raise  # a bug: keep the traceback
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def enable_compilation_cache(cache_dir, workdir):
  """config.train.compilation_cache_dir (relative: under the workdir; '' off): the full CSVR step autotunes its 3D
  convolutions for minutes on a GPU, so a resumed run starts in seconds with the cache."""
  if not cache_dir:
    return
  from csvr_jax import parallel  # pylint: disable=import-outside-toplevel  # imports JAX: after flags and config
  parallel.enable_compilation_cache(os.path.join(workdir, cache_dir))


def is_user_facing(e):
  """Errors whose one-line message is the whole story: bad mode, config, data or a diverged run.

  Library code raises ValueError / FileNotFoundError with messages naming the config key ('config.x=...') or
  the file; the parallel and metrics modules have their own error types (imported lazily: they import JAX).
  """
  if isinstance(e, (UserError, FileNotFoundError)):
    return True
  names = {c.__name__ for c in type(e).__mro__}
  if names & {'ParallelConfigError', 'NonFiniteLossError', 'ResumeError'}:
    return True
  return isinstance(e, ValueError) and str(e).startswith('config.')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
