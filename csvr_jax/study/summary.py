"""The study's numbers: per-video outcomes -> intervals, paired comparisons, targets, pretext metrics.

`summarize(config, workdir)` reads every outcome file (jobs.py) and returns the 'study' part of results.json:
  design       what ran (datasets, sizes, seeds, steps, shapes, the bootstrap)
  datasets     name -> {'rows': {row: {metric: interval}}, 'comparisons': [...], 'pretext': {method: ...},
               'curves': {method: {step: {metric: mean over seeds}}}}
  targets      the issue's targets, each with its numbers and whether it is met
Rows are '<method>, <features>' ('CSVR, f_i'); metrics are accuracies (fractions) of the test videos:
linear_probe, knn (with eval.knn_k = 1 the same as retrieval R@1: the nearest training video has the class),
R@5, finetune. Intervals: csvr_jax/study/stats.py. report.md and the plots: csvr_jax/study/report.py.
"""
import json
import os

import numpy as np

from csvr_jax.study import jobs
from csvr_jax.study import stats

FEATURE_LABELS = {'vnet': 'V-Network', 'fi': 'f_i', 'fd': 'f_d'}
METRICS = ('linear_probe', 'knn', 'R@5', 'finetune')
METRIC_LABELS = {'linear_probe': 'Linear probe', 'knn': 'kNN / R@1', 'R@5': 'R@5', 'finetune': 'Finetune'}
# Paired comparisons: (A, B, why it is asked); A - B on each metric, where both rows ran.
COMPARISONS = (
    ('CSVR, f_i', 'Random init, f_i', 'target: pretraining gain of f_i, like for like (same networks and inputs)'),
    ('CSVR, f_i', 'Random init, V-Network', 'pretraining gain of f_i over the untrained video backbone'),
    ('CSVR, f_i', 'Context only, V-Network', 'target (motion-only data): what the pose and video branches add'),
    ('CSVR, V-Network', 'Context only, V-Network', 'no target: does joint training improve the backbone itself'),
    ('CSVR, V-Network', 'Random init, V-Network', 'pretraining gain of CSVR\'s backbone'),
    ('Context only, V-Network', 'Random init, V-Network', 'pretraining gain of the context branch alone'),
    ('CSVR, f_d', 'Pose only, f_d', 'does joint training change the pose encoder'),
    ('Pose only, f_d', 'Random init, f_d', 'pretraining gain of the pose branch alone'),
    ('CSVR, f_i', 'CSVR, f_d', 'what the video backbone adds to the pose features'),
)
CONTEXT_TARGET, POSE_TARGET = 3.0, 0.5   # context top-1 >= 3x chance; pose MSE <= 0.5x repeat-last
GAIN_TARGET, GAIN_LOW_TARGET = 0.20, 0.10  # CSVR f_i linear probe: +20 points, lower end of the interval > +10


def row_name(method, features):
  return f'{method}, {FEATURE_LABELS[features]}'


def outcome_matrix(outcome, metric):
  """(N,) per-test-video outcome (1.0 correct / hit) of one evaluation, or None when it did not run."""
  labels = np.asarray(outcome['labels'])
  if metric.startswith('R@'):
    if 'first_hit_rank' not in outcome:
      return None
    return (np.asarray(outcome['first_hit_rank'], np.float64) < int(metric[2:])).astype(np.float64)
  if metric not in outcome['predictions']:
    return None
  return (np.asarray(outcome['predictions'][metric]) == labels).astype(np.float64)


def load_outcomes(config, workdir):
  """{dataset: {row: {seed: outcome}}} of every finished evaluation of the configured jobs."""
  out = {}
  for job in jobs.all_jobs(config):
    for features in jobs.BY_NAME[job.method].features:
      path = jobs.outcomes_path(workdir, job, features)
      if os.path.exists(path):
        with open(path) as f:
          out.setdefault(job.dataset, {}).setdefault(row_name(job.method, features), {})[job.seed] = json.load(f)
  return out


def stacked(by_seed, metric, seeds):
  """(S, N) outcomes of one row and metric over `seeds` (all must be there), or None."""
  rows = [outcome_matrix(by_seed[s], metric) for s in seeds if s in by_seed]
  if len(rows) != len(seeds) or any(r is None for r in rows):
    return None
  return np.stack(rows)


def _check_same_videos(rows):
  labels = {json.dumps(o['labels']) for by_seed in rows.values() for o in by_seed.values()}
  if len(labels) > 1:
    raise RuntimeError('study: outcome files of one dataset disagree on the test videos (labels differ); remove the '
                       'stale ones (their dataset was rebuilt?)')


def dataset_summary(config, rows):
  """rows: {row: {seed: outcome}} of one dataset -> intervals, comparisons, pretext metrics and curves."""
  _check_same_videos(rows)
  s, seeds = config.study, tuple(int(x) for x in config.study.seeds)
  ci = lambda x: stats.interval(x, s.bootstrap_samples, s.confidence, seed=0)
  out = {'rows': {}, 'comparisons': [], 'num_test_videos': None}
  seed_sd, halfwidth = [], []
  for row, by_seed in rows.items():
    for metric in METRICS:
      x = stacked(by_seed, metric, seeds)
      if x is not None:
        out['rows'].setdefault(row, {})[metric] = ci(x)
        out['num_test_videos'] = int(x.shape[1])
        one = ci(x[:1])
        halfwidth.append((one['high'] - one['low']) / 2)
        if len(seeds) > 1:
          seed_sd.append(float(np.std(x.mean(axis=1), ddof=1)))
  # What one run (one seed) of this study can tell apart: the half-width of its interval over the test videos, and
  # how far seeds scatter (medians over rows and metrics).
  out['one_run_noise'] = {'video_halfwidth': float(np.median(halfwidth)) if halfwidth else None,
                          'seed_sd': float(np.median(seed_sd)) if seed_sd else None}
  for a, b, why in COMPARISONS:
    if a not in rows or b not in rows:
      continue
    entry = {'a': a, 'b': b, 'why': why, 'metrics': {}}
    for metric in METRICS:
      xa, xb = stacked(rows[a], metric, seeds), stacked(rows[b], metric, seeds)
      if xa is not None and xb is not None:
        entry['metrics'][metric] = stats.paired_difference(xa, xb, s.bootstrap_samples, s.confidence, seed=0)
    out['comparisons'].append(entry)
  out['pretext'], out['curves'] = pretext_summary(config, rows, seeds)
  # The linear probe's L2 weight, chosen per probe by cross-validation on its training videos (evaluate.fit_probe).
  out['probe_l2'] = {row: [by_seed[k].get('linear_probe_l2') for k in seeds if k in by_seed]
                     for row, by_seed in rows.items()}
  return out


def final_pretext(outcome):
  """The pretext metrics of the pretraining run's last evaluated step ({} for random init)."""
  steps = sorted(outcome.get('pretext', {}), key=int)
  return dict(outcome['pretext'][steps[-1]], step=int(steps[-1])) if steps else {}


def pretext_summary(config, rows, seeds):
  """Per pretrained method: each final pretext metric with its baseline and their ratio over the seeds, and the
  curves (mean over seeds at every evaluated step)."""
  s = config.study
  per_method, curves = {}, {}
  for row, by_seed in rows.items():
    method = row.split(', ')[0]
    if method in per_method or not any(o.get('pretext') for o in by_seed.values()):
      continue
    finals = [final_pretext(by_seed[sd]) for sd in seeds if sd in by_seed]
    values = {}
    for key in sorted({k for f in finals for k in f if k not in ('step', 'epoch')}):
      vals = [f[key] for f in finals if f.get(key) is not None]
      if len(vals) == len(seeds):
        values[key] = stats.seed_interval(vals, s.bootstrap_samples, s.confidence)
    for ratio, (num, den) in {'context/top1_over_chance': ('context/top1', 'context/chance'),
                              'pose/mse_over_repeat_last': ('pose/mse_x100', 'pose/repeat_last_mse_x100')}.items():
      vals = [f[num] / f[den] for f in finals if f.get(num) is not None and f.get(den)]
      if len(vals) == len(seeds):
        values[ratio] = stats.seed_interval(vals, s.bootstrap_samples, s.confidence)
    per_method[method] = {'step': finals[0].get('step') if finals else None, 'metrics': values}
    curve = {}
    for o in by_seed.values():
      for step, m in o.get('pretext', {}).items():
        for k, v in m.items():
          if v is not None:
            curve.setdefault(int(step), {}).setdefault(k, []).append(v)
    curves[method] = {step: {k: float(np.mean(v)) for k, v in m.items()} for step, m in sorted(curve.items())}
  return per_method, curves


def _comparison(ds, a, b, metric='linear_probe'):
  return next((c['metrics'].get(metric) for c in ds['comparisons'] if (c['a'], c['b']) == (a, b)), None)


def targets(datasets):
  """The issue's targets: [{'name', 'dataset', 'kind' (points | ratio), 'value' (an interval; None: a row did not
  run), 'met' (None: no target)}]."""
  out = []
  for name, ds in datasets.items():
    d = _comparison(ds, 'CSVR, f_i', 'Random init, f_i')
    out.append({'name': 'CSVR f_i linear probe >= Random init f_i + 20 points, interval low > +10', 'dataset': name,
                'kind': 'points', 'value': d, 'met': None if d is None else bool(d['mean'] >= GAIN_TARGET and d['low'] > GAIN_LOW_TARGET)})
    d = _comparison(ds, 'CSVR, f_i', 'Random init, V-Network')
    out.append({'name': '(the same against Random init, V-Network)', 'dataset': name, 'kind': 'points', 'value': d,
                'met': None if d is None else bool(d['mean'] >= GAIN_TARGET and d['low'] > GAIN_LOW_TARGET)})
    if name == 'motion':
      d = _comparison(ds, 'CSVR, f_i', 'Context only, V-Network')
      out.append({'name': 'motion only: CSVR f_i linear probe > Context only, interval excludes 0', 'dataset': name,
                  'kind': 'points', 'value': d, 'met': None if d is None else bool(d['low'] > 0)})
    csvr = ds['pretext'].get('CSVR', {}).get('metrics', {})
    v = csvr.get('context/top1_over_chance')
    out.append({'name': 'CSVR context-matching top-1 >= 3x chance', 'dataset': name, 'kind': 'ratio', 'value': v,
                'met': None if v is None else bool(v['mean'] >= CONTEXT_TARGET)})
    v = csvr.get('pose/mse_over_repeat_last')
    out.append({'name': 'CSVR pose MSE <= 0.5x repeat-last-pose', 'dataset': name, 'kind': 'ratio', 'value': v,
                'met': None if v is None else bool(v['mean'] <= POSE_TARGET)})
    d = _comparison(ds, 'CSVR, V-Network', 'Context only, V-Network')
    out.append({'name': 'no target: CSVR V-Network - Context only (linear probe)', 'dataset': name, 'kind': 'points',
                'value': d,
                'met': None})
  return out


def summarize(config, workdir, design):
  """The 'study' part of results.json (module docstring)."""
  datasets = {name: dataset_summary(config, rows) for name, rows in load_outcomes(config, workdir).items()}
  return {'design': design, 'datasets': datasets, 'targets': targets(datasets)}
