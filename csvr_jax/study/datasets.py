"""The study's SynthActions variants: one per entry of config.study.datasets (name -> context), for one draw.

A draw is a generator seed (config.study.data_seeds[draw]): the `test` draw gives the numbers the study reports;
the `validation` draw is an independent set of videos of the same classes, where every choice made on data (steps,
learning rates) is tuned (configs/study.py:validation). Each variant is generated and built on first use under
<study.data_dir>/<draw>/<name>/ and reused afterwards (data_prep.synth_actions.generate_and_build is idempotent).
"""
import os

DRAWS = ('test', 'validation')


def check(config):
  """One-line errors for study keys that would otherwise fail deep inside a run."""
  s = config.study
  if s.draw not in DRAWS or s.draw not in s.data_seeds:
    raise ValueError(f'config.study.draw={s.draw!r}: choose one of {DRAWS} (with a seed in config.study.data_seeds)')
  if not s.datasets:
    raise ValueError('config.study.datasets is empty: give name -> context, e.g. {"scene": 0.5, "motion": 0.0}')
  for name, context in s.datasets.items():
    if not name.isidentifier() or not 0.0 <= float(context) <= 1.0:
      raise ValueError(f'config.study.datasets.{name}={context}: want an identifier name and 0 <= context <= 1')
  if not s.seeds or len(set(s.seeds)) != len(s.seeds):
    raise ValueError(f'config.study.seeds={tuple(s.seeds)}: give distinct seeds')


def dataset_name(name):
  """The TFDS name of variant `name` ('scene' -> 'synth_scene'): report tables name the dataset by it."""
  return f'synth_{name}'


def build(config, name):
  """Generates and builds variant `name` of the configured draw (cached); returns its dataset dir."""
  from data_prep import synth_actions  # deferred: data_prep is only needed when a dataset is missing
  s = config.study
  return synth_actions.generate_and_build(
      os.path.join(s.data_dir, s.draw, name), num_classes=s.classes,
      videos_per_class=s.train_videos_per_class + s.test_videos_per_class, frames=s.frames, size=s.size,
      seed=int(s.data_seeds[s.draw]), context=float(s.datasets[name]), short_side=config.data.short_side,
      name=dataset_name(name), test_videos_per_class=s.test_videos_per_class, workers=int(s.build_workers))


def build_all(config):
  """{variant name: dataset dir} for every variant of config.study.datasets."""
  check(config)
  return {name: build(config, name) for name in config.study.datasets}
