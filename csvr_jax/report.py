"""Downstream results -> results.json, report.md and plots (the paper's tables, Figure 4 and Table II).

results.json in a workdir: {'runs': [run, ...]}, one run per (method, downstream dataset, init_from, step):
  {'method', 'backbone', 'pretrain_data', 'epochs', 'pretrain_step', 'resolution', 'clip_len', 'dataset',
   'init_from', 'pretrain_preprocessing' (the pretraining dataset's fingerprint fields PREPROCESSING_SHOWN, None:
   not pretrained, absent: unknown), 'preprocessing_differences' (['short side 128 vs 160', ...]: pretraining vs
   the evaluated dataset, csvr_jax/data/fingerprint.py),
   'metrics': {'finetune/top1', 'finetune/top5', 'linear_probe/top1', 'knn/top1', 'retrieval/R@k', ...},
   'per_class_accuracy': {'finetune': {class_name: acc}, 'linear_probe': {...}},
   'pretext': {'<step>': {'context/top1': ..., 'context/chance': ..., 'pose/mse_x100': ..., 'epoch': ...}},
   'pretext_notes': {'video_rec/inception_score': 'absent: why', ...}}
All accuracies are fractions; report.md prints percentages. Each mode calls `update_results` with what it
measured (keys merge into the run; 'pretext' per step), then `write_report`, which rewrites report.md and the PNGs.
'pretext' holds the pretext metrics of csvr_jax/train/pretext.py at every evaluated pretraining step: the
pretraining workdir records them in a run of its own (`pretraining_run`: no downstream metrics, init_from ''), and
an export of step s carries those up to s (`pretext_meta`, meta.json 'pretext'), which `describe_run` copies into
every downstream run of that export (so a merged results.json keeps them beside the downstream numbers).
  per_class_<dataset>.png           per-class accuracy bars, one bar per run (the paper's Figure 4)
  pretext_vs_downstream_<...>.png   Table II as a plot: pretext metrics (with their baselines) and downstream
                                    accuracy against the pretraining step, when there are >= 2 steps
Table II (report.md) groups runs by (method, backbone): one row per pretext metric with its trivial baseline,
then the downstream metrics per dataset, one column per pretraining step (epoch in brackets when known).

`python -m csvr_jax.report --workdir=DIR` regenerates the report from DIR/results.json.
"""
import argparse
import collections
import json
import math
import os
import re

import numpy as np

from csvr_jax.data import fingerprint as fingerprint_lib

RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'
IDENTITY_KEYS = ('method', 'dataset', 'init_from', 'pretrain_step')
DESCRIPTION_KEYS = ('method', 'backbone', 'pretrain_data', 'epochs', 'pretrain_step', 'resolution', 'clip_len',
                    'dataset', 'init_from')
PREPROCESSING_KEYS = ('pretrain_preprocessing', 'preprocessing_differences')
OPTIONAL_KEYS = ('features',) + PREPROCESSING_KEYS  # absent in older results.json and hand-made runs
# The pretraining dataset's preprocessing fields report.md shows for each run (the fingerprint holds more).
PREPROCESSING_SHOWN = ('short_side', 'jpeg_quality', 'gop_policy', 'pose_source')
BACKBONE_NAMES = {'c3d': 'C3D', 'r3d_18': 'R3D-18', 'r2plus1d_18': 'R(2+1)D-18', 'mc3_18': 'MC3-18',
                  's3d': 'S3D'}
# Columns after the description, in order: (metric key, header).
METRIC_COLUMNS = (('finetune/top1', 'Top-1'), ('finetune/top5', 'Top-5'),
                  ('linear_probe/top1', 'Linear probe'), ('knn/top1', 'kNN top-1'))
# Downstream rows of Table II (percentages), in order.
CURVE_DOWNSTREAM = ('finetune/top1', 'linear_probe/top1', 'knn/top1', 'retrieval/R@1')
# Table II's pretext rows: (metric, its trivial baseline or reference, row label, baseline label, as percent).
PRETEXT_ROWS = (
    ('context/top1', 'context/chance', 'Context matching top-1 (%)', 'chance, 1/batch', True),
    ('pose/mse_x100', 'pose/repeat_last_mse_x100', 'Pose prediction MSE ×100', 'last observed pose repeated', False),
    ('video_rec/psnr', 'video_rec/copy_last_psnr', 'Reconstruction PSNR (dB)', 'last frame repeated', False),
    ('video_pred/psnr', 'video_pred/copy_last_psnr', 'Prediction PSNR (dB)', 'last frame repeated', False),
    ('video_rec/inception_score', 'video_rec/real_inception_score', 'Reconstruction Inception Score', 'real clips',
     False),
    ('video_pred/inception_score', 'video_pred/real_inception_score', 'Prediction Inception Score',
     'real future clips', False),
)
PRETEXT_STEP_INFO = ('epoch',)  # entries of a step's pretext dict that describe the step, not a metric
ALL_BRANCHES = ('pose', 'context', 'video')


def dataset_name(dataset_dir):
  """'data/ucf101' -> 'ucf101'; a TFDS version folder ('.../synth_actions/1.0.0') -> its parent's name."""
  if not isinstance(dataset_dir, str) or not dataset_dir:
    return '-'
  parts = [p for p in os.path.normpath(dataset_dir).split(os.sep) if p]
  while len(parts) > 1 and re.fullmatch(r'[0-9.]+', parts[-1]):
    parts.pop()
  return parts[-1] if parts else '-'


def describe_run(config, meta):
  """The description part of a run from the config and the backbone export's meta (None: random init).

  meta's optional keys 'dataset' (pretraining data), 'epochs', 'pretext' (the pretext metrics up to the
  exported step, keyed by step) and 'pretext_notes' are used when the export carries them. The method names the
  features when they are not the V-Network's (config.finetune.features 'fi' -> "CSVR (f_i)", 'fd' -> "(f_d)").
  """
  dataset = dataset_name(config.data.dataset_dir)
  if meta is None:
    method, backbone, pretrain_data, epochs, step = 'Random init', config.model.vnet, '-', None, None
  else:
    method, backbone = meta['source'], meta['arch']
    pretrain_data, epochs, step = meta.get('dataset', '-'), meta.get('epochs'), meta.get('step')
  from csvr_jax.models import downstream  # deferred: the report CLI needs no JAX
  label = downstream.LABELS[downstream.check_features(config.finetune.features)]
  method = config.eval.method_name or method
  method = f'{method} ({label})' if label else method
  return {'method': method, 'features': config.finetune.features, 'backbone': backbone,
          'pretrain_data': pretrain_data, 'epochs': epochs,
          **preprocessing_description(meta, config.data.dataset_dir),
          'pretrain_step': step, 'resolution': int(config.data.crop_size), 'clip_len': int(config.data.clip_len),
          'dataset': dataset, 'init_from': config.checkpoint.init_from,
          'pretext': dict(meta.get('pretext', {})) if meta else {},
          'pretext_notes': dict(meta.get('pretext_notes', {})) if meta else {}}


def branches_label(branches):
  """A pretraining run's default method name: 'CSVR', or the branches it trains ('CSVR (context)')."""
  if set(branches) == set(ALL_BRANCHES):
    return 'CSVR'
  return f'CSVR ({" + ".join(branches)})'


def pretraining_run(config):
  """The run a pretraining workdir records its pretext metrics in: method config.eval.method_name (or from
  config.loss.branches), no downstream metrics, init_from '' and pretrain_step None (its steps key 'pretext')."""
  data = dataset_name(config.data.dataset_dir)
  return {'method': config.eval.method_name or branches_label(config.loss.branches), 'features': None,
          'backbone': config.model.vnet,
          'pretrain_data': data, 'epochs': None, 'pretrain_step': None, 'resolution': int(config.data.crop_size),
          'clip_len': int(config.data.clip_len), 'dataset': data, 'init_from': '', 'pretext': {},
          'pretext_notes': {}}


def pretext_meta(workdir, step):
  """{'pretext': metrics of the steps <= `step`, 'pretext_notes': ...} recorded in workdir/results.json, for the
  meta.json of an export of step `step` ({} when nothing was recorded)."""
  pretext, notes = {}, {}
  for r in load_results(workdir)['runs']:
    for s, values in r.get('pretext', {}).items():
      if int(s) <= step:
        pretext.setdefault(s, {}).update(values)
    notes.update(r.get('pretext_notes', {}))
  return {'pretext': pretext, 'pretext_notes': notes} if pretext else {}


def preprocessing_description(meta, dataset_dir):
  """PREPROCESSING_KEYS of a run: the export's pretraining preprocessing (meta None: not pretrained; an export
  without a fingerprint: unknown, no key) and how it differs from the evaluated dataset's."""
  if meta is None or (meta.get('step') is None and meta.get('source') != 'torchvision'):  # a random init
    return {'pretrain_preprocessing': None, 'preprocessing_differences': []}
  pretrained = meta.get('dataset_fingerprint')
  if not pretrained:
    return {'preprocessing_differences': []}
  shown = {k: v for k, v in (pretrained.get('preprocessing') or {}).items() if k in PREPROCESSING_SHOWN}
  evaluated = fingerprint_lib.read_fingerprint(dataset_dir) if isinstance(dataset_dir, str) and dataset_dir else None
  return {'pretrain_preprocessing': shown,
          'preprocessing_differences': fingerprint_lib.preprocessing_differences(pretrained, evaluated)}


def _to_json(x):
  """numpy scalars/arrays -> plain floats/lists; NaN -> None (JSON has no NaN)."""
  if isinstance(x, dict):
    return {str(k): _to_json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple, np.ndarray)):
    return [_to_json(v) for v in x]
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return None if math.isnan(float(x)) else float(x)
  return x


def load_results(workdir):
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return {'runs': []}
  with open(path) as f:
    results = json.load(f)
  if not isinstance(results.get('runs'), list):
    raise ValueError(f'{path}: expected {{"runs": [...]}}')
  return results


def update_results(workdir, run, metrics=None, per_class=None):
  """Merges one evaluation into workdir/results.json and returns the merged run.

  Args:
    run: description from `describe_run` or `pretraining_run` (IDENTITY_KEYS pick the run to merge into); its
      'pretext' ({step: {metric: value}}) and 'pretext_notes' merge too.
    metrics: flat {'finetune/top1': 0.9, ...}.
    per_class: {'finetune' | 'linear_probe': {class_name: accuracy}}.
  """
  results = load_results(workdir)
  key = tuple(run.get(k) for k in IDENTITY_KEYS)
  match = [r for r in results['runs'] if tuple(r.get(k) for k in IDENTITY_KEYS) == key]
  entry = match[0] if match else {'metrics': {}, 'per_class_accuracy': {}, 'pretext': {}, 'pretext_notes': {}}
  if not match:
    results['runs'].append(entry)
  entry.update({k: run[k] for k in DESCRIPTION_KEYS})
  for step, values in run.get('pretext', {}).items():
    entry['pretext'].setdefault(str(step), {}).update(values)
  entry.setdefault('pretext_notes', {}).update(run.get('pretext_notes', {}))
  entry['metrics'].update(metrics or {})
  entry['per_class_accuracy'].update(per_class or {})
  entry.update({k: run[k] for k in OPTIONAL_KEYS if k in run})
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, RESULTS_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(_to_json(results), f, indent=1)
  os.replace(path + '.tmp', path)
  return entry


# ------------------------------------------------------------------ markdown

def _pct(x):
  return '-' if x is None else f'{100 * x:.1f}'


def _retrieval_ks(runs):
  ks = {int(m.split('@')[1]) for r in runs for m in r['metrics'] if m.startswith('retrieval/R@')}
  return sorted(ks)


def results_table(runs):
  """Markdown table in the paper's format (Tables VI-VIII) for runs on one downstream dataset."""
  ks = _retrieval_ks(runs)
  columns = [c for c in METRIC_COLUMNS if any(r['metrics'].get(c[0]) is not None for r in runs)]
  columns += [(f'retrieval/R@{k}', f'R@{k}') for k in ks]
  head = ['Method', 'Backbone', 'Pretrain data', 'Epochs', 'Resolution', 'Clip length'] + [h for _, h in columns]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in runs:
    epochs = r['epochs'] if r['epochs'] is not None else (
        f'step {r["pretrain_step"]}' if r['pretrain_step'] is not None else '-')
    cells = [r['method'], BACKBONE_NAMES.get(r['backbone'], r['backbone']), r['pretrain_data'] or '-',
             str(epochs), f'{r["resolution"]}×{r["resolution"]}', str(r['clip_len'])]
    cells += [_pct(r['metrics'].get(key)) for key, _ in columns]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def preprocessing_line(run):
  """'- CSVR (R3D-18, step 4): pretrained on k400, short side 128, JPEG quality 90, ...' for report.md."""
  progress = f'{run["epochs"]} epochs' if run['epochs'] is not None else (
      f'step {run["pretrain_step"]}' if run['pretrain_step'] is not None else None)
  names = [BACKBONE_NAMES.get(run['backbone'], run['backbone'])] + ([progress] if progress else [])
  head = f'- {run["method"]} ({", ".join(names)})'
  if 'pretrain_preprocessing' not in run:
    return f'{head}: pretrained on {run["pretrain_data"] or "-"}, preprocessing unknown'
  if run['pretrain_preprocessing'] is None:
    return f'{head}: not pretrained'
  fields = run['pretrain_preprocessing']
  shown = ', '.join(f'{fingerprint_lib.PREPROCESSING_FIELDS[k]} {fields[k]}' for k in PREPROCESSING_SHOWN
                    if k in fields)
  line = f'{head}: pretrained on {run["pretrain_data"]}, {shown or "preprocessing not recorded"}'
  differences = run.get('preprocessing_differences') or []
  return line + (f'; differs from {run["dataset"]}: {"; ".join(differences)}' if differences else '')


def _slug(*parts):
  return re.sub(r'[^A-Za-z0-9]+', '_', '_'.join(str(p) for p in parts)).strip('_').lower()


# ------------------------------------------------------------------ Table II

Row = collections.namedtuple('Row', 'label baseline_label percent values baselines downstream')

PRETEXT_INTRO = ('Pretext metrics on held-out pretraining-style clips of the pretraining data (the same clips at '
                 'every step; csvr_jax/train/pretext.py), each beside its trivial baseline or reference; downstream '
                 'accuracies (%) at the steps that were exported and evaluated. Columns: pretraining step (epoch).')


def pretraining_method(run):
  """A run's method without its downstream features' label ('CSVR (f_i)' -> 'CSVR'): the pretraining it used."""
  from csvr_jax.models import downstream  # deferred: the report CLI needs no JAX
  for label in filter(None, downstream.LABELS.values()):
    if run['method'].endswith(f' ({label})'):
      return run['method'][:-len(f' ({label})')]
  return run['method']


def table2_groups(runs):
  """(pretraining method, backbone) -> its runs (every downstream features of one pretraining together), for
  every pair with pretext metrics or downstream results at >= 2 pretraining steps (the paper's Table II)."""
  groups = {}
  for r in runs:
    if r['pretext'] or r['pretrain_step'] is not None:
      groups.setdefault((pretraining_method(r), r['backbone']), []).append(r)
  return {k: rs for k, rs in groups.items() if any(r['pretext'] for r in rs) or len(table2_steps(rs)[0]) >= 2}


def table2_steps(rs):
  """Sorted pretraining steps with pretext metrics or downstream results, and {step: epoch or None}."""
  epochs = {}
  for r in rs:
    for s, values in r['pretext'].items():
      if epochs.get(int(s)) is None:
        epochs[int(s)] = values.get('epoch')
    if r['pretrain_step'] is not None and epochs.get(int(r['pretrain_step'])) is None:
      epochs[int(r['pretrain_step'])] = r['epochs']
  return sorted(epochs), epochs


def _first(values):
  return next((v for v in values if v is not None), None)


def table2_rows(rs):
  """Rows of a Table II group: PRETEXT_ROWS present in the runs, any other pretext metric, then the downstream
  metrics (CURVE_DOWNSTREAM) per dataset. values / baselines: {step: value or None}."""
  steps, _ = table2_steps(rs)
  at = lambda key: {s: _first(r['pretext'].get(str(s), {}).get(key) for r in rs) for s in steps}
  keys = {k for r in rs for values in r['pretext'].values() for k in values}
  rows, known = [], set(PRETEXT_STEP_INFO)
  for metric, baseline, label, baseline_label, percent in PRETEXT_ROWS:
    known |= {metric, baseline}
    if metric in keys:
      rows.append(Row(label, baseline_label, percent, at(metric), at(baseline), False))
  rows += [Row(m, '', False, at(m), {}, False) for m in sorted(keys - known)]
  evaluated = sorted({(r['dataset'], r['method']) for r in rs if r['metrics']})
  several = len({m for _, m in evaluated}) > 1  # e.g. CSVR and CSVR (f_i): name the features' row
  for dataset, method in evaluated:
    mine = [r for r in rs if (r['dataset'], r['method']) == (dataset, method)]
    for metric in CURVE_DOWNSTREAM:
      values = {s: _first(r['metrics'].get(metric) for r in mine if r['pretrain_step'] == s) for s in steps}
      if any(v is not None for v in values.values()):
        rows.append(Row(f'{metric} (%), {dataset}' + (f', {method}' if several else ''), '', True, values, {}, True))
  return rows


def _num(x):
  return '-' if x is None else f'{x:.4g}'


def _step_header(step, epoch):
  return str(step) if epoch is None else f'{step} ({float(epoch):.3g})'


def table2(rs):
  """Table II layout: one row per metric with its baseline (the latest step's), one column per step; the
  reasons for absent metrics below."""
  steps, epochs = table2_steps(rs)
  head = ['Pretraining step (epoch)', 'Baseline'] + [_step_header(s, epochs[s]) for s in steps]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for row in table2_rows(rs):
    fmt = _pct if row.percent else _num
    latest = _first(row.baselines.get(s) for s in reversed(steps))
    base = '' if not row.baseline_label else f'{fmt(latest)} ({row.baseline_label})'
    lines.append(f'| {row.label} | {base} | ' + ' | '.join(fmt(row.values[s]) for s in steps) + ' |')
  reasons = {}
  for r in rs:
    for metric, reason in r.get('pretext_notes', {}).items():
      reasons.setdefault(reason, set()).add(metric)
  if reasons:
    lines.append('')
  lines += [f'* {", ".join(sorted(metrics))}: {reason}' for reason, metrics in sorted(reasons.items())]
  return '\n'.join(lines)


# ------------------------------------------------------------------ plots

def _pyplot():
  import matplotlib  # deferred: only reports need it
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def plot_per_class(runs, path, kind_order=('finetune', 'linear_probe')):
  """Grouped bars of per-class accuracy (%), one bar per run (the paper's Figure 4). Returns True if drawn."""
  bars = []
  for r in runs:
    kind = next((k for k in kind_order if r['per_class_accuracy'].get(k)), None)
    if kind:
      bars.append((f'{r["method"]} ({kind.replace("_", " ")})', r['per_class_accuracy'][kind]))
  if not bars:
    return False
  classes = list(bars[0][1])
  for _, acc in bars[1:]:
    classes += [c for c in acc if c not in classes]
  plt = _pyplot()
  width = 0.8 / len(bars)
  fig, ax = plt.subplots(figsize=(min(40, max(6, 0.18 * len(classes) * len(bars) + 2)), 4.5), dpi=100)
  x = np.arange(len(classes))
  for i, (label, acc) in enumerate(bars):
    vals = [100 * acc[c] if acc.get(c) is not None else np.nan for c in classes]  # no bar: no videos
    ax.bar(x + (i - (len(bars) - 1) / 2) * width, vals, width, label=label)
  ax.set_xticks(x, classes, rotation=75, ha='right', fontsize=7)
  ax.set_ylabel('Accuracy (%)')
  ax.set_ylim(0, 100)
  ax.set_title(f'Per-class action recognition accuracy ({runs[0]["dataset"]})')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return True


def plot_table2(rs, path, title):
  """Table II as a plot: each metric against the pretraining step (baseline dashed), one panel per metric.
  Returns True if drawn (False: no metric has a value)."""
  steps, _ = table2_steps(rs)
  rows = [r for r in table2_rows(rs) if any(v is not None for v in r.values.values())]
  if not rows:
    return False
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), dpi=100, squeeze=False, sharex=True)
  series = lambda values, scale: [np.nan if values.get(s) is None else scale * values[s] for s in steps]
  for ax, row in zip(axes[0], rows):
    scale = 100 if row.percent else 1
    ax.plot(steps, series(row.values, scale), 'o-', color='tab:red' if row.downstream else 'tab:blue')
    if any(v is not None for v in row.baselines.values()):
      ax.plot(steps, series(row.baselines, scale), '--', color='grey', label=row.baseline_label)
      ax.legend(fontsize=7)
    ax.set_xlabel('Pretraining step')
    ax.set_title(row.label, fontsize=9)
    ax.grid(alpha=0.3)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return True


# ------------------------------------------------------------------ report

def write_report(workdir):
  """Rewrites workdir/report.md and its PNGs from workdir/results.json; returns the written paths."""
  runs = load_results(workdir)['runs']
  written = []
  lines = ['# csvr_jax downstream results', '',
           'Accuracies and recalls in %. Every video is seen as config.data.num_eval_clips uniformly spaced clips '
           '(10 in the paper) x centre crop. Retrieval: test videos query the training videos by cosine '
           'similarity of the backbone features averaged over those clips; R@k counts a hit if any of the top k '
           'shares the class. Action recognition (Top-1/Top-5): softmax averaged over the clips. Linear probe: '
           'logistic regression on the frozen averaged features, its L2 weight chosen by 5-fold cross-validation '
           'on the training videos. kNN top-1: label of the nearest training video.',
           '']
  downstream = [r for r in runs if r['metrics']]  # a pretraining run's own entry has pretext metrics only
  for dataset in sorted({r['dataset'] for r in downstream}):
    ds_runs = [r for r in downstream if r['dataset'] == dataset]
    lines += [f'## {dataset}', '', results_table(ds_runs), '']
    lines += ['Pretraining data:', ''] + [preprocessing_line(r) for r in ds_runs] + ['']
    png = f'per_class_{_slug(dataset)}.png'
    if plot_per_class(ds_runs, os.path.join(workdir, png)):
      written.append(os.path.join(workdir, png))
      lines += [f'![Per-class accuracy on {dataset}]({png})', '']
  for (method, backbone), rs in sorted(table2_groups(runs).items()):
    title = f'{method} {BACKBONE_NAMES.get(backbone, backbone)}: pretext tasks and downstream (Table II)'
    lines += [f'## {title}', '', PRETEXT_INTRO, '', table2(rs), '']
    png = f'pretext_vs_downstream_{_slug(method, backbone)}.png'
    if len(table2_steps(rs)[0]) >= 2 and plot_table2(rs, os.path.join(workdir, png), title):
      written.append(os.path.join(workdir, png))
      lines += [f'![{title}]({png})', '']
  path = os.path.join(workdir, REPORT_FILE)
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return [path] + written


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  args = parser.parse_args()
  if not os.path.exists(os.path.join(args.workdir, RESULTS_FILE)):
    raise SystemExit(f'error: {os.path.join(args.workdir, RESULTS_FILE)} not found')
  for p in write_report(args.workdir):
    print(p)


if __name__ == '__main__':
  main()
