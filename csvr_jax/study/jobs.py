"""One job of the study: (dataset, seed, method) pretrained (or randomly initialised) once, then evaluated with
each of the method's features; every evaluation writes the per-test-video outcomes the intervals need.

Layout under the study workdir: <dataset>/seed<k>/ is the experiment workdir of the job's seed
(csvr_jax/experiment.py: pretrain_<method>/ with checkpoints and export/, random_init/export/, eval_<method>_<features>/
with the finetune run and a results.json of the usual schema) and <dataset>/seed<k>/outcomes/<method>_<features>.json:
the test videos' labels and, per evaluation, each video's prediction (linear probe, kNN, finetune) and the rank of
its first same-class neighbour (retrieval R@k), plus the pretraining run's pretext metrics (Table II, per step).
A job whose outcome files all exist is finished: a rerun skips it; an interrupted one resumes from its checkpoints.
"""
import collections
import glob
import json
import os
import time

import numpy as np

from csvr_jax import experiment
from csvr_jax.train import schedule

Method = collections.namedtuple('Method', 'name branches features')
# The rows of the study: pretraining branches (none: random initialisation, the paper's "from scratch") and the
# downstream features each is evaluated with (models/downstream.py). Random init has every feature, so each
# feature has its untrained baseline.
METHODS = (
    Method('CSVR', ('pose', 'context', 'video'), ('vnet', 'fi', 'fd')),
    Method('Context only', ('context',), ('vnet',)),
    Method('Pose only', ('pose',), ('fd',)),
    Method('Random init', (), ('vnet', 'fi', 'fd')),
)
BY_NAME = {m.name: m for m in METHODS}
Job = collections.namedtuple('Job', 'dataset seed method')

# Relative CPU cost of one pretraining step by its active losses, in units of a joint CSVR step, and of the rest
# of a job (SynthActions at 32x32x4, widths 1/8, batch 8; measured with configs/study.py): only for the ETA.
STEP_COST = {'pose': 0.02, 'context': 0.25, 'video': 0.75}
FINETUNE_STEP_COST = 0.05
EVALUATION_COST = 15.0  # feature extraction of the train and test videos + the probe, per features


def check_methods(config):
  unknown = [m for m in config.study.methods if m not in BY_NAME]
  if unknown or not config.study.methods:
    raise ValueError(f'config.study.methods: unknown {unknown}; choose from {[m.name for m in METHODS]}')
  bad = sorted(set(config.study.evaluations) - set(experiment.EVALUATIONS))
  if bad or not config.study.evaluations:
    raise ValueError(f'config.study.evaluations: unknown {bad}; choose from {experiment.EVALUATIONS}')


def all_jobs(config):
  """Every job of the study in the order they start: one job of each method first, the costliest (CSVR) leading
  (their programs differ, so parallel processes compile different programs and fill the shared compile cache for
  the later jobs instead of compiling the same ones side by side), then the rest, the costliest first (so that the
  processes finish together)."""
  check_methods(config)
  jobs = [Job(d, int(s), m) for d in config.study.datasets for s in config.study.seeds for m in config.study.methods]
  jobs.sort(key=lambda j: -job_cost(config, j.method))
  first = [next(j for j in jobs if j.method == m) for m in dict.fromkeys(j.method for j in jobs)]
  return first + [j for j in jobs if j not in first]


def job_config(config, dataset_dir, seed):
  """The study config for one dataset and training seed (initialisation, noise, data order, finetuning)."""
  c = config.copy_and_resolve_references()
  c.seed = int(seed)
  c.data.shuffle_seed = int(seed)
  c.data.dataset_dir = dataset_dir
  return c


def job_dir(workdir, job):
  return os.path.join(workdir, job.dataset, f'seed{job.seed}')


def outcomes_path(workdir, job, features):
  return os.path.join(job_dir(workdir, job), 'outcomes', f'{experiment.slug(job.method)}_{features}.json')


def is_done(workdir, job):
  return all(os.path.exists(outcomes_path(workdir, job, f)) for f in BY_NAME[job.method].features)


def partial_outcomes(workdir):
  """Outcome files of jobs that have only some of theirs (interrupted between two evaluations): the paths, for a
  copy of the study that leaves checkpoints and exports behind (launch/gpu_study.sh) to leave these behind too, so
  that such a job runs again whole instead of mixing two pretraining runs in one row."""
  partial = []
  for outcomes in sorted(glob.glob(os.path.join(workdir, '*', 'seed*', 'outcomes'))):
    for method in METHODS:
      have = [p for p in (os.path.join(outcomes, f'{experiment.slug(method.name)}_{f}.json') for f in method.features)
              if os.path.exists(p)]
      if len(have) < len(method.features):
        partial += have
  return partial


def job_cost(config, method):
  """Estimated cost of a job (STEP_COST units), for ordering and the ETA."""
  m = BY_NAME[method]
  cost = 0.0
  if m.branches:
    c = experiment.method_config(config, m.branches)
    for s in schedule.resolve_stages(c, c.train.total_steps):
      cost += (s.end - s.start) * sum(STEP_COST[l] for l in s.losses)
  per_features = EVALUATION_COST * ('frozen' in config.study.evaluations)
  per_features += FINETUNE_STEP_COST * config.finetune.total_steps * ('finetune' in config.study.evaluations)
  return cost + per_features * len(m.features)


# ------------------------------------------------------------------------------------------- one job

def run_job(config, job, dataset_dir, workdir):
  """Pretrains (or initialises) and evaluates every features of the job that has no outcome file yet."""
  method = BY_NAME[job.method]
  c = job_config(config, dataset_dir, job.seed)
  pending = [f for f in method.features if not os.path.exists(outcomes_path(workdir, job, f))]
  if not pending:
    return
  jd = job_dir(workdir, job)
  start = time.time()
  init_from = experiment.initial_export(c, jd, method.name, method.branches)
  print(f'study: {job.method} initialised in {time.time() - start:.1f} s', flush=True)
  for features in pending:
    start = time.time()
    eval_dir = os.path.join(jd, f'eval_{experiment.slug(method.name)}_{features}')
    out = evaluate_features(experiment.downstream_config(c, init_from, method.name, features), eval_dir)
    out.update(dataset=job.dataset, seed=job.seed, method=job.method, features=features, init_from=init_from,
               **pretext_of(init_from))
    write_json(outcomes_path(workdir, job, features), out)
    print(f'study: {job.method} {features} evaluated in {time.time() - start:.1f} s: '
          + ', '.join(f'{k} {100 * v:.1f}' for k, v in out['metrics'].items()), flush=True)


def pretext_of(export_dir):
  """The pretext metrics (Table II, keyed by step) an export carries; {} for a random initialisation."""
  with open(os.path.join(export_dir, 'meta.json')) as f:
    meta = json.load(f)
  return {'pretext': meta.get('pretext', {}), 'pretext_notes': meta.get('pretext_notes', {})}


def evaluate_features(config, eval_dir):
  """The study's evaluations (config.study.evaluations) of one downstream config -> per-video outcomes and their
  summary metrics; the metrics also go to eval_dir/results.json (report.py's schema)."""
  from csvr_jax import report  # deferred: these import the training stack
  out, meta = {'predictions': {}}, None
  if 'frozen' in config.study.evaluations:
    meta = frozen_outcomes(config, out)
  if 'finetune' in config.study.evaluations:
    meta = finetune_outcomes(config, eval_dir, out)
  labels = np.asarray(out['labels'])
  metrics = {f'{name}/top1': float(np.mean(np.asarray(p) == labels)) for name, p in out['predictions'].items()}
  if 'first_hit_rank' in out:
    ranks = np.asarray(out['first_hit_rank'])
    metrics.update({f'retrieval/R@{k}': float(np.mean(ranks < k)) for k in config.eval.retrieval_ks})
  out['metrics'] = metrics
  report.update_results(eval_dir, report.describe_run(config, meta), metrics)
  return out


def _set_labels(out, labels):
  labels = [int(x) for x in np.asarray(labels)]
  if out.setdefault('labels', labels) != labels:
    raise RuntimeError('study: the test videos come in a different order in two evaluations of one run')


def frozen_outcomes(config, out):
  """Linear probe, kNN and retrieval on one extraction of the frozen features (the 10-clip protocol of
  train/evaluate.py): per test video its probe and kNN predictions and its first same-class rank. -> meta."""
  from csvr_jax.models import downstream  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import backbone_init, downstream_metrics as dm, evaluate  # pylint: disable=g-import-not-at-top
  model, variables, meta = backbone_init.load_downstream(config)
  keys, d = downstream.input_keys(config.finetune.features), config.data
  test_x, test_y = evaluate.split_features(config, d.dataset_dir, d.eval_split, model.apply, variables,
                                           input_keys=keys)
  train_x, train_y = evaluate.split_features(config, d.dataset_dir, d.train_split, model.apply, variables,
                                             input_keys=keys)
  probe = evaluate.fit_probe(config, train_x, train_y, config.finetune.num_classes)
  out['linear_probe_l2'] = probe['l2']
  q, g = dm.l2_normalize(test_x, config.eval.mean_center), dm.l2_normalize(train_x, config.eval.mean_center)
  _set_labels(out, test_y)
  out['predictions']['linear_probe'] = np.argmax(dm.predict_linear_probe(probe, test_x), axis=1).tolist()
  out['predictions']['knn'] = dm.knn_predict(q, g, train_y, k=config.eval.knn_k).tolist()
  out['first_hit_rank'] = dm.first_hit_rank(q, test_y, g, train_y).tolist()
  return meta


def finetune_outcomes(config, eval_dir, out):
  """A short finetune (config.finetune, resumable in eval_dir/finetune/) and its per-video test predictions."""
  from csvr_jax.train import evaluate, finetune  # pylint: disable=g-import-not-at-top
  state, model, classifier, mesh, meta, _ = finetune.train(config, eval_dir)
  batches, num_videos = evaluate.eval_batches(config, config.data.dataset_dir, config.data.eval_split, mesh)
  m = finetune.evaluate_classifier(config, state, model, classifier, mesh, batches, num_videos,
                                   config.finetune.num_classes)
  _set_labels(out, m['labels'])
  out['predictions']['finetune'] = np.argmax(m['probs'], axis=1).tolist()
  return meta


def write_json(path, obj):
  """Atomic write (temp file + rename): an outcome file exists only when complete."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(obj, f)
  os.replace(path + '.tmp', path)
