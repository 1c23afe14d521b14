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
# not by both (the suite's CPU time is the bound on the 2-core CI machine: docs/performance.md, "Sixth round").
# Files go out in the order of their first test below (--no-loadscope-reorder), a worker taking the next one when
# its own has at most two tests left: the files of the longest tests first (30-410 CPU-s each, ~1,400 together; the
# other ~400 tests take ~730), so that they run beside the many short ones instead of one worker running the quick
# study alone at the end. The notebook's quick demo comes after the files the other worker starts with, so that it
# reads the programs the quick study compiled (the two share their shapes) instead of compiling them beside it.
LONGEST_FIRST = (
    'tests/test_study.py::test_quick_study_runs_resumes_and_repeats_exactly',  # 410 s
    'tests/test_elastic_resume.py::test_checkpoints_resume_after_kill9_and_on_another_number_of_devices',  # 160 s
    'tests/test_multiprocess.py::test_two_processes_with_jax_distributed_hold_identical_params',  # 105 s
    'tests/test_pretrain.py::test_one_stage_and_alternating_give_the_same_gradients',  # 87 + 50 s
    'tests/test_pretrain.py::test_eight_devices_match_one_device',  # 70 s
    'tests/test_demo.py::test_quickstart_notebook_runs_the_quick_demo',  # 150 s after the quick study, 230 s cold
    'tests/test_study.py::test_supervised_vnet_yardstick_trains_the_study_vnet_on_rgb_and_frame_differences',
    'tests/test_experiment.py::test_table1_pose_row_pretrains_the_pose_branch_and_finetunes_f_d',
    'tests/test_pretrain.py::test_end_to_end_two_stages_compile_once_then_export',
    'tests/test_study.py::test_gpu_study_launcher_returns_its_state_and_the_next_call_resumes_from_it',
    'tests/test_finetune.py::test_finetune_learns_and_resumes',
    'tests/test_pose_gan.py::test_residual_generator_starts_at_the_last_observed_pose_and_learns_a_displacement',
    'tests/test_tgan2.py::test_dense_rendering_from_a_tgan2_trained_state',
    'tests/test_experiment.py::test_scratch_row_evaluates_a_random_initialisation',
    'tests/test_data_prep_real_e2e.py::test_clean_and_jerk_build_pretrain_export_retrieve',  # 30 s
)


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split('[')[0], len(rank)))  # stable: the rest keep their order
