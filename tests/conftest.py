"""Test setup: 8 fake CPU devices (for data-parallel code) before jax is imported anywhere, and one persistent
compilation cache for the whole session (docs/performance.md, "The test suite's compile time"): the tests build
the same tiny steps many times, in their own functions and in the subprocesses of the end-to-end tests, and on
the 2-core CI machine tracing and compiling them is most of the suite's time (the cache saves the compiles). The controller makes the directory before
pytest-xdist starts its workers, which inherit the variable; the demo, the study and its tools use it too in
place of their own (parallel.enable_compilation_cache), so the notebook's quick demo reads the programs the quick
study compiled, or the other way round."""
import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='csvr_jax_test_cache_')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], True)
# Tests import `configs` and `data_prep` as top-level packages from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# pytest-xdist hands out whole test files (pytest.ini: --dist loadfile), so that a file's module fixtures and the
# programs its tests trace (csvr_jax/train/shared_programs.py keeps them for the process) are built by one worker,
# not by both: the suite's CPU time is the bound on the 2-core CI machine (docs/performance.md, "Sixth round").
# Files go out in the order below, then the rest in collection order (--no-loadscope-reorder), a worker taking the
# next one when its own has at most two tests left. CPU seconds on the 2-core VM, per file:
# * the quick study (410 of its file's 540) starts at once, beside the in-process engine tests, not beside the
#   tests that run two or three processes of their own (elastic, two processes), which would make 4-5 busy
#   processes on 2 cores;
# * the notebook's quick demo starts once the quick study has compiled the programs the two share (150 s instead
#   of 230 cold);
# * the multi-process tests come before the ~300 short tests, which then even out the two workers' ends.
FILE_ORDER = (
    'tests/test_study.py',  # 540
    'tests/test_pretrain.py',  # 280
    'tests/test_backbones.py',  # 100
    'tests/test_finetune.py',  # 115
    'tests/test_experiment.py',  # 100
    'tests/test_demo.py',  # 150
    'tests/test_bench_steps.py',  # 95
    'tests/test_elastic_resume.py',  # 160, three processes
    'tests/test_multiprocess.py',  # 105, two processes
    'tests/test_pretext.py',  # 70
)
FIRST_IN_FILE = ('tests/test_study.py::test_quick_study_runs_resumes_and_repeats_exactly',)


def pytest_collection_modifyitems(config, items):
  del config
  files = {name: i for i, name in enumerate(FILE_ORDER)}
  first = set(FIRST_IN_FILE)
  items.sort(key=lambda item: (files.get(item.nodeid.split('::')[0], len(files)), item.nodeid not in first))
