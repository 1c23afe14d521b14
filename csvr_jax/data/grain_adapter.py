"""Everything csvr_jax relies on in Grain beyond its public API, and the set-up of the processes that read data.

Grain is pinned (pyproject.toml). What an upgrade could change under us, each checked by `check_grain()` and
tests/test_grain_adapter.py (which fails naming the installed Grain version):

1. `grain._src.python.ipc.shared_memory_array.SharedMemoryArray(shape, dtype)`: a numpy array in shared memory,
   the form in which worker processes hand batches to the main process. A batch function that allocates its
   arrays this way (`SharedMemoryOutput.empty`) renders straight into the memory that is handed over, where
   Grain would otherwise copy a finished numpy batch into shared memory.
2. Grain calls `enable_shared_memory_output()` on a Batch's batch_fn inside worker processes (duck typing, as its
   own batching does); `SharedMemoryOutput` answers it.
3. Grain's worker processes read absl flags (its debug flags): a program outside `absl.app.run` must mark the
   flags parsed before it starts workers (`prepare_loader`).
4. `grain.checkpoint` stores one iterator state per JAX process as `process_<i>-of-<n>.json` in the checkpoint
   item's folder (`saved_process_counts`), in the JSON format of `DataLoaderIterator.get_state()` with a
   'worker_count' entry (`state_worker_count`).
5. DataLoader worker processes are started with multiprocessing's 'spawn' by the process that iterates the
   loader (its children), and unpickle the loader's source and transforms when they start: the pipeline's
   sources call `setup_worker_process()` from `__setstate__`, the one hook a DataLoader offers (it takes no
   worker_init_fn).

Process set-up, done when a loader is built (`prepare_loader`) and in every worker (`setup_worker_process`),
never at import:
* glibc malloc: mmap threshold 32 MB, trim threshold 128 MB. A record holds a whole video (a few MB of JPEGs) and
  is read into a fresh buffer per sample; above glibc's default 128 KB threshold each buffer is a new mapping
  whose pages fault in one by one, which made reading a record several times slower (docs/performance.md). The
  price: freed blocks below 32 MB stay in the heap, so RSS can sit somewhat above the live data.
* Parent watch: a worker exits as soon as the process that started it is gone. Grain stops its workers when the
  loader is closed, but a parent killed by SIGKILL (preemption, the OOM killer) closes nothing, and the workers
  would wait forever on their full output queues. The watch waits on the parent's multiprocessing sentinel (a
  pipe that closes when the parent dies) rather than prctl(PR_SET_PDEATHSIG), which fires when the *thread*
  that started the worker ends, and Grain starts workers from short-lived threads.
"""
import ctypes
import functools
import json
import multiprocessing
import os
import re
import sys
import threading

import grain
import numpy as np
from absl import flags

_SHARED_MEMORY_MODULE = 'grain._src.python.ipc.shared_memory_array'
_STATE_FILE = re.compile(r'process_(\d+)-of-(\d+)\.json')
PARENT_GONE_EXIT_CODE = 75  # a worker whose parent died (EX_TEMPFAIL: the run is to be restarted)


class GrainAdapterError(RuntimeError):
  """Grain no longer provides what this adapter relies on; the message names the Grain version."""


def grain_version():
  return getattr(grain, '__version__', 'unknown')


def _broken(what):
  return GrainAdapterError(f'grain {grain_version()}: {what}; csvr_jax/data/grain_adapter.py relies on it '
                           '(update the adapter, or install the pinned grain from pyproject.toml)')


@functools.cache
def _shared_memory_array_class():
  try:
    module = __import__(_SHARED_MEMORY_MODULE, fromlist=['SharedMemoryArray'])
    cls = module.SharedMemoryArray
  except (ImportError, AttributeError) as e:
    raise _broken(f'{_SHARED_MEMORY_MODULE}.SharedMemoryArray is gone ({type(e).__name__}: {e})') from None
  if not (isinstance(cls, type) and issubclass(cls, np.ndarray)):
    raise _broken(f'{_SHARED_MEMORY_MODULE}.SharedMemoryArray is no longer a numpy array class')
  return cls


def shared_memory_array(shape, dtype):
  """An uninitialised array in the shared memory Grain hands worker output over in."""
  try:
    return _shared_memory_array_class()(shape, dtype=dtype)
  except TypeError as e:
    raise _broken(f'SharedMemoryArray(shape, dtype=...) fails ({e})') from None


class SharedMemoryOutput:
  """Base of a Grain batch_fn that allocates its own batch arrays: in worker processes (after Grain's call to
  `enable_shared_memory_output`) `empty` returns shared memory, otherwise plain numpy."""

  _shared_output = False

  def enable_shared_memory_output(self):
    self._shared_output = True

  def empty(self, shape, dtype):
    if self._shared_output:
      return shared_memory_array(shape, dtype)
    return np.empty(shape, dtype)


# ------------------------------------------------------------------------------------ process set-up
@functools.cache
def tune_malloc():
  """glibc mmap / trim thresholds for record-sized buffers (module docstring); once per process; no-op off glibc."""
  if not sys.platform.startswith('linux'):
    return False
  try:
    libc = ctypes.CDLL('libc.so.6')
  except OSError:  # not glibc (e.g. musl): nothing to tune
    return False
  m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter numbers from glibc's malloc.h
  return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 128 << 20))


def _exit_when_parent_is_gone(parent):
  parent_pid = parent.pid
  while parent.is_alive() and os.getppid() == parent_pid:  # getppid: in case the sentinel is held elsewhere
    parent.join(timeout=1.0)
  print(f'data worker {os.getpid()}: parent process {parent_pid} is gone; exiting', file=sys.stderr, flush=True)
  os._exit(PARENT_GONE_EXIT_CODE)  # pylint: disable=protected-access


@functools.cache
def watch_parent():
  """In a multiprocessing child: a daemon thread that ends this process when its parent is gone. Once per
  process; returns the thread (None in a process multiprocessing did not start)."""
  parent = multiprocessing.parent_process()
  if parent is None:
    return None
  thread = threading.Thread(target=_exit_when_parent_is_gone, args=(parent,), name='parent-watch', daemon=True)
  thread.start()
  return thread


def setup_worker_process():
  """Called where a worker unpickles the pipeline (5. in the module docstring): malloc tuning, parent watch.
  Idempotent; in the main process (parent_process() is None) only the malloc tuning happens."""
  tune_malloc()
  watch_parent()


def prepare_loader(num_workers):
  """The loading process's set-up, when a loader is built: malloc tuning, and absl flags marked parsed when
  worker processes will start (3.)."""
  tune_malloc()
  if num_workers > 0 and not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


# ------------------------------------------------------------------------------ checkpointed iterator state
def saved_process_counts(data_item_dir):
  """{n: [process indices]} of the iterator states grain.checkpoint wrote in a checkpoint's data folder
  (4.); {} when it holds none."""
  counts = {}
  for name in sorted(os.listdir(data_item_dir)) if os.path.isdir(data_item_dir) else ():
    match = _STATE_FILE.fullmatch(name)
    if match:
      counts.setdefault(int(match.group(2)), []).append(int(match.group(1)))
  return counts


def state_file(data_item_dir, process_index, process_count):
  return os.path.join(data_item_dir, f'process_{process_index}-of-{process_count}.json')


def state_worker_count(state):
  """Worker processes of a DataLoader iterator state (bytes / str from get_state(), a saved file's text, or a
  dict); None for a state without the entry (the iterators of Grain's dataset API have none)."""
  try:
    state = state if isinstance(state, dict) else json.loads(state)
  except ValueError as e:
    raise _broken(f'an iterator state is no longer JSON ({e})') from None
  count = state.get('worker_count')
  return None if count is None else int(count)


def check_grain():
  """Raises GrainAdapterError (naming the Grain version) unless what 1. and 4. of the module docstring name is
  there; the behaviour (2., 4. and 5. at run time) is covered by tests/test_grain_adapter.py."""
  array = shared_memory_array((2, 3), np.uint8)
  if array.shape != (2, 3) or array.dtype != np.uint8 or not hasattr(array, 'unlink_on_del'):
    raise _broken('SharedMemoryArray(shape, dtype) no longer gives a shared array of that shape and dtype')
  array.unlink_on_del()
  for name in ('CheckpointHandler', 'CheckpointSave', 'CheckpointRestore'):
    if not hasattr(grain.checkpoint, name):
      raise _broken(f'grain.checkpoint.{name} is gone')
