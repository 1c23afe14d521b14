"""The evidence study: its bootstrap against direct formulas, its summary on synthetic outcomes, and the quick
variant end to end (resumes without redoing anything; the same command gives identical numbers)."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import study as study_config
from csvr_jax.study import jobs
from csvr_jax.study import report
from csvr_jax.study import stats
from csvr_jax.study import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------- bootstrap

def test_video_bootstrap_matches_the_normal_interval_of_a_proportion():
  # One seed: the crossed bootstrap is the plain bootstrap of a proportion; for large N its 95% interval is
  # p +- 1.96 sqrt(p (1 - p) / N).
  n, p = 2000, 0.3
  x = np.zeros((1, n))
  x[0, :int(p * n)] = 1.0
  ci = stats.interval(x, samples=20000, seed=1)
  half = 1.96 * np.sqrt(p * (1 - p) / n)
  assert ci['mean'] == pytest.approx(p)
  assert ci['low'] == pytest.approx(p - half, abs=0.003) and ci['high'] == pytest.approx(p + half, abs=0.003)


def test_seed_bootstrap_matches_the_exact_resampling_distribution():
  # One video: the bootstrap means are the means of 3 seeds drawn with replacement; the 27 equally likely draws
  # give their exact distribution.
  values = np.array([0.2, 0.5, 0.9])
  exact = np.array([values[list(i)].mean() for i in itertools.product(range(3), repeat=3)])
  means = stats.bootstrap_means(values[:, None], samples=60000, seed=2)
  for v in np.unique(exact):
    assert np.mean(np.isclose(means, v)) == pytest.approx(np.mean(np.isclose(exact, v)), abs=0.01)


def test_crossed_bootstrap_draws_the_same_videos_for_every_seed():
  # x[s, v] = a_s + b_v: a resample's mean is mean(a over drawn seeds) + mean(b over drawn videos), so its variance
  # is var(a) / S + var(b) / N (population variances). Videos drawn per seed would divide the second term by S.
  rng = np.random.default_rng(0)
  a, b = rng.normal(0, 1, 3), rng.normal(0, 1, 50)
  x = a[:, None] + b[None, :]
  means = stats.bootstrap_means(x, samples=40000, seed=3)
  assert np.var(means) == pytest.approx(np.var(a) / 3 + np.var(b) / 50, rel=0.03)


def test_paired_difference_is_the_bootstrap_of_the_difference():
  rng = np.random.default_rng(1)
  xa, xb = (rng.random((3, 40)) < 0.6).astype(float), (rng.random((3, 40)) < 0.4).astype(float)
  assert stats.paired_difference(xa, xb, 500, seed=4) == stats.interval(xa - xb, 500, seed=4)
  same = stats.paired_difference(xa, xa, 500)
  assert (same['mean'], same['low'], same['high']) == (0.0, 0.0, 0.0)
  assert stats.interval(xa, 500, seed=5) == stats.interval(xa, 500, seed=5)  # reproducible
  with pytest.raises(ValueError, match='different shapes'):
    stats.paired_difference(xa, xb[:, :10])


# ------------------------------------------------------------------------------------------- summary

def _outcome(labels, correct, method, features, pretext=None):
  preds = np.where(correct, labels, (labels + 1) % 5)
  return {'labels': labels.tolist(), 'predictions': {'linear_probe': preds.tolist(), 'knn': preds.tolist(),
                                                     'finetune': preds.tolist()},
          'first_hit_rank': np.where(correct, 0, 7).tolist(), 'method': method, 'features': features,
          'pretext': pretext or {}, 'linear_probe_l2': 0.1}


def test_summary_intervals_comparisons_and_targets(tmp_path):
  config = study_config.get_config('quick')
  config.study.seeds = (0, 1)
  config.study.datasets = {'motion': 0.0}
  labels = np.arange(40) % 5
  accuracy = {'CSVR': 0.9, 'Context only': 0.3, 'Pose only': 0.5, 'Random init': 0.2}
  pretext = {'2': {'context/top1': 0.75, 'context/chance': 0.25, 'pose/mse_x100': 1.0,
                   'pose/repeat_last_mse_x100': 4.0}}
  for job in jobs.all_jobs(config):
    for features in jobs.BY_NAME[job.method].features:
      correct = np.arange(40) < accuracy[job.method] * 40
      out = _outcome(labels, correct, job.method, features, pretext if job.method != 'Random init' else None)
      jobs.write_json(jobs.outcomes_path(str(tmp_path), job, features), out)
  study = summary.summarize(config, str(tmp_path), design={})
  ds = study['datasets']['motion']
  assert ds['num_test_videos'] == 40
  assert ds['rows']['CSVR, f_i']['linear_probe']['mean'] == pytest.approx(0.9)
  assert ds['rows']['CSVR, f_i']['R@5']['per_seed'] == [0.9, 0.9]
  diff = next(c for c in ds['comparisons'] if (c['a'], c['b']) == ('CSVR, f_i', 'Random init, f_i'))
  assert diff['metrics']['linear_probe']['mean'] == pytest.approx(0.7)
  # Per video the difference is 1 (28 videos: right in CSVR's row only) or 0, the same for both seeds: its interval is
  # that of a proportion 0.7 of 40 videos, 0.7 +- 1.96 sqrt(0.21 / 40) (normal approximation).
  half = 1.96 * np.sqrt(0.21 / 40)
  assert diff['metrics']['linear_probe']['low'] == pytest.approx(0.7 - half, abs=0.04)
  assert diff['metrics']['linear_probe']['high'] == pytest.approx(0.7 + half, abs=0.04)
  met = {(t['name'].split(':')[0][:20], t['dataset']): t['met'] for t in study['targets']}
  assert all(v in (True, None) for v in met.values()), study['targets']
  assert ds['pretext']['CSVR']['metrics']['context/top1_over_chance']['mean'] == pytest.approx(3.0)
  assert ds['pretext']['CSVR']['metrics']['pose/mse_over_repeat_last']['mean'] == pytest.approx(0.25)
  assert ds['probe_l2']['CSVR, f_i'] == [0.1, 0.1]
  assert '| 90 / 90 | 0.1 / 0.1 |' in report.rows_table(ds)


def test_jobs_start_with_one_of_each_method_and_every_job_is_listed_once():
  config = study_config.get_config()
  order = jobs.all_jobs(config)
  assert len(order) == len(set(order)) == 2 * 3 * 4
  assert order[0].method == 'CSVR' and {j.method for j in order[:4]} == {m.name for m in jobs.METHODS}
  assert [j.method for j in order[4:9]] == ['CSVR'] * 5
  assert jobs.job_cost(config, 'CSVR') > jobs.job_cost(config, 'Context only') > jobs.job_cost(config, 'Random init')


def test_a_method_still_compiling_in_one_process_does_not_start_in_another():
  from csvr_jax.study import run  # pylint: disable=g-import-not-at-top
  order = jobs.all_jobs(study_config.get_config())
  first, later_csvr, context = order[0], order[4], order[1]
  assert first.method == later_csvr.method == 'CSVR' != context.method
  pending = order[1:]
  assert run.next_job(pending, [first], set()) == context  # CSVR is compiling: another method's job goes first
  only_csvr = [j for j in order[4:] if j.method == 'CSVR']
  assert run.next_job(only_csvr, [first], set()) == later_csvr  # only CSVR jobs left: start one, not idle
  assert run.next_job(order[4:], [context], {'CSVR'}) == later_csvr  # CSVR finished once: its programs are cached
  assert run.next_job(order[4:], [order[5]], {'CSVR'}) == later_csvr
  # A process that has run a method takes that method's next job (its traces are in memory), before the order.
  assert run.next_job(order[4:], [], {'CSVR', 'Context only'}, warm={'Context only'}).method == 'Context only'
  assert run.next_job(order[4:], [], set(), warm={'Nothing left'}) == later_csvr


def test_every_method_gets_the_same_pretraining_budget():
  from csvr_jax import experiment  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import schedule  # pylint: disable=g-import-not-at-top
  config = study_config.get_config()
  for m in jobs.METHODS:
    if m.branches:
      c = experiment.method_config(config, m.branches)
      assert schedule.resolve_stages(c, c.train.total_steps)[-1].end == config.train.total_steps


def test_partial_outcomes_names_the_outcome_files_of_unfinished_jobs(tmp_path):
  outcomes = tmp_path / 'motion' / 'seed1' / 'outcomes'
  outcomes.mkdir(parents=True)
  for name in ('csvr_vnet', 'csvr_fi', 'context_only_vnet', 'random_init_vnet', 'random_init_fi', 'random_init_fd'):
    (outcomes / f'{name}.json').write_text('{}')
  # CSVR lacks f_d (interrupted); Context only and Random init are whole; Pose only has none
  assert jobs.partial_outcomes(str(tmp_path)) == [str(outcomes / 'csvr_vnet.json'), str(outcomes / 'csvr_fi.json')]


def test_a_workdir_refuses_jobs_with_other_outcome_settings_and_takes_more_jobs(tmp_path):
  from csvr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from csvr_jax.study import run  # pylint: disable=g-import-not-at-top
  run.check_settings(study_config.get_config(), str(tmp_path))
  more = study_config.get_config()  # more seeds, another dataset, other processes: same outcomes for the old jobs
  more.study.update(seeds=(0, 1, 2, 3), processes=1, datasets={'motion': 0.0, 'half': 0.25})
  run.check_settings(more, str(tmp_path))
  for key, value in (('train.total_steps', 5), ('study.evaluations', ('frozen',)), ('loss.temperature', 0.2)):
    other = study_config.get_config()
    other.update_from_flattened_dict({key: value})
    with pytest.raises(checkpoint.ResumeError, match=rf'study_settings.json: .*\({key} '):
      run.check_settings(other, str(tmp_path))
  moved = study_config.get_config()
  moved.study.datasets = {'motion': 0.1}  # the same name for another variant
  with pytest.raises(checkpoint.ResumeError, match=r'study.datasets.motion 0.0 -> 0.1'):
    run.check_settings(moved, str(tmp_path))


def fake_job(job):
  """A study job for the process tests (module level: the spawned processes unpickle it): 'dies' kills its
  process the way the kernel's OOM killer would, anything else returns at once."""
  if job.method == 'dies':
    os._exit(3)  # pylint: disable=protected-access
  return job, 0.0, None


def test_study_processes_run_every_job_and_a_dead_process_fails_only_its_own():
  import multiprocessing  # pylint: disable=g-import-not-at-top
  from csvr_jax.study import run  # pylint: disable=g-import-not-at-top
  todo = [jobs.Job('motion', seed, method) for seed, method in enumerate(('a', 'dies', 'a', 'b', 'a', 'b'))]
  before = set(multiprocessing.active_children())  # (what earlier tests in this worker may have left)
  results = list(run._finished(fake_job, todo, 2, os.environ.get('JAX_COMPILATION_CACHE_DIR')))  # pylint: disable=protected-access
  assert sorted(j for j, _, _ in results) == sorted(todo)  # each job once, the dead one included
  errors = {j.method: e for j, _, e in results if e}
  assert list(errors) == ['dies'] and errors['dies'].startswith('its study process (pid ')
  assert errors['dies'].endswith('died with exit code 3')
  assert set(multiprocessing.active_children()) <= before  # the replacement and the other process are gone too


def test_a_failed_job_is_named_in_one_line_and_its_log_holds_the_traceback(tmp_path):
  from csvr_jax.study import run  # pylint: disable=g-import-not-at-top
  job = jobs.Job('motion', 0, 'No such method')
  _, _, error = run.work(study_config.get_config('quick'), {'motion': str(tmp_path)}, str(tmp_path), job)
  assert error == "KeyError: 'No such method'"
  log = (tmp_path / run.LOG_DIR / f'{run.job_name(job)}.log').read_text()
  assert 'Traceback' in log and "KeyError: 'No such method'" in log


# ------------------------------------------------------------------------------------------- end to end

def _run_quick(workdir, data_dir, *extra):
  env = dict(os.environ, XLA_FLAGS='', PYTHONPATH=ROOT)  # one CPU device, as a user runs it
  r = subprocess.run([sys.executable, '-m', 'csvr_jax.main', '--config=configs/study.py:quick',
                      f'--workdir={workdir}', f'--config.study.data_dir={data_dir}', *extra], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=1200)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  with open(os.path.join(workdir, 'results.json')) as f:
    return r.stdout, json.load(f)


def test_quick_study_runs_resumes_and_repeats_exactly(tmp_path):
  data_dir = tmp_path / 'data'
  # One process: the study's processes run in test_study_processes_...; here a second one would only take the
  # other xdist worker's core (the suite's CPU time is the bound on the 2-core CI machine).
  out, first = _run_quick(tmp_path / 'a', data_dir, '--config.study.processes=1')
  assert '8 jobs, 0 already done, 8 to run in 1 processes' in out and 'ETA' in out
  study = first['study']
  assert set(study['datasets']) == {'scene', 'motion'}
  for ds in study['datasets'].values():
    assert len(ds['rows']) == 8 and ds['num_test_videos'] == 20
    for metrics in ds['rows'].values():
      assert set(metrics) == set(summary.METRICS)
  assert {t['dataset'] for t in study['targets']} == {'scene', 'motion'}
  report = (tmp_path / 'a' / 'report.md').read_text()
  assert '## Targets' in report and '| CSVR, f_i |' in report and 'Probe L2 per seed' in report
  assert (tmp_path / 'a' / 'study_motion.png').exists() and (tmp_path / 'a' / 'study_scene.png').exists()
  short = (tmp_path / 'a' / 'summary.md').read_text()  # what README quotes
  assert '| CSVR, f_i |' in short and '| Target |' in short and 'Wall time:' in short

  out, again = _run_quick(tmp_path / 'a', data_dir)  # finished jobs are not redone
  assert '8 jobs, 8 already done, 0 to run' in out
  assert again['study']['datasets'] == study['datasets']

  # The same jobs from scratch in another workdir: identical numbers. Jobs are independent of each other (own
  # seed, data order and workdir), so one job checks it: CSVR on one dataset, the job that runs every branch and
  # every evaluation (the other methods' jobs run subsets of the same code). The scene one: in the first run it
  # ran on the programs the motion jobs had traced (csvr_jax/train/shared_programs.py), here in a fresh process.
  _, repeat = _run_quick(tmp_path / 'b', data_dir, "--config.study.datasets={'scene': 0.5}",
                         "--config.study.methods=('CSVR',)")
  assert list(repeat['study']['datasets']) == ['scene']
  rows = repeat['study']['datasets']['scene']['rows']
  assert {name.split(',')[0] for name in rows} == {'CSVR'} and len(rows) == 3
  assert rows == {name: study['datasets']['scene']['rows'][name] for name in rows}

  run = tmp_path / 'a' / 'motion' / 'seed0' / 'pretrain_csvr'  # the diagnosis of a CSVR run (docs/study.md)
  r = subprocess.run([sys.executable, '-m', 'csvr_jax.study.diagnose', '--config=configs/study.py:quick',
                      f'--run={run}', f'--config.study.data_dir={data_dir}', '--batches=1', '--pose_samples=3'],
                     cwd=ROOT, env=dict(os.environ, XLA_FLAGS='', PYTHONPATH=ROOT), capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  with open(run / 'gradients_step2.json') as f:
    diagnosis = json.load(f)
  assert diagnosis['vnet']['norm/context'] > 0 and 0 <= diagnosis['fi']['fi_pose_share'] <= 1
  assert 0 < diagnosis['fi']['beta_term_std'] < diagnosis['fi']['fi_std']
  pose = diagnosis['pose']
  assert pose['pose_sample'] == pytest.approx(pose['pose_mean'] + pose['pose_spread'], rel=1e-6)

  r = subprocess.run([sys.executable, '-m', 'csvr_jax.study.scenes', '--config=configs/study.py:quick',
                      f'--workdir={tmp_path / "a"}', f'--config.study.data_dir={data_dir}', '--probe'],
                     cwd=ROOT, env=dict(os.environ, XLA_FLAGS='', PYTHONPATH=ROOT), capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert '20 test videos' in r.stdout and 'scene probe' in r.stdout
  assert r.stdout.count('| linear_probe |') == 8 and r.stdout.count('| knn |') == 8  # every row of the study

def _launch_gpu_study(out, workdir, data_dir, state_in=''):
  env = dict(os.environ, XLA_FLAGS='', PYTHONPATH=ROOT, PYTHON=sys.executable, WHEELS=str(out / 'no_wheels'),
             OUT=str(out), WORKDIR=str(workdir), DATA_DIR=str(data_dir), STATE_IN=state_in, CACHE_IN='',
             CONFIG='configs/study.py:quick', BUDGET_S='500',
             STUDY_ARGS="\"--config.study.datasets={'motion': 0.0}\" \"--config.study.methods=('Random init',)\" "
                        "\"--config.study.evaluations=('frozen',)\" --config.study.processes=1")
  r = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'gpu_study.sh')], env=env, capture_output=True, text=True,
                     timeout=900)
  assert r.returncode == 0 and 'total ' in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
  return r.stdout


def test_gpu_study_launcher_returns_its_state_and_the_next_call_resumes_from_it(tmp_path):
  """launch/gpu_study.sh on the CPU (quick config, one job): what a device call returns is enough for the next
  call, on a fresh machine (new workdir and data), to go on without redoing finished jobs."""
  out = _launch_gpu_study(tmp_path / 'out1', tmp_path / 'work1', tmp_path / 'data1')
  assert '1 jobs, 0 already done, 1 to run' in out
  returned = {p.name for p in (tmp_path / 'out1').iterdir()}
  assert {'env.txt', 'log.txt', 'state.tgz', 'job_logs.txt', 'report.md', 'summary.md'} <= returned
  assert len(returned) <= 8  # the device tool returns 8 files at most
  out = _launch_gpu_study(tmp_path / 'out2', tmp_path / 'work2', tmp_path / 'data2',
                          state_in=str(tmp_path / 'out1' / 'state.tgz'))
  assert '1 jobs, 1 already done, 0 to run' in out
  assert (tmp_path / 'out2' / 'summary.md').read_text().split('Wall time')[0] == \
      (tmp_path / 'out1' / 'summary.md').read_text().split('Wall time')[0]


# ------------------------------------------------------------------------------------------- pose yardstick

def _constant_velocity_poses(rng, n, t_in=4, t_out=4, joints=18, speed=0.04):
  """Poses moving at a per-sample constant velocity (at most `speed` / 2 per step in x and in y): the future is
  the past extrapolated."""
  start = rng.random((n, 1, joints, 2)) * 0.5 + 0.25
  velocity = (rng.random((n, 1, 1, 2)) - 0.5) * speed
  steps = np.arange(t_in + t_out, dtype=np.float32)[None, :, None, None]
  xy = (start + velocity * steps).astype(np.float32)
  conf = np.ones((n, t_in + t_out, joints), np.float32)
  flat = xy.reshape(n, t_in + t_out, -1)
  return {'pose_in': flat[:, :t_in], 'pose_in_conf': conf[:, :t_in], 'pose_gt': flat[:, t_in:],
          'pose_gt_conf': conf[:, t_in:]}


def test_pose_yardstick_regressor_learns_what_repeat_last_misses():
  from csvr_jax.study import yardsticks
  rng = np.random.default_rng(0)
  train, test = _constant_velocity_poses(rng, 800), _constant_velocity_poses(rng, 200)
  test['pose_gt_conf'][:, :, 3] = 0.0  # a joint missing from the future is not scored
  preds = yardsticks.predictors(train, test)
  w = np.repeat(test['pose_gt_conf'] > 0, 2, axis=-1)
  last = test['pose_in'][:, -1:]
  want = 100 * np.sum(w * (last - test['pose_gt']) ** 2) / np.sum(w)
  assert yardsticks.mse_x100(preds['repeat last'], test) == pytest.approx(want, rel=1e-5)
  assert yardsticks.mse_x100(preds['MLP 256x256'], test) < 0.5 * want


def test_pose_generator_yardstick_learns_constant_velocity_with_the_l2_term_alone():
  from csvr_jax.study import yardsticks
  rng = np.random.default_rng(0)
  train, test = _constant_velocity_poses(rng, 800, speed=0.1), _constant_velocity_poses(rng, 200, speed=0.1)
  config = study_config.get_config()
  config.model.pose_output = 'residual'  # starts at repeat-last: a few hundred steps learn the velocity
  pred = yardsticks.fit_pose_generator(config, train, test, steps=300, batch_size=16)
  last = np.broadcast_to(test['pose_in'][:, -1:], test['pose_gt'].shape)
  assert pred.shape == test['pose_gt'].shape
  assert yardsticks.mse_x100(pred, test) < 0.5 * yardsticks.mse_x100(last, test)


def test_pose_error_splits_into_the_error_of_the_mean_and_the_spread():
  from csvr_jax.study import diagnose
  rng = np.random.default_rng(0)
  samples, target = rng.normal(size=(5, 3, 4, 6)), rng.normal(size=(3, 4, 6))
  conf = rng.uniform(size=(3, 4, 3)) * (rng.random((3, 4, 3)) > 0.3)
  w = np.repeat(conf > 0, 2, axis=-1)
  split = diagnose.split_pose_error(samples, target, conf)
  assert split['count'] == np.sum(w)
  assert split['sample'] == pytest.approx(np.mean([np.sum(w * (s - target) ** 2) for s in samples]))
  assert split['mean'] == pytest.approx(np.sum(w * (samples.mean(0) - target) ** 2))
  assert split['sample'] == pytest.approx(split['mean'] + split['spread'])
  one = diagnose.split_pose_error(samples[:1], target, conf)
  assert one['spread'] == 0.0 and one['sample'] == pytest.approx(one['mean'])


def _blinking_square_clips(rng, n, classes=4):
  """Class k: a bright square blinks in the k-th 8x8 cell of the left column over a random static background."""
  labels = rng.integers(0, classes, n)
  x = np.repeat(rng.random((n, 1, 32, 32, 3)) * 120, 4, axis=1)
  for i, k in enumerate(labels):
    x[i, 1::2, 8 * k:8 * k + 8, 0:8] += 120
  return x.astype(np.uint8), labels.astype(np.int32)


def test_motion_energy_probe_reads_where_the_clip_moves():
  from csvr_jax.study import yardsticks
  rng = np.random.default_rng(0)

  def clips(n):
    x, labels = _blinking_square_clips(rng, n)
    return {'motion_energy': yardsticks.motion_energy(x.astype(np.float32)), 'label': labels}

  assert yardsticks.motion_energy(np.zeros((2, 4, 32, 32, 3))).shape == (2, 3 * 64)
  assert yardsticks.motion_energy_top1(clips(200), clips(100)) > 0.95


def test_supervised_vnet_yardstick_trains_the_study_vnet_on_rgb_and_frame_differences():
  from csvr_jax.study import yardsticks
  config = study_config.get_config('quick')
  with config.unlocked():
    config.study.classes = 4
  rng = np.random.default_rng(0)
  x = rng.random((2, 4, 8, 8, 3)).astype(np.float32)
  np.testing.assert_array_equal(yardsticks.frame_differences(x), x[:, 1:] - x[:, :-1])
  test_clips, test_labels = _blinking_square_clips(rng, 64)
  batches = [dict(zip(('clip', 'label'), _blinking_square_clips(rng, 16))) for _ in range(30)]
  fit, top1 = yardsticks.supervised_vnet_top1(config, batches, test_clips, test_labels, 'frame_diff', lr=3e-3)
  assert top1 > 0.6 and 0.0 <= fit <= 1.0
  _, top1_rgb = yardsticks.supervised_vnet_top1(config, batches[:2], test_clips, test_labels, 'rgb')
  assert 0.0 <= top1_rgb <= 1.0
  with pytest.raises(ValueError, match='frame_diff'):
    yardsticks.supervised_vnet_top1(config, batches[:1], test_clips, test_labels, 'flow')


def test_compare_pairs_rows_of_two_workdirs_by_seed_and_video(tmp_path):
  from csvr_jax.study import compare
  config = study_config.get_config('quick')
  with config.unlocked():
    config.study.datasets = {'scene': 0.5}
    config.study.seeds = (0, 1)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, 40)
  want = {}
  for side, method, features in (('a', 'CSVR', 'vnet'), ('b', 'Context only', 'vnet')):
    want[side] = []
    for seed in (0, 1):
      pred = np.where(rng.random(40) < 0.6, labels, (labels + 1) % 5)
      want[side].append(pred == labels)
      path = jobs.outcomes_path(str(tmp_path / side), jobs.Job('scene', seed, method), features)
      os.makedirs(os.path.dirname(path))
      with open(path, 'w') as f:
        json.dump({'labels': labels.tolist(), 'predictions': {'linear_probe': pred.tolist()}}, f)
  lines = compare.compare(config, (str(tmp_path / 'a'), 'CSVR', 'vnet'),
                          (str(tmp_path / 'b'), 'Context only', 'vnet'), 'linear_probe')
  diff = stats.paired_difference(np.array(want['a'], float), np.array(want['b'], float),
                                 config.study.bootstrap_samples, config.study.confidence, seed=0)
  assert lines[2] == f'scene linear_probe: A - B {compare.points(diff, sign=True)}'
  with pytest.raises(ValueError, match='method must be one of'):
    compare.parse_side('runs/x:Pose only:vnet')
  with pytest.raises(FileNotFoundError, match='no outcomes'):
    compare.compare(config, (str(tmp_path / 'a'), 'CSVR', 'fi'), (str(tmp_path / 'b'), 'Context only', 'vnet'),
                    'linear_probe')
  with pytest.raises(SystemExit, match=r'^compare: .*seed0/outcomes/csvr_fi.json: no outcomes'):  # the CLI's line
    compare.compare_or_exit(config, f'{tmp_path / "a"}:CSVR:fi', f'{tmp_path / "b"}:Context only:vnet', 'linear_probe')
  assert compare.compare_or_exit(config, f'{tmp_path / "a"}:CSVR:vnet', f'{tmp_path / "b"}:Context only:vnet',
                                 'linear_probe') == lines


# ------------------------------------------------------------------------------------------- scenes

def test_video_scene_replays_the_generators_scene_draw():
  from csvr_jax.study import scenes
  classes = ['Walk', 'Run', 'Jump', 'WaveOneHand', 'WaveBothHands']
  names = [f'{c}/v_{c}_g{k + 1:02d}_c01.mp4'.encode() for c in classes for k in range(40)]
  labels = np.repeat(np.arange(5), 40)
  own = [scenes.video_scene(n, classes, seed=3, context=1.0) for n in names]
  assert own == labels.tolist()  # context 1: every video shows its class's scene
  half = np.array([scenes.video_scene(n, classes, seed=3, context=0.5) for n in names])
  assert 0.4 < np.mean(half == labels) < 0.7  # 0.5 + 0.5 / 10 expected
  none = np.array([scenes.video_scene(n, classes, seed=3, context=0.0) for n in names])
  assert len(set(none.tolist())) == 10 and np.mean(none == labels) < 0.2
  assert none.tolist() != [scenes.video_scene(n, classes, seed=4, context=0.0) for n in names]  # another draw
  with pytest.raises(ValueError, match='v_Swim_g01_c01'):
    scenes.video_scene('Swim/v_Swim_g01_c01', classes, 0, 0.5)
  with pytest.raises(ValueError, match='Walk/walk01'):
    scenes.video_scene('Walk/walk01', classes, 0, 0.5)


def test_scene_use_splits_the_predictions_by_the_videos_scenes():
  from csvr_jax.study import scenes
  labels = np.array([0, 1, 2, 3, 0, 1])
  scene = np.array([0, 1, 2, 9, 5, 7])  # the first three show their class's scene
  reads_scene = scene % 4  # a classifier that names the scene's class (scene 9 -> 1, 5 -> 1, 7 -> 3)
  use = scenes.scene_use(reads_scene, labels, scene)
  assert use['matched'] == 1.0 and use['other'] == 0.0 and use['matched_share'] == 0.5
  assert use['scene_led'] == pytest.approx(3 / 6)  # predictions 1, 1, 3 are not the scene's own index
  use = scenes.scene_use(labels, labels, scene)  # reads the motion: right whatever the scene
  assert use['matched'] == use['other'] == 1.0 and use['scene_led'] == 0.5
