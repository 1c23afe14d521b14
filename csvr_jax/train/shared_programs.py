"""Jitted programs shared by the runs of one process: the study's jobs, the demo's methods, a test worker's tests.

Every run builds its jitted steps from its config. Two runs whose configs differ only in settings that never reach
a traced computation (HOST_ONLY_KEYS: the seed, which reaches the programs only as an argument, the state's key;
where the data, checkpoints and logs are; the study's, demo's and experiment's bookkeeping) run the same programs,
so the second run gets the first's jitted functions back, with their traces and executables, instead of tracing
and lowering them again and reading them from the persistent compile cache (on the 2-core CPU a CSVR step read
back costs ~1 s, its trace and lowering ~3-10 s; docs/performance.md, the test suite's fourth round).

A key is the kind of program, the config's other settings and whatever else the caller's program depends on (the
mesh, the step count of a learning-rate schedule, the stage, the model). tests/test_shared_programs.py changes every
host-only setting and checks that each shared program traces to the same jaxpr.
"""
import collections
import json

from flax import traverse_util

# Settings read on the host only (dotted prefixes): they decide which data, files and bookkeeping a run has, never
# what its programs compute.
HOST_ONLY_KEYS = ('seed', 'data.dataset_dir', 'data.train_split', 'data.eval_split', 'data.num_workers',
                  'data.prefetch', 'data.shuffle_seed', 'checkpoint', 'logging', 'eval.method_name', 'evals',
                  'experiment', 'study', 'demo')
MAX_PROGRAMS = 16  # least recently used ones are dropped beyond this (a study runs ~6 kinds x 3 methods)

_programs = collections.OrderedDict()


def is_host_only(key):
  return any(key == h or key.startswith(h + '.') for h in HOST_ONLY_KEYS)


def settings_key(config):
  """The config's settings that can reach a traced computation, as one string."""
  flat = traverse_util.flatten_dict(config.copy_and_resolve_references().to_dict(), sep='.')
  return json.dumps({k: v for k, v in flat.items() if not is_host_only(k)}, sort_keys=True, default=repr)


def shared(kind, config, *extra, build):
  """build() the first time (kind, config's settings, *extra) is asked for in this process, the same object after."""
  key = (kind, settings_key(config)) + extra
  if key in _programs:
    _programs.move_to_end(key)
    return _programs[key]
  value = _programs[key] = build()
  while len(_programs) > MAX_PROGRAMS:
    _programs.popitem(last=False)
  return value
