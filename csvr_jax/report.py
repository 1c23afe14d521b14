"""Downstream results -> results.json, report.md and plots (the paper's tables, Figure 4 and Table II).

results.json in a workdir: {'runs': [run, ...]}, one run per (method, downstream dataset, init_from, step):
  {'method', 'backbone', 'pretrain_data', 'epochs', 'pretrain_step', 'resolution', 'clip_len', 'dataset',
   'init_from', 'pretrain_preprocessing' (the pretraining dataset's fingerprint fields PREPROCESSING_SHOWN, None:
   not pretrained, absent: unknown), 'preprocessing_differences' (['short side 128 vs 160', ...]: pretraining vs
   the evaluated dataset, csvr_jax/data/fingerprint.py),
   'metrics': {'finetune/top1', 'finetune/top5', 'linear_probe/top1', 'knn/top1', 'retrieval/R@k', ...},
   'per_class_accuracy': {'finetune': {class_name: acc}, 'linear_probe': {...}},
   'pretext': {'context/top1': ..., 'pose/mse': ...}}
All accuracies are fractions; report.md prints percentages. Each mode calls `update_results` with what it
measured (keys merge into the run), then `write_report`, which rewrites report.md and the PNGs:
  per_class_<dataset>.png           per-class accuracy bars, one bar per run (the paper's Figure 4)
  pretext_vs_downstream_<...>.png   metrics against pretraining epoch (or step) when one method on one dataset
                                    has results from several pretraining checkpoints (the paper's Table II)

`python -m csvr_jax.report --workdir=DIR` regenerates the report from DIR/results.json.
"""
import argparse
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
PREPROCESSING_KEYS = ('pretrain_preprocessing', 'preprocessing_differences')  # absent in older results.json
# The pretraining dataset's preprocessing fields report.md shows for each run (the fingerprint holds more).
PREPROCESSING_SHOWN = ('short_side', 'jpeg_quality', 'gop_policy', 'pose_source')
BACKBONE_NAMES = {'c3d': 'C3D', 'r3d_18': 'R3D-18', 'r2plus1d_18': 'R(2+1)D-18', 'mc3_18': 'MC3-18',
                  's3d': 'S3D'}
# Columns after the description, in order: (metric key, header).
METRIC_COLUMNS = (('finetune/top1', 'Top-1'), ('finetune/top5', 'Top-5'),
                  ('linear_probe/top1', 'Linear probe'), ('knn/top1', 'kNN top-1'))
# Series of the pretext-vs-downstream plot, downstream first; pretext metrics follow as found.
CURVE_DOWNSTREAM = ('finetune/top1', 'linear_probe/top1', 'knn/top1', 'retrieval/R@1')


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

  meta's optional keys 'dataset' (pretraining data), 'epochs' and 'pretext' (dict of pretext metrics at
  export time) are used when the export carries them. The method names the features when they are not the
  V-Network's (config.finetune.features 'fi' -> "CSVR (f_i)", 'fd' -> "CSVR (f_d)").
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
  return {'method': method, 'backbone': backbone, 'pretrain_data': pretrain_data, 'epochs': epochs,
          **preprocessing_description(meta, config.data.dataset_dir),
          'pretrain_step': step, 'resolution': int(config.data.crop_size), 'clip_len': int(config.data.clip_len),
          'dataset': dataset, 'init_from': config.checkpoint.init_from,
          'pretext': dict(meta.get('pretext', {})) if meta else {}}


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
    run: description from `describe_run` (IDENTITY_KEYS pick the run to merge into).
    metrics: flat {'finetune/top1': 0.9, ...}.
    per_class: {'finetune' | 'linear_probe': {class_name: accuracy}}.
  """
  results = load_results(workdir)
  key = tuple(run.get(k) for k in IDENTITY_KEYS)
  match = [r for r in results['runs'] if tuple(r.get(k) for k in IDENTITY_KEYS) == key]
  entry = match[0] if match else {'metrics': {}, 'per_class_accuracy': {}, 'pretext': {}}
  if not match:
    results['runs'].append(entry)
  entry.update({k: run[k] for k in DESCRIPTION_KEYS})
  entry['pretext'].update(run.get('pretext', {}))
  entry['metrics'].update(metrics or {})
  entry['per_class_accuracy'].update(per_class or {})
  entry.update({k: run[k] for k in PREPROCESSING_KEYS if k in run})
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


def _curve_groups(runs):
  """(method, backbone, dataset) -> runs sorted by pretraining progress, when >= 2 checkpoints exist."""
  groups = {}
  for r in runs:
    if r['pretrain_step'] is not None or r['epochs'] is not None:
      groups.setdefault((r['method'], r['backbone'], r['dataset']), []).append(r)
  out = {}
  for key, rs in groups.items():
    use_epochs = all(r['epochs'] is not None for r in rs)
    x_of = (lambda r: r['epochs']) if use_epochs else (lambda r: r['pretrain_step'])
    if len({x_of(r) for r in rs}) >= 2 and all(x_of(r) is not None for r in rs):
      out[key] = ('Pretraining epoch' if use_epochs else 'Pretraining step', sorted(rs, key=x_of), x_of)
  return out


def _curve_series(rs):
  series = [m for m in CURVE_DOWNSTREAM if any(r['metrics'].get(m) is not None for r in rs)]
  series += sorted({p for r in rs for p in r['pretext'] if r['pretext'][p] is not None})
  return series


def curve_table(x_label, rs, x_of):
  """Table II layout: one row per metric, one column per pretraining checkpoint."""
  head = ['Task (evaluation)'] + [str(x_of(r)) for r in rs]
  lines = [f'| {x_label}: ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for m in _curve_series(rs):
    is_downstream = m in CURVE_DOWNSTREAM
    vals = [r['metrics'].get(m) if is_downstream else r['pretext'].get(m) for r in rs]
    cells = [_pct(v) if is_downstream else ('-' if v is None else f'{v:.4g}') for v in vals]
    lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
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


def plot_curve(x_label, rs, x_of, path, title):
  """Each metric against pretraining progress, one panel per metric (the paper's Table II as a plot)."""
  series = _curve_series(rs)
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series), 3.2), dpi=100, squeeze=False,
                           sharex=True)
  xs = [x_of(r) for r in rs]
  for ax, m in zip(axes[0], series):
    is_downstream = m in CURVE_DOWNSTREAM
    ys = [(r['metrics'].get(m) if is_downstream else r['pretext'].get(m)) for r in rs]
    ys = [np.nan if y is None else (100 * y if is_downstream else y) for y in ys]
    ax.plot(xs, ys, 'o-', color='tab:red' if is_downstream else 'tab:blue')
    ax.set_xlabel(x_label)
    ax.set_title(m + (' (%)' if is_downstream else ''), fontsize=9)
    ax.grid(alpha=0.3)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


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
           'logistic regression on the frozen averaged features. kNN top-1: label of the nearest training video.',
           '']
  for dataset in sorted({r['dataset'] for r in runs}):
    ds_runs = [r for r in runs if r['dataset'] == dataset]
    lines += [f'## {dataset}', '', results_table(ds_runs), '']
    lines += ['Pretraining data:', ''] + [preprocessing_line(r) for r in ds_runs] + ['']
    png = f'per_class_{_slug(dataset)}.png'
    if plot_per_class(ds_runs, os.path.join(workdir, png)):
      written.append(os.path.join(workdir, png))
      lines += [f'![Per-class accuracy on {dataset}]({png})', '']
  for (method, backbone, dataset), (x_label, rs, x_of) in sorted(_curve_groups(runs).items()):
    png = f'pretext_vs_downstream_{_slug(method, backbone, dataset)}.png'
    title = f'{method} {BACKBONE_NAMES.get(backbone, backbone)} on {dataset}: pretext vs downstream'
    plot_curve(x_label, rs, x_of, os.path.join(workdir, png), title)
    written.append(os.path.join(workdir, png))
    lines += [f'## {title}', '', curve_table(x_label, rs, x_of), '', f'![{title}]({png})', '']
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
