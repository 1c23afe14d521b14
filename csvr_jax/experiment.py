"""One method end to end: pretraining -> export -> downstream evaluations, each step resumable.

`--mode=experiment` runs the method that `config.experiment` describes (the Table I rows of configs/table1.py
are one command each); the CPU demo and the study run several methods through the same functions.

A method is its pretraining (`loss.branches` and the config's schedule; none = random initialisation, the
paper's "from scratch") and the downstream features it is evaluated with (`finetune.features`: vnet | fi | fd).
Downstream datasets (`config.experiment.downstream`): name -> overrides of the finetuning keys (dataset_dir,
num_classes, lr_per_sample, weight_decay); empty = the pretraining dataset with config.finetune as it is.

Workdir layout: pretrain_<method>/ (checkpoints and export/; a random initialisation: <method>/export/),
eval_<method>[_<dataset>][_<features>]/ (one results.json per downstream run), and results.json / report.md
merging them.
"""
import os

from csvr_jax import checkpoint
from csvr_jax import report

EVALUATIONS = ('finetune', 'frozen')  # frozen: linear probe + retrieval on one feature extraction
# Keys a downstream dataset may override -> their config section.
DOWNSTREAM_KEYS = {'dataset_dir': 'data', 'train_split': 'data', 'eval_split': 'data', 'num_classes': 'finetune',
                   'lr_per_sample': 'finetune', 'weight_decay': 'finetune', 'batch_size': 'finetune',
                   'epochs': 'finetune', 'total_steps': 'finetune'}


def method_config(config, branches):
  """The config restricted to `branches`; schedule.resolve_stages keeps the step budget (a stage left without a
  loss gives its steps to the last remaining one; equal consecutive stages merge)."""
  c = config.copy_and_resolve_references()
  c.loss.branches = tuple(branches)
  return c


def pretrain_and_export(config, workdir):
  """Pretrains (resuming if interrupted) and exports the final V-Network and branches; returns the export dir.

  The export is written from the final state in memory by `--mode=export`'s builder (checkpoint.write_export):
  the same arrays it would read back from the final checkpoint (which pretraining has just written), without
  restoring the whole TrainState."""
  from csvr_jax.train import pretrain  # deferred: imports the whole training stack
  export_dir = os.path.join(workdir, 'export')
  if not os.path.exists(os.path.join(export_dir, checkpoint.META_FILE)):
    state, _ = pretrain.run(config, workdir)
    step = int(state.step)
    checkpoint.write_export(export_dir, config, state.params, state.batch_stats, step,
                            checkpoint.checkpoint_source(workdir, step), workdir)
    print(f'experiment: exported {config.model.vnet} and branches (step {step}) to {os.path.abspath(export_dir)}')
  return export_dir


def random_init_export(config, workdir):
  """The "from scratch" networks (backbone_init's random initialisation, seed config.seed: the V-Network, the pose
  generator and the integration layer) written as an export like the pretrained ones: every method then feeds
  identical programs (the export stores every array as float32, the freshly initialised BatchNorm counter is
  int32), so the evaluations compile once for all, whichever config.finetune.features they use."""
  from csvr_jax.train import backbone_init  # deferred with the training stack
  export_dir = os.path.join(workdir, 'export')
  if not os.path.exists(os.path.join(export_dir, checkpoint.META_FILE)):
    c = config.copy_and_resolve_references()
    c.checkpoint.init_from = ''
    vnet, variables, _ = backbone_init.load_backbone(c)
    networks = {'vnet': variables, **backbone_init.random_branch_variables(c, checkpoint.branch_meta(c), vnet)}
    checkpoint.write_export(export_dir, c, {n: v['params'] for n, v in networks.items()},
                            {n: v['batch_stats'] for n, v in networks.items()}, None,
                            f'random initialisation, seed {c.seed}')
  return export_dir


def slug(method):
  """'Context only' -> 'context_only' (folder names)."""
  return ''.join(ch if ch.isalnum() else '_' for ch in method.lower()).strip('_')


def initial_export(config, workdir, method, branches):
  """The export a method's evaluations start from: pretrained on `branches` in workdir/pretrain_<method>/, or the
  random initialisation in workdir/<method>/ when `branches` is empty."""
  if not branches:
    return random_init_export(config, os.path.join(workdir, slug(method)))
  return pretrain_and_export(method_config(config, branches), os.path.join(workdir, f'pretrain_{slug(method)}'))


def downstream_config(config, init_from, method, features, overrides=None):
  """The config of one downstream run: the export, the row label, the features and the dataset's keys."""
  c = config.copy_and_resolve_references()
  c.checkpoint.init_from = init_from
  c.eval.method_name = method
  c.finetune.features = features
  overrides = dict(overrides or {})
  for key, value in overrides.items():
    if key not in DOWNSTREAM_KEYS:
      raise ValueError(f'config.experiment.downstream: unknown key {key!r}; choose from {sorted(DOWNSTREAM_KEYS)}')
    if key == 'dataset_dir' and not value:
      continue  # '' = the pretraining dataset
    c[DOWNSTREAM_KEYS[key]][key] = value
  if not overrides.get('dataset_dir') and isinstance(c.data.dataset_dir, str) and c.data.dataset_dir:
    from csvr_jax.data import records  # deferred with the data stack
    c.finetune.num_classes = len(records.class_names(c.data.dataset_dir))  # evaluated on its own classes
  return c


def evaluate(config, workdir, evaluations=EVALUATIONS):
  """The downstream `evaluations` of one (export, features, dataset) in `workdir`, skipping those whose metrics
  results.json already holds (a rerun resumes)."""
  from csvr_jax.train import evaluate as evaluate_lib, finetune  # deferred with the training stack
  unknown = sorted(set(evaluations) - set(EVALUATIONS))
  if unknown:
    raise ValueError(f'config.experiment.evaluations: unknown {unknown}; choose from {EVALUATIONS}')
  done = {k for r in report.load_results(workdir)['runs'] for k in r['metrics']}
  if 'frozen' in evaluations and not {'linear_probe/top1', 'retrieval/R@1'} <= done:
    evaluate_lib.frozen_modes(config, workdir, write_report=False)
  if 'finetune' in evaluations and 'finetune/top1' not in done:
    finetune.run(config, workdir)


def run_method(config, workdir, method, branches, features, evaluations=EVALUATIONS, downstream=None):
  """Pretrains (or initialises) once, then evaluates every feature on every downstream dataset.

  Returns the eval workdirs workdir/eval_<method>[_<dataset>][_<features>] (the V-Network's features unnamed),
  each with its own results.json."""
  init_from = initial_export(config, workdir, method, branches)
  eval_dirs = []
  for name, overrides in (downstream or {'': {}}).items():
    for f in features_list(features):
      eval_dir = os.path.join(workdir, '_'.join(p for p in ('eval', slug(method), name, f if f != 'vnet' else '')
                                                if p))
      evaluate(downstream_config(config, init_from, method, f, overrides), eval_dir, evaluations)
      eval_dirs.append(eval_dir)
  return eval_dirs


def features_list(features):
  return (features,) if isinstance(features, str) else tuple(features)


def merge_results(workdir, eval_dirs):
  """Copies every run of the eval workdirs into workdir/results.json and writes the report."""
  for d in eval_dirs:
    for r in report.load_results(d)['runs']:
      report.update_results(workdir, r, r['metrics'], r['per_class_accuracy'])
  return report.write_report(workdir)


def run(config, workdir):
  """`--mode=experiment`: the method of config.experiment end to end; results.json and report.md in workdir."""
  e = config.experiment
  downstream = {name: dict(spec) for name, spec in e.downstream.items()}
  eval_dirs = run_method(config, workdir, e.method, tuple(config.loss.branches) if e.pretrain else (),
                         tuple(e.features), tuple(e.evaluations), downstream)
  written = merge_results(workdir, eval_dirs)
  print(f'experiment: report {os.path.join(workdir, report.REPORT_FILE)} ({len(written)} plots)')
