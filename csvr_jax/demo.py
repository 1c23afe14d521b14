"""`--mode=demo` (configs/demo.py): the embedded default, end to end on a CPU.

1. SynthActions: generated and built into a TFDS dataset under `config.demo.data_dir` on first use (cached:
   the next run reuses it).
2. Pretraining with the same budget (`config.train.stages`) for full CSVR and for the context-matching branch
   alone (the paper's Table I ablation), each in workdir/pretrain_<method>/, then exported (csvr_jax/experiment.py).
3. For CSVR, context-only and random initialisation (the paper's "from scratch", exported to
   workdir/random_init/export like the pretrained backbones): linear probe, retrieval (R@k, kNN) and a short
   finetune, each in workdir/eval_<method>[_<features>]/, with the V-Network's features and, for the methods
   that have them, the paper's f_i (config.demo.features).
4. All runs merged into workdir/results.json; workdir/report.md with the table and plots.

Every stage resumes: a rerun with the same workdir skips finished pretraining (its checkpoint is complete) and
evaluations whose results are recorded.
"""
import os

from csvr_jax import experiment
from csvr_jax import report

# (method, the loss branches its pretraining uses (none: random initialisation), downstream features it has).
METHODS = (
    ('CSVR', ('pose', 'context', 'video'), ('vnet', 'fi')),
    ('Context only', ('context',), ('vnet',)),
    ('Random init', (), ('vnet', 'fi')),
)


def dataset_dir(config):
  """Generates and builds SynthActions unless `config.data.dataset_dir` points at a dataset already."""
  if config.data.dataset_dir:
    return config.data.dataset_dir
  from data_prep import synth_actions  # deferred: data_prep is only needed when the dataset is missing
  d = config.demo
  return synth_actions.generate_and_build(d.data_dir, num_classes=d.classes, videos_per_class=d.videos_per_class,
                                          frames=d.frames, size=d.size, seed=config.seed, context=d.context,
                                          short_side=config.data.short_side)


def enable_compilation_cache(cache_dir):
  """XLA compilations dominate a CPU demo; the three methods share shapes (and a rerun shares everything), so a
  persistent cache turns repeated compilations into disk reads."""
  from csvr_jax import parallel  # deferred: keep `--dry_run` and config errors free of JAX start-up
  parallel.enable_compilation_cache(cache_dir, min_compile_time_secs=0.5)


def features_of(config, method):
  """The downstream features the demo evaluates `method` with: its own, among config.demo.features."""
  _, _, features = next(m for m in METHODS if m[0] == method)
  return tuple(f for f in features if f in config.demo.features)


def run_method(config, method, workdir):
  """One method end to end (pretraining and export unless random init, then its evaluations); returns its
  eval workdirs."""
  _, branches, _ = next(m for m in METHODS if m[0] == method)
  return experiment.run_method(config, workdir, method, branches, features_of(config, method))


def eval_dirs(config, workdir):
  """Every eval workdir of the demo's methods (as experiment.run_method names them)."""
  return [os.path.join(workdir, '_'.join(p for p in ('eval', experiment.slug(m), f if f != 'vnet' else '') if p))
          for m, _, _ in METHODS for f in features_of(config, m)]


def process_groups(processes):
  """The methods of each process: CSVR (the longest) in this one, the others spread over the rest, the
  cheapest first in its process (random init: its evaluations compile the programs every method shares)."""
  n = max(1, min(processes, len(METHODS), os.cpu_count() or 1))
  if n == 1:
    return [[m for m, _, _ in METHODS]]
  rest = [m for m, b, _ in METHODS if not b] + [m for m, b, _ in METHODS[1:] if b]
  return [[METHODS[0][0]]] + [rest[i::n - 1] for i in range(n - 1)]


def _child(config, methods, workdir):
  """Entry of a spawned process: a fresh interpreter, so it sets up what `python -m csvr_jax.main` does."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from csvr_jax import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.set_default_xla_flags()
  flags.FLAGS.mark_as_parsed()  # libraries (Grain) read absl flags; nothing here parses a command line
  enable_compilation_cache(os.path.join(config.demo.data_dir, 'jax_cache'))
  for method in methods:
    run_method(config, method, workdir)


def run(config, workdir):
  """The demo (module docstring). With config.demo.processes > 1 the methods run in parallel processes
  (`process_groups`): the same computations, seeds and budgets as one after another, on more cores; the
  processes share the persistent compile cache."""
  import multiprocessing  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  enable_compilation_cache(os.path.join(config.demo.data_dir, 'jax_cache'))
  config.data.dataset_dir = dataset_dir(config)
  print(f'demo: dataset {config.data.dataset_dir}')
  groups = process_groups(config.demo.processes)
  ctx = multiprocessing.get_context('spawn')  # fork after JAX started is unsafe
  children = [ctx.Process(target=_child, args=(config, g, workdir), daemon=True) for g in groups[1:]]
  for p, g in zip(children, groups[1:]):
    p.start()
    print(f'demo: {", ".join(g)} in process {p.pid}', flush=True)
  for method in groups[0]:
    run_method(config, method, workdir)
  for p, g in zip(children, groups[1:]):
    p.join()
    if p.exitcode != 0:
      raise RuntimeError(f'demo: the process of {", ".join(g)} failed (exit code {p.exitcode}; its error is above)')
  written = experiment.merge_results(workdir, eval_dirs(config, workdir))
  print(f'demo: report {os.path.join(workdir, report.REPORT_FILE)} ({len(written)} plots)')
