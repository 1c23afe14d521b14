"""`--mode=demo` (configs/demo.py): the embedded default, end to end on a CPU.

1. SynthActions: generated and built into a TFDS dataset under `config.demo.data_dir` on first use (cached:
   the next run reuses it).
2. Pretraining with the same budget (`config.train.stages`) for full CSVR and for the context-matching branch
   alone (the paper's Table I ablation), each in workdir/pretrain_<method>/, then exported.
3. For CSVR, context-only and random initialisation (the paper's "from scratch", exported to
   workdir/random_init/export like the pretrained backbones): linear probe, retrieval (R@k, kNN) and a short
   finetune, each in workdir/eval_<method>/.
4. All runs merged into workdir/results.json; workdir/report.md with the table and plots.

Every stage resumes: a rerun with the same workdir skips finished pretraining (its checkpoint is complete) and
evaluations whose results are recorded.
"""
import os

from csvr_jax import checkpoint
from csvr_jax import report

# method -> the loss branches its pretraining uses (None: no pretraining, random initialisation).
METHODS = (
    ('CSVR', ('pose', 'context', 'video')),
    ('Context only', ('context',)),
    ('Random init', None),
)


def _slug(method):
  return method.lower().replace(' ', '_')


def dataset_dir(config):
  """Generates and builds SynthActions unless `config.data.dataset_dir` points at a dataset already."""
  if config.data.dataset_dir:
    return config.data.dataset_dir
  from data_prep import synth_actions  # deferred: data_prep is only needed when the dataset is missing
  d = config.demo
  return synth_actions.generate_and_build(d.data_dir, num_classes=d.classes, videos_per_class=d.videos_per_class,
                                          frames=d.frames, size=d.size, seed=config.seed, context=d.context,
                                          short_side=config.data.short_side)


def pretrain_config(config, branches):
  """The demo config restricted to `branches`, with the same step budget: a stage left without any active
  loss gives its steps to the last remaining stage, so every method trains as many steps; a stage whose
  remaining losses equal the previous stage's joins it (same computation: one compiled step, not two)."""
  from configs import base  # the stage constructor lives with the config defaults
  c = config.copy_and_resolve_references()
  c.loss.branches = tuple(branches)
  kept, spare = [], 0
  for s in c.train.stages:
    losses = [l for l in s.losses if l in branches]
    if kept and losses == kept[-1][2] and s.steps >= 0 and kept[-1][1] >= 0:
      kept[-1][1] += s.steps
      kept[-1][3] += [n for n in s.trainable if n not in kept[-1][3]]
    elif losses:
      kept.append([s.name, s.steps, losses, list(s.trainable)])
    else:
      spare += s.steps
  if kept[-1][1] >= 0:  # -1 means "the rest of total_steps" and already absorbs the spare steps
    kept[-1][1] += spare
  c.train.stages = tuple(base.stage(*k) for k in kept)
  return c


def pretrain_and_export(config, workdir):
  """Pretrains (resuming if interrupted) and exports the final V-Network; returns the export dir.

  The export is written from the final state in memory: the same arrays `--mode=export` would read back from
  the final checkpoint (which pretraining has just written), without restoring the whole TrainState."""
  from csvr_jax.train import pretrain  # deferred: imports the whole training stack
  export_dir = os.path.join(workdir, 'export')
  if not os.path.exists(os.path.join(export_dir, checkpoint.META_FILE)):
    state, _ = pretrain.run(config, workdir)
    step = int(state.step)
    meta = checkpoint.export_meta(config, step, checkpoint.checkpoint_source(workdir, step))
    meta.update(report.pretext_meta(workdir, step))  # Table II's pretext metrics reach the downstream runs
    checkpoint.save_backbone_export(export_dir, pretrain.vnet_variables(state), meta)
    print(f'demo: exported V-Network {config.model.vnet} (step {step}) to {os.path.abspath(export_dir)}')
  return export_dir


def random_init_export(config, workdir):
  """The "from scratch" backbone (backbone_init's random initialisation, seed config.seed) written as an export
  like the pretrained ones: the three methods then feed identical programs (the export stores every array as
  float32, the freshly initialised BatchNorm counter is int32), so the evaluations compile once for all."""
  from csvr_jax.train import backbone_init  # deferred with the training stack
  export_dir = os.path.join(workdir, 'export')
  if not os.path.exists(os.path.join(export_dir, checkpoint.META_FILE)):
    c = config.copy_and_resolve_references()
    c.checkpoint.init_from = ''
    _, variables, _ = backbone_init.load_backbone(c)
    checkpoint.save_backbone_export(export_dir, variables,
                                    checkpoint.export_meta(c, None, f'random initialisation, seed {c.seed}'))
  return export_dir


def evaluate_method(config, method, init_from, workdir):
  """Linear probe, retrieval and a short finetune of one backbone init; results in workdir/results.json."""
  from csvr_jax.train import evaluate, finetune  # deferred with the training stack
  c = config.copy_and_resolve_references()
  c.checkpoint.init_from = init_from
  c.eval.method_name = method
  done = {k for r in report.load_results(workdir)['runs'] for k in r['metrics']}
  if not {'linear_probe/top1', 'retrieval/R@1'} <= done:
    evaluate.frozen_modes(c, workdir, write_report=False)  # merge_results writes the report
  if 'finetune/top1' not in done:
    finetune.run(c, workdir)


def merge_results(workdir, eval_dirs):
  """Copies every run of the per-method eval workdirs into workdir/results.json and writes the report."""
  for d in eval_dirs:
    for r in report.load_results(d)['runs']:
      report.update_results(workdir, r, r['metrics'], r['per_class_accuracy'])
  return report.write_report(workdir)


def enable_compilation_cache(cache_dir):
  """XLA compilations dominate a CPU demo; the three methods share shapes (and a rerun shares everything), so a
  persistent cache turns repeated compilations into disk reads."""
  import jax  # deferred: keep `--dry_run` and config errors free of JAX start-up
  jax.config.update('jax_compilation_cache_dir', os.path.abspath(cache_dir))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def run_method(config, method, workdir):
  """One method end to end (pretraining and export unless random init, then its evaluations); returns its
  eval workdir."""
  branches = dict(METHODS)[method]
  if branches is None:
    init_from = random_init_export(config, os.path.join(workdir, _slug(method)))
  else:
    init_from = pretrain_and_export(pretrain_config(config, branches),
                                    os.path.join(workdir, f'pretrain_{_slug(method)}'))
  eval_dir = os.path.join(workdir, f'eval_{_slug(method)}')
  evaluate_method(config, method, init_from, eval_dir)
  return eval_dir


def process_groups(processes):
  """The methods of each process: CSVR (the longest) in this one, the others spread over the rest, the
  cheapest first in its process (random init: its evaluations compile the programs every method shares)."""
  n = max(1, min(processes, len(METHODS), os.cpu_count() or 1))
  if n == 1:
    return [[m for m, _ in METHODS]]
  rest = [m for m, b in METHODS if b is None] + [m for m, b in METHODS[1:] if b is not None]
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
  written = merge_results(workdir, [os.path.join(workdir, f'eval_{_slug(m)}') for m, _ in METHODS])
  print(f'demo: report {os.path.join(workdir, report.REPORT_FILE)} ({len(written)} plots)')
