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
# Files go out in xdist's order (most tests first; a worker takes the next file when its own has at most two tests
# left), which puts the quick study, its file's first test and the longest of the suite (~410 CPU-s), third, beside
# the in-process tests of the two largest files; the multi-process tests (elastic resume, two processes) and the
# notebook come late, the notebook after the quick study has compiled the programs the two share. Two explicit
# orders of the long files measured slower (docs/performance.md).
FIRST_IN_FILE = ('tests/test_study.py::test_quick_study_runs_resumes_and_repeats_exactly',)


def pytest_collection_modifyitems(config, items):
  del config
  items.sort(key=lambda item: item.nodeid not in FIRST_IN_FILE)  # stable: the rest keep their order
