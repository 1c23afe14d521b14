r"""Paired differences between rows of two study workdirs: an ablation rerun against the study's own rows.

  python -m csvr_jax.study.compare --config=configs/study.py \
      --a=runs/study:CSVR:vnet --b="runs/ctx500:Context only:vnet" [--metric=linear_probe]

Each side is workdir:method:features. Both must hold the same datasets, seeds and test videos (the same draw and
config.study.seeds); the seeds pair by position and the videos exactly, with the study's crossed bootstrap
(csvr_jax/study/stats.py). Prints, per dataset, each side's mean with its 95% interval and A - B with its interval,
in points, and the per-seed values.
"""
import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

from csvr_jax.study import jobs
from csvr_jax.study import stats
from csvr_jax.study import summary


def define_flags():
  config_flags.DEFINE_config_file('config', None, 'The study config both workdirs ran (datasets, seeds).',
                                  lock_config=True)
  flags.DEFINE_string('a', None, 'workdir:method:features, e.g. runs/study:CSVR:vnet')
  flags.DEFINE_string('b', None, 'workdir:method:features, e.g. "runs/ctx500:Context only:vnet"')
  flags.DEFINE_string('metric', 'linear_probe', 'linear_probe | knn | finetune | R@k')
  flags.mark_flags_as_required(['config', 'a', 'b'])


def parse_side(text):
  """'workdir:method:features' -> (workdir, method, features); one-line errors for unknown names."""
  parts = text.rsplit(':', 2)
  if len(parts) != 3:
    raise ValueError(f'{text!r}: want workdir:method:features')
  workdir, method, features = parts
  if method not in jobs.BY_NAME or features not in jobs.BY_NAME[method].features:
    raise ValueError(f'{text!r}: method must be one of {sorted(jobs.BY_NAME)} with one of its features')
  return workdir, method, features


def side_outcomes(workdir, method, features, dataset, seeds, metric):
  """(S, N) outcomes of one row of a workdir; FileNotFoundError names the missing file."""
  by_seed = {}
  for seed in seeds:
    path = jobs.outcomes_path(workdir, jobs.Job(dataset, int(seed), method), features)
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path}: no outcomes (has that job finished?)')
    with open(path) as f:
      by_seed[seed] = json.load(f)
  x = summary.stacked(by_seed, metric, list(seeds))
  if x is None:
    raise ValueError(f'{workdir}:{method}:{features} on {dataset}: no {metric!r} outcomes')
  return x, by_seed[seeds[0]]['labels']


def points(r, sign=False):
  f = '+.1f' if sign else '.1f'
  per_seed = ' / '.join(f'{100 * v:{f}}' for v in r['per_seed'])
  return f"{100 * r['mean']:{f}} [{100 * r['low']:{f}}, {100 * r['high']:{f}}] (per seed {per_seed})"


def compare(config, a, b, metric):
  """Printable lines: per dataset, A, B and A - B with 95% intervals."""
  s, lines = config.study, []
  for dataset in s.datasets:
    x_a, labels_a = side_outcomes(*a, dataset, tuple(s.seeds), metric)
    x_b, labels_b = side_outcomes(*b, dataset, tuple(s.seeds), metric)
    if labels_a != labels_b:
      raise ValueError(f'{dataset}: the two workdirs evaluated different test videos (another draw or build?)')
    kw = dict(samples=s.bootstrap_samples, confidence=s.confidence, seed=0)
    lines += [f'{dataset} {metric}: A {points(stats.interval(x_a, **kw))}',
              f'{dataset} {metric}: B {points(stats.interval(x_b, **kw))}',
              f'{dataset} {metric}: A - B {points(stats.paired_difference(x_a, x_b, **kw), sign=True)}']
  return lines


def compare_or_exit(config, a, b, metric):
  """compare(), with a missing or mismatched workdir as a one-line error (SystemExit) instead of a traceback."""
  try:
    return compare(config, parse_side(a), parse_side(b), metric)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'compare: {e}') from None


def main(argv):
  del argv
  for line in compare_or_exit(flags.FLAGS.config, flags.FLAGS.a, flags.FLAGS.b, flags.FLAGS.metric):
    print(line)


if __name__ == '__main__':
  define_flags()
  app.run(main)
