"""`--mode=demo` (configs/demo.py): the embedded default, end to end on a CPU.

1. SynthActions: generated and built into a TFDS dataset under `config.demo.data_dir` on first use (cached:
   the next run reuses it).
2. Pretraining with the same budget (`config.train.stages`) for full CSVR and for the context-matching branch
   alone (the paper's Table I ablation), each in workdir/pretrain_<method>/, then exported.
3. For CSVR, context-only and random initialisation (the paper's "from scratch"): linear probe, retrieval
   (R@k, kNN) and a short finetune, each in workdir/eval_<method>/.
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
                                          frames=d.frames, size=d.size, seed=config.seed,
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
  """Pretrains (resuming if interrupted) and exports; returns the export dir."""
  from csvr_jax.train import pretrain  # deferred: imports the whole training stack
  export_dir = os.path.join(workdir, 'export')
  if not os.path.exists(os.path.join(export_dir, checkpoint.META_FILE)):
    pretrain.run(config, workdir)
    checkpoint.export_mode(config, workdir)
  return export_dir


def evaluate_method(config, method, init_from, workdir):
  """Linear probe, retrieval and a short finetune of one backbone init; results in workdir/results.json."""
  from csvr_jax.train import evaluate, finetune  # deferred with the training stack
  c = config.copy_and_resolve_references()
  c.checkpoint.init_from = init_from
  c.eval.method_name = method
  done = {k for r in report.load_results(workdir)['runs'] for k in r['metrics']}
  if 'linear_probe/top1' not in done:
    evaluate.linear_probe_mode(c, workdir)
  if 'retrieval/R@1' not in done:
    evaluate.retrieval_mode(c, workdir)
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


def run(config, workdir):
  config = config.copy_and_resolve_references()
  enable_compilation_cache(os.path.join(config.demo.data_dir, 'jax_cache'))
  config.data.dataset_dir = dataset_dir(config)
  print(f'demo: dataset {config.data.dataset_dir}')
  eval_dirs = []
  for method, branches in METHODS:
    init_from = ''
    if branches is not None:
      init_from = pretrain_and_export(pretrain_config(config, branches),
                                      os.path.join(workdir, f'pretrain_{_slug(method)}'))
    eval_dir = os.path.join(workdir, f'eval_{_slug(method)}')
    evaluate_method(config, method, init_from, eval_dir)
    eval_dirs.append(eval_dir)
  written = merge_results(workdir, eval_dirs)
  print(f'demo: report {os.path.join(workdir, report.REPORT_FILE)} ({len(written)} plots)')
