"""Evaluators during pretraining, one registry (the shape of big_vision's evaluators/common.py).

Declared in a config file: `config.evals.NAME = dict(type=TYPE, every_steps=N, **options)`:
  every_steps: N > 0 every N steps, -1 every checkpoint (config.checkpoint.every_steps), 0 never; an active
  evaluator also runs at the last step.
  TYPE: a key of REGISTRY -> 'module:Class'. The class is built once per run as `Class(config, workdir,
  **options)` (an option its constructor does not take is a one-line error naming the key) and its
  `run(state, step, cache)` yields (metric, value) pairs from the whole TrainState (every network); `cache` is a
  dict shared by the evaluators of one step (features extracted once for the kNN and the probe).
Each evaluator is its own instance: two of one type with different options both run. Metrics are logged as
'<NAME>/<metric>' in the step's record.
"""
import importlib
import inspect

REGISTRY = {
    'knn': 'csvr_jax.train.evaluate:KnnEvaluator',
    'linear_probe': 'csvr_jax.train.evaluate:LinearProbeEvaluator',
    'pretext': 'csvr_jax.train.pretext:PretextMetricsEvaluator',
}
COMMON_KEYS = ('type', 'every_steps')


def evaluator_class(kind, name='?'):
  if kind not in REGISTRY:
    raise ValueError(f'config.evals.{name}.type={kind!r}: choose one of {sorted(REGISTRY)}')
  module, cls = REGISTRY[kind].split(':')
  return getattr(importlib.import_module(module), cls)


def check_specs(config):
  """One-line errors for every config.evals entry with an unknown type, option or schedule (start-up check)."""
  for name, spec in config.evals.items():
    spec = dict(spec)
    cls = evaluator_class(spec.get('type'), name)  # 'type' is required: no hidden default
    params = inspect.signature(cls.__init__).parameters
    known = [p for p in params if p not in ('self', 'config', 'workdir')]
    unknown = sorted(set(spec) - set(COMMON_KEYS) - set(known))
    if unknown:
      raise ValueError(f'config.evals.{name}: unknown keys {unknown}; {spec["type"]} takes '
                       f'{sorted(set(COMMON_KEYS) | set(known))}')
    if not isinstance(spec.get('every_steps'), int) or spec['every_steps'] < -1:
      raise ValueError(f'config.evals.{name}.every_steps: give a step count, 0 (never) or -1 (every checkpoint)')


def build(config, workdir):
  """[(name, every, evaluator)] of the active entries of config.evals, in name order."""
  check_specs(config)
  out = []
  for name, spec in sorted(config.evals.items()):
    spec = dict(spec)
    every = config.checkpoint.every_steps if spec['every_steps'] == -1 else spec['every_steps']
    if every == 0:
      continue
    options = {k: v for k, v in spec.items() if k not in COMMON_KEYS}
    out.append((name, every, evaluator_class(spec['type'], name)(config, workdir, **options)))
  return out


def run_due(evaluators, state, step, total_steps):
  """{'<name>/<metric>': value} of the evaluators due at `step` ({} when none is). A collective: call it on
  every process at every step."""
  out, cache = {}, {}
  for name, every, evaluator in evaluators:
    if step % every == 0 or step == total_steps:
      out.update({f'{name}/{k}': float(v) for k, v in evaluator.run(state, step, cache)})
  return out
