"""The study's report.md and plots (one per dataset) from the 'study' part of results.json (summary.py)."""
import os

import numpy as np

from csvr_jax.study import stats
from csvr_jax.study import summary

PRETEXT_ROWS = (  # (metric, baseline, label, baseline label, percent)
    ('context/top1', 'context/chance', 'Context matching top-1 (%)', 'chance, 1/batch', True),
    ('pose/mse_x100', 'pose/repeat_last_mse_x100', 'Pose prediction MSE x100', 'last observed pose repeated', False),
    ('video_rec/psnr', 'video_rec/copy_last_psnr', 'Reconstruction PSNR (dB)', 'last frame repeated', False),
    ('video_pred/psnr', 'video_pred/copy_last_psnr', 'Prediction PSNR (dB)', 'last frame repeated', False),
)
INTERVALS = (
    'Intervals: {confidence:.0%} percentile bootstrap ({samples} resamples) over training seeds and test videos, '
    'crossed: each resample draws the seeds with replacement and, independently, the test videos with replacement '
    '(the same videos for every seed, as they are the same videos); differences are paired (the same resamples for '
    'both rows, seeds paired by position, videos exactly). Caveat: ' + stats.__doc__.split('Caveat: ')[1].replace('\n', ' '))
MACHINES = (
    'Same command, same seed, same machine: identical numbers (tests/test_study.py reruns the quick variant). '
    'Between machines the numbers part: XLA compiles for the host CPU (its vector width and fused kernels change '
    'the order of floating-point sums), the thread count splits reductions differently, and a run that differs in '
    'the last bit at step 1 drifts like another seed after a few hundred SGD steps. Data generation and sampling are '
    'seeded and identical everywhere. So another machine behaves like another draw of training seeds: the seed part '
    'of each interval is the part that absorbs it, and a difference whose interval excludes 0 should keep its sign '
    'there.')


def _pct(v, sign=False):
  if v is None:
    return '-'
  f = '{:+.1f}' if sign else '{:.1f}'
  return f'{f.format(100 * v["mean"])} [{f.format(100 * v["low"])}, {f.format(100 * v["high"])}]'


def _num(v, digits=3):
  if v is None:
    return '-'
  return f'{v["mean"]:.{digits}g} [{v["low"]:.{digits}g}, {v["high"]:.{digits}g}]'


def _seeds(v, percent=True):
  return ' / '.join(f'{100 * x:.0f}' if percent else f'{x:.3g}' for x in v['per_seed']) if v else '-'


def _l2s(values):
  """The probe's cross-validated L2 weight per seed ('-' where an outcome predates the choice)."""
  return ' / '.join('-' if v is None else f'{v:g}' for v in values) if values else '-'


def rows_table(ds):
  head = '| Method, features | ' + ' | '.join(f'{summary.METRIC_LABELS[m]} (%)' for m in summary.METRICS) + \
         ' | Linear probe per seed | Probe L2 per seed |'
  lines = [head, '|' + '---|' * (len(summary.METRICS) + 3)]
  l2 = ds.get('probe_l2', {})
  for row, metrics in ds['rows'].items():
    lines.append(f'| {row} | ' + ' | '.join(_pct(metrics.get(m)) for m in summary.METRICS)
                 + f' | {_seeds(metrics.get("linear_probe"))} | {_l2s(l2.get(row))} |')
  return '\n'.join(lines)


def comparisons_table(ds):
  lines = ['| A - B | ' + ' | '.join(summary.METRIC_LABELS[m] for m in summary.METRICS) + ' | why |',
           '|' + '---|' * (len(summary.METRICS) + 2)]
  for c in ds['comparisons']:
    lines.append(f'| {c["a"]} - {c["b"]} | ' + ' | '.join(_pct(c['metrics'].get(m), sign=True)
                                                          for m in summary.METRICS) + f' | {c["why"]} |')
  return '\n'.join(lines)


def pretext_table(ds):
  methods = list(ds['pretext'])
  lines = ['| Metric (final step) | Baseline | ' + ' | '.join(methods) + ' |', '|' + '---|' * (len(methods) + 2)]
  for metric, baseline, label, base_label, percent in PRETEXT_ROWS:
    cells, base = [], None
    for m in methods:
      v = ds['pretext'][m]['metrics'].get(metric)
      base = base or ds['pretext'][m]['metrics'].get(baseline)
      cells.append((_pct(v) if percent else _num(v)) + (f' ({_seeds(v, percent)})' if v else ''))
    if any(c != '-' for c in cells):
      lines.append(f'| {label} | {(_pct(base) if percent else _num(base))} ({base_label}) | ' + ' | '.join(cells) + ' |')
  for ratio, label in (('context/top1_over_chance', 'Context top-1 / chance (target >= 3)'),
                       ('pose/mse_over_repeat_last', 'Pose MSE / repeat-last (target <= 0.5)')):
    cells = [_num(ds['pretext'][m]['metrics'].get(ratio)) for m in methods]
    if any(c != '-' for c in cells):
      lines.append(f'| {label} | | ' + ' | '.join(cells) + ' |')
  steps = {m: ds['pretext'][m]['step'] for m in methods}
  lines += ['', 'Final steps: ' + ', '.join(f'{m} {s}' for m, s in steps.items()) + '. Intervals over the seeds only '
            '(the held-out clips are fixed); per-seed values in brackets.']
  return '\n'.join(lines)


def curves_table(ds, method='CSVR'):
  curve = ds['curves'].get(method)
  if not curve:
    return ''
  keys = [k for k, *_ in PRETEXT_ROWS if any(k in m for m in curve.values())]
  steps = sorted(curve, key=int)
  lines = [f'| {method}: pretext metric (mean over seeds) | ' + ' | '.join(f'step {s}' for s in steps) + ' |',
           '|' + '---|' * (len(steps) + 1)]
  for k in keys:
    lines.append(f'| {k} | ' + ' | '.join(f'{curve[s][k]:.4g}' if k in curve[s] else '-' for s in steps) + ' |')
  return '\n'.join(lines)


def targets_table(targets):
  lines = ['| Target | Dataset | Value [95% interval] | Met |', '|---|---|---|---|']
  for t in targets:
    v = t['value']
    text = (_pct(v, sign=True) + ' points') if v is not None and t['kind'] == 'points' else _num(v)
    met = {True: 'yes', False: '**no**', None: '(reported)' if v is not None else 'not run'}[t['met']]
    lines.append(f'| {t["name"]} | {t["dataset"]} | {text} | {met} |')
  return '\n'.join(lines)


def plot_dataset(name, ds, path, chance):
  """One figure per dataset: a panel per metric, a bar per row with its interval, chance dashed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = list(ds['rows'])
  metrics = [m for m in summary.METRICS if any(m in ds['rows'][r] for r in rows)]
  if not rows or not metrics:
    return False
  fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics) + 2, 0.4 * len(rows) + 1.5), dpi=100,
                           sharey=True, squeeze=False)
  y = np.arange(len(rows))
  for ax, metric in zip(axes[0], metrics):
    vals = [ds['rows'][r].get(metric) for r in rows]
    mean = np.array([100 * v['mean'] if v else np.nan for v in vals])
    err = np.array([[100 * (v['mean'] - v['low']), 100 * (v['high'] - v['mean'])] if v else [0, 0] for v in vals]).T
    colours = ['tab:red' if r.startswith('CSVR') else 'tab:grey' if r.startswith('Random') else 'tab:blue'
               for r in rows]
    ax.barh(y, mean, xerr=err, color=colours, alpha=0.8, capsize=3)
    # Chance of a hit among the first k neighbours (R@k) when labels are independent of the features.
    k = int(metric.split('@')[1]) if metric.startswith('R@') else 1
    ax.axvline(100 * (1 - (1 - chance) ** k), color='k', ls='--', lw=0.8)
    ax.set_title(summary.METRIC_LABELS[metric] + ' (%)', fontsize=9)
    ax.set_xlim(0, 100)
    ax.grid(axis='x', alpha=0.3)
  axes[0][0].set_yticks(y, rows, fontsize=8)
  axes[0][0].invert_yaxis()
  fig.suptitle(f'{name}: test accuracy, mean over seeds with 95% interval (dashed: chance)', fontsize=10)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return True


def write(workdir, study):
  """report.md, summary.md and study_<dataset>.png in workdir; returns the written paths."""
  design = study['design']
  lines = ['# CSVR evidence study', '', design_text(design), '', '## Targets', '', targets_table(study['targets']), '']
  written = []
  for name, ds in study['datasets'].items():
    context = design['datasets'].get(name)
    lines += [f'## {name} (context {context}: P(scene = the class\'s scene); {ds["num_test_videos"]} test videos)',
              '', rows_table(ds), '', noise_text(ds), '']
    png = f'study_{name}.png'
    if plot_dataset(name, ds, os.path.join(workdir, png), 1.0 / design['classes']):
      written.append(os.path.join(workdir, png))
      lines += [f'![{name}]({png})', '']
    lines += ['Paired differences (points, A - B):', '', comparisons_table(ds), '']
    if ds['pretext']:
      lines += ['Pretext metrics (Table II) of the pretraining runs beside their trivial baselines:', '',
                pretext_table(ds), '', curves_table(ds), '']
  lines += ['## How the numbers are computed', '', INTERVALS.format(confidence=design['confidence'],
                                                                     samples=design['bootstrap_samples']), '',
            MACHINES, '']
  path = os.path.join(workdir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  short = os.path.join(workdir, 'summary.md')
  with open(short, 'w') as f:
    f.write(summary_block(study))
  return [path, short] + written


def headline_table(study, metric='linear_probe'):
  """Rows x datasets: one metric's mean [interval] per dataset (README's short form)."""
  names = list(study['datasets'])
  rows = list(dict.fromkeys(r for ds in study['datasets'].values() for r in ds['rows']))
  lines = ['| Method, features | ' + ' | '.join(f'{n}: {summary.METRIC_LABELS[metric].lower()} (%)' for n in names)
           + ' |', '|' + '---|' * (len(names) + 1)]
  for r in rows:
    lines.append(f'| {r} | ' + ' | '.join(_pct(study['datasets'][n]['rows'].get(r, {}).get(metric)) for n in names)
                 + ' |')
  return '\n'.join(lines)


def summary_block(study):
  """summary.md: what README's research section quotes verbatim (design in one paragraph, the linear probe of
  every row on both datasets, the targets, one run's noise band)."""
  d = study['design']
  noise = [f'{name}: {noise_text(ds)}' for name, ds in study['datasets'].items() if noise_text(ds)]
  return '\n'.join([
      f'Seeds {d["seeds"]}, {d["classes"]} classes, {d["test_videos_per_class"]} test videos per class per dataset; '
      f'means with {d["confidence"]:.0%} intervals over seeds and test videos (docs/study.md says how). '
      + timing_text(d.get('invocations', [])), '',
      headline_table(study), '', targets_table(study['targets']), '', *noise, ''])


def noise_text(ds):
  """One run's noise band (summary.py 'one_run_noise')."""
  n = ds.get('one_run_noise') or {}
  if n.get('video_halfwidth') is None:
    return ''
  text = (f'Noise band of one run (one seed): +-{100 * n["video_halfwidth"]:.1f} points from the '
          f'{ds["num_test_videos"]} test videos alone (median half-width of a one-seed 95% interval)')
  if n.get('seed_sd') is not None:
    text += f'; seeds scatter with a standard deviation of {100 * n["seed_sd"]:.1f} points (median over rows and metrics)'
  return text + '.'


def timing_text(invocations):
  """The wall time of the invocations that ran jobs, and the load they ran under."""
  ran = [t for t in invocations if t['jobs_run']]
  if not ran:
    return ''
  total = sum(t['wall_s'] for t in ran)
  parts = '; '.join(f'{t["end"]}: {t["wall"]} for {t["jobs_run"]} jobs, load average {t["load_start"]:.1f} -> '
                    f'{t["load_end"]:.1f} on {t["cpus"]} CPUs, {t["processes"]} processes' for t in ran)
  h, rem = divmod(int(total), 3600)
  return f'Wall time: {h}h{rem // 60:02d}m{rem % 60:02d}s over {len(ran)} invocation(s) that ran jobs ({parts}).'


def design_text(d):
  steps = '; '.join(f'{m}: ' + ', '.join(f'{n} {k}' for n, k in stages) for m, stages in d['stages'].items())
  return '\n'.join([
      f'SynthActions draw `{d["draw"]}` (generator seed {d["data_seed"]}); datasets '
      + ', '.join(f'`{n}` (context {c})' for n, c in d['datasets'].items())
      + f'; {d["classes"]} classes, {d["train_videos_per_class"]} train and {d["test_videos_per_class"]} test videos '
      f'per class; training seeds {d["seeds"]}.',
      f'Clips {d["clip"]}; V-Network {d["vnet"]}; pretraining batch {d["batch"]}, steps per stage ({steps}); '
      f'finetune {d["finetune_steps"]} steps at batch {d["finetune_batch"]}; {d["eval_clips"]} clips per test video.',
      timing_text(d.get('invocations', []))])
