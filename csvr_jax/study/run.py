"""`--mode=study` (configs/study.py): the evidence study end to end, resumable, with progress and an ETA.

  python -m csvr_jax.main --config=configs/study.py --workdir=runs/study

1. The SynthActions variants of config.study.datasets (datasets.py), generated and built on first use.
2. Every job (dataset x seed x method, jobs.py) that is not finished, in config.study.processes processes (the
   costliest first; a free process takes a job of a method it has run already, else the next one whose method
   is not still compiling its programs in another process: `next_job`). Each job's output goes to
   workdir/logs/<dataset>_seed<k>_<method>.log; the console gets one line per started and finished job, with the
   elapsed time and an ETA from the jobs' estimated costs. The processes share a persistent compile cache
   (<study.data_dir>/jax_cache): every seed and dataset runs the same programs, so each compiles once per machine.
3. workdir/results.json ('runs': every evaluation in report.py's schema; 'study': summary.py) and report.md with a
   plot per dataset (report.py).
Interrupted (Ctrl-C, a killed process): the same command resumes; finished jobs are not redone (their outcome
files exist) and unfinished pretraining / finetuning resumes from its last checkpoint.
"""
import contextlib
import functools
import json
import os
import sys
import time
import traceback

from csvr_jax.study import datasets
from csvr_jax.study import jobs

LOG_DIR = 'logs'


def _fmt(seconds):
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  return f'{h}h{rem // 60:02d}m' if h else f'{rem // 60}m{rem % 60:02d}s'


def job_name(job):
  return f'{job.dataset}_seed{job.seed}_{jobs.experiment.slug(job.method)}'


@contextlib.contextmanager
def output_to(path):
  """Sends this process's stdout and stderr (file descriptors 1 and 2: also XLA's and Grain's) to `path`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  saved = [os.dup(1), os.dup(2)]
  with open(path, 'a') as f:
    os.dup2(f.fileno(), 1)
    os.dup2(f.fileno(), 2)
  try:
    yield
  finally:
    for stream in (sys.stdout, sys.stderr):
      stream.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in saved:
      os.close(fd)


def work(config, dataset_dirs, workdir, job):
  """One job in this process -> (job, seconds, error text or None); its output goes to its log file."""
  start = time.time()
  log = os.path.join(workdir, LOG_DIR, job_name(job) + '.log')
  print(f'study: start {job.dataset} seed {job.seed} {job.method} (pid {os.getpid()}, log {log})', flush=True)
  with output_to(log):
    try:
      jobs.run_job(config, job, dataset_dirs[job.dataset], workdir)
      return job, time.time() - start, None
    except Exception as e:  # pylint: disable=broad-except  # the parent names it and the log, which has it whole
      with open(log, 'a') as f:  # the log itself, whatever sys.stderr is
        traceback.print_exc(file=f)
      return job, time.time() - start, f'{type(e).__name__}: {e}'.splitlines()[0]


def init_worker(cache_dir):
  """A spawned worker: set up what `python -m csvr_jax.main` does (XLA flags, absl flags, compile cache)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from csvr_jax import demo, xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.set_default_xla_flags()
  flags.FLAGS.mark_as_parsed()  # libraries (Grain) read absl flags; nothing here parses a command line
  demo.enable_compilation_cache(cache_dir)


def next_job(pending, running, finished_methods, warm=()):
  """The job a free process starts next, among `pending` (jobs.all_jobs' order):
  1. one of a method this process has run already (`warm`): its jitted programs are still in its memory
     (csvr_jax/train/shared_programs.py), and the job skips tracing them and reading them from the compile cache
     (a CSVR job of the quick study: 16 s instead of 66 s);
  2. else the first whose method has finished a job in this run (its programs are in the shared compile cache)
     or has none running: a later job of a method whose first job is still running would compile the same
     programs beside it; it waits while other methods' jobs can run,
  3. and starts anyway when nothing else is left (better than leaving a process idle)."""
  mine = next((j for j in pending if j.method in warm), None)
  if mine is not None:
    return mine
  busy = {j.method for j in running}
  return next((j for j in pending if j.method in finished_methods or j.method not in busy), pending[0])


def _worker_loop(cache_dir, fn, tasks, results):
  """A study process: takes jobs from `tasks` until None, puts (pid, fn(job)) on `results`."""
  init_worker(cache_dir)
  for job in iter(tasks.get, None):
    results.put((os.getpid(), fn(job)))


class _Process:
  """One spawned study process (forking a process that has started JAX is unsafe) with its own job queue, so that
  the parent chooses which process runs which job (next_job's first rule)."""

  def __init__(self, ctx, cache_dir, fn, results):
    self.tasks = ctx.Queue()
    self.process = ctx.Process(target=_worker_loop, args=(cache_dir, fn, self.tasks, results), daemon=True)
    self.process.start()
    self.job, self.warm = None, set()

  def start(self, job):
    self.job = job
    self.warm.add(job.method)
    self.tasks.put(job)


def _finished(fn, todo, n, cache_dir):
  """Yields (job, seconds, error) for every job of `todo` as it finishes, run in n processes started by next_job;
  a process that dies under its job (killed, out of memory) fails that job and is replaced."""
  import multiprocessing  # pylint: disable=g-import-not-at-top
  import queue  # pylint: disable=g-import-not-at-top
  ctx = multiprocessing.get_context('spawn')
  results = ctx.Queue()
  procs = [_Process(ctx, cache_dir, fn, results) for _ in range(n)]
  pending, finished_methods = list(todo), set()
  try:
    while pending or any(p.job for p in procs):
      for p in procs:
        if p.job is None and pending:
          job = next_job(pending, [q.job for q in procs if q.job], finished_methods, p.warm)
          pending.remove(job)
          p.start(job)
      try:
        pid, result = results.get(timeout=5)
      except queue.Empty:
        for i, p in enumerate(procs):
          if p.job is not None and not p.process.is_alive():
            yield p.job, 0.0, f'its study process (pid {p.process.pid}) died with exit code {p.process.exitcode}'
            procs[i] = _Process(ctx, cache_dir, fn, results)
        continue
      p = next(q for q in procs if q.process.pid == pid)
      p.job = None
      finished_methods.add(result[0].method)
      yield result
    for p in procs:
      p.tasks.put(None)
    for p in procs:
      p.process.join(timeout=60)
  finally:  # interrupted (Ctrl-C, an error): no study process outlives the study
    for p in procs:
      if p.process.is_alive():
        p.process.terminate()
        p.process.join()


def run_jobs(config, todo, dataset_dirs, workdir, cache_dir):
  """Runs `todo` (jobs.all_jobs' order, by `next_job`) in config.study.processes processes, printing progress and
  an ETA."""
  n = max(1, min(config.study.processes, os.cpu_count() or 1, len(todo)))
  costs = {j: jobs.job_cost(config, j.method) for j in todo}
  total, done_cost, failed, start = sum(costs.values()), 0.0, [], time.time()
  fn = functools.partial(work, config, dataset_dirs, workdir)
  results = map(fn, todo) if n == 1 else _finished(fn, todo, n, cache_dir)
  for i, (job, seconds, error) in enumerate(results, 1):
    done_cost += costs[job]
    elapsed = time.time() - start
    eta = (total - done_cost) * elapsed / max(done_cost, 1e-9)
    state = 'FAILED' if error else 'done'
    print(f'study: [{i}/{len(todo)}] {state} {job.dataset} seed {job.seed} {job.method} in {_fmt(seconds)}; '
          f'elapsed {_fmt(elapsed)}, ETA {_fmt(eta) if i < len(todo) else "0m00s"}', flush=True)
    if error:
      failed.append((job, error))
  if failed:
    lines = [f'  {job_name(j)}: {e} (log: {os.path.join(workdir, LOG_DIR, job_name(j))}.log)' for j, e in failed]
    raise RuntimeError(f'study: {len(failed)} jobs failed; rerun the same command to retry them:\n' + '\n'.join(lines))


def design(config):
  """What the study ran (results.json 'design'; report.md's first paragraph)."""
  from csvr_jax.train import schedule  # pylint: disable=g-import-not-at-top
  s, d = config.study, config.data
  stages = {}
  for m in jobs.METHODS:
    if m.branches and m.name in s.methods:
      c = jobs.experiment.method_config(config, m.branches)
      stages[m.name] = [(st.name, st.end - st.start) for st in schedule.resolve_stages(c, c.train.total_steps)]
  return dict(draw=s.draw, data_seed=int(s.data_seeds[s.draw]), datasets={k: float(v) for k, v in s.datasets.items()},
              classes=int(s.classes), train_videos_per_class=int(s.train_videos_per_class),
              test_videos_per_class=int(s.test_videos_per_class), seeds=[int(x) for x in s.seeds],
              methods=list(s.methods), evaluations=list(s.evaluations),
              clip=f'{d.clip_len} frames at stride {d.stride} (+ {d.future_len} future), {d.crop_size}x{d.crop_size} '
                   f'crops of frames with short side {d.short_side}',
              vnet=f'{config.model.vnet} width {config.model.width:g}', batch=int(config.train.batch_size),
              stages=stages, finetune_steps=int(config.finetune.total_steps),
              finetune_batch=int(config.finetune.batch_size), eval_clips=int(d.num_eval_clips),
              bootstrap_samples=int(s.bootstrap_samples), confidence=float(s.confidence))


def merge_runs(config, workdir):
  """Every evaluation's results.json run (report.py's schema) into workdir/results.json."""
  from csvr_jax import report  # pylint: disable=g-import-not-at-top
  for job in jobs.all_jobs(config):
    for features in jobs.BY_NAME[job.method].features:
      eval_dir = os.path.join(jobs.job_dir(workdir, job), f'eval_{jobs.experiment.slug(job.method)}_{features}')
      for r in report.load_results(eval_dir)['runs']:
        report.update_results(workdir, r, r['metrics'], r['per_class_accuracy'])


# Settings that do not change any job's outcome: how the study runs (processes, workers, where the data lie), which
# jobs it has (methods, seeds and datasets: adding some adds jobs) and how the summary is computed from the outcome
# files. Every other key decides what a finished job's outcome files hold.
OUTCOME_FREE_KEYS = ('study.processes', 'study.build_workers', 'study.data_dir', 'study.methods', 'study.seeds',
                     'study.datasets', 'study.bootstrap_samples', 'study.confidence', 'data.num_workers', 'logging')
SETTINGS_FILE = 'study_settings.json'


def outcome_settings(config):
  """The flat settings that decide a job's outcome files (JSON values), each dataset's context included."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top  # (this module starts no JAX)
  flat = traverse_util.flatten_dict(
      json.loads(json.dumps(config.copy_and_resolve_references().to_dict(), default=list)), sep='.')
  keep = {k: v for k, v in flat.items() if not any(k == f or k.startswith(f + '.') for f in OUTCOME_FREE_KEYS)}
  keep.update({f'study.datasets.{name}': float(c) for name, c in config.study.datasets.items()})
  return keep


def check_settings(config, workdir):
  """Refuses to add jobs to a workdir whose finished jobs ran with other settings (their outcome files would be
  mixed with the new ones in one table); records the settings on first use (a workdir from before this check
  has none, and is taken as it is)."""
  path = os.path.join(workdir, SETTINGS_FILE)
  now = outcome_settings(config)
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    # Keys only one side has come from another version of the code, or a dataset one side lacks: not compared.
    differ = sorted(k for k in set(before) & set(now) if before[k] != now[k])
    if differ:
      shown = ', '.join(f'{k} {before.get(k)!r} -> {now.get(k)!r}' for k in differ[:4])
      from csvr_jax import checkpoint  # pylint: disable=g-import-not-at-top  # its ResumeError: a one-line error
      raise checkpoint.ResumeError(f'{path}: the study in this workdir ran with other settings ({shown}'
                       f'{", ..." if len(differ) > 4 else ""}); use another --workdir, or the same settings')
    now = {**before, **now}  # a dataset added keeps the others' entries
  os.makedirs(workdir, exist_ok=True)
  jobs.write_json(path, now)


def record_invocation(workdir, entry):
  """Appends this invocation's timing to workdir/invocations.jsonl; returns every entry (the study's wall time is
  the sum over the invocations that ran jobs: an interrupted study resumed once has two)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'invocations.jsonl')
  with open(path, 'a') as f:
    f.write(json.dumps(entry) + '\n')
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def run(config, workdir):
  """The study (module docstring)."""
  from csvr_jax import demo, report as report_lib  # pylint: disable=g-import-not-at-top
  from csvr_jax.study import report, summary  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  start, load_start = time.time(), os.getloadavg()[0]
  datasets.check(config)
  all_jobs = jobs.all_jobs(config)
  check_settings(config, workdir)
  cache_dir = os.path.join(config.study.data_dir, 'jax_cache')
  demo.enable_compilation_cache(cache_dir)
  dataset_dirs = datasets.build_all(config)
  print('study: datasets ' + ', '.join(f'{k} {v}' for k, v in dataset_dirs.items()), flush=True)
  todo = [j for j in all_jobs if not jobs.is_done(workdir, j)]
  processes = max(1, min(config.study.processes, os.cpu_count() or 1, len(todo) or 1))
  print(f'study: {len(all_jobs)} jobs, {len(all_jobs) - len(todo)} already done, {len(todo)} to run in '
        f'{processes} processes', flush=True)
  if todo:
    run_jobs(config, todo, dataset_dirs, workdir, cache_dir)
  merge_runs(config, workdir)
  info = design(config)
  info['invocations'] = record_invocation(workdir, dict(
      wall=_fmt(time.time() - start), wall_s=round(time.time() - start, 1), jobs_run=len(todo),
      jobs_skipped=len(all_jobs) - len(todo), load_start=round(load_start, 2), load_end=round(os.getloadavg()[0], 2),
      cpus=os.cpu_count(), processes=processes, end=time.strftime('%Y-%m-%d %H:%M')))
  study = summary.summarize(config, workdir, info)
  results = report_lib.load_results(workdir)
  results['study'] = study
  jobs.write_json(os.path.join(workdir, report_lib.RESULTS_FILE), results)
  written = report.write(workdir, study)
  print(f'study: finished in {info["invocations"][-1]["wall"]}; report {written[0]} (summary {written[1]}, '
        f'{len(written) - 2} plots)', flush=True)
  return study
