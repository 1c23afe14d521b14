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
