"""Frozen-backbone evaluation: retrieval, kNN and linear probe modes, and evaluators during pretraining.

Protocol (the paper, section "Finetuning"): every video of a split is seen as
`data.num_eval_clips` (10) uniformly spaced clips x centre crop; the pooled features of its clips
(`config.finetune.features`, models/downstream.py: the V-Network's, f_i's or f_d's of the clip's poses) are
averaged per video ('video_index', padding rows with valid=False ignored; no video is dropped). Retrieval:
test videos query the train videos by cosine similarity (optionally each set mean-centred first, CoCLR's
--center), R@k counts a hit if any of the top k shares the query's class. The pure metrics live in
downstream_metrics.py and are re-exported here (`retrieval_recall` is the public entry point for features
computed elsewhere).

Modes (`python -m csvr_jax.main --mode=retrieval|linear_probe --config=... --workdir=...`):
the network comes from `config.checkpoint.init_from` (export dir, torchvision .pth/.npz, or '' = random
init, the from-scratch baseline) and `config.finetune.features`; results merge into workdir/results.json and
report.md is rewritten.

Evaluators during pretraining: `KnnEvaluator` and `LinearProbeEvaluator` (types 'knn' and 'linear_probe' of
the registry in csvr_jax/train/evaluators.py), e.g. config.evals.probe = dict(type='linear_probe', every_steps=5000,
dataset_dir='data/ucf101').
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax import parallel
from csvr_jax import report
from csvr_jax.data import augment
from csvr_jax.models import downstream
from csvr_jax.train import downstream_metrics
from csvr_jax.train.downstream_metrics import (average_per_video, classification_metrics, fit_linear_probe,
                                               fit_linear_probe_cv, knn_accuracy, l2_normalize, predict_linear_probe,
                                               retrieval_recall)
from csvr_jax.train import backbone_init

__all__ = ['retrieval_recall', 'knn_accuracy', 'fit_linear_probe', 'fit_linear_probe_cv', 'fit_probe',
           'predict_linear_probe', 'average_per_video', 'classification_metrics', 'extract_video_features',
           'per_video_outputs', 'retrieval_mode', 'linear_probe_mode', 'frozen_modes', 'KnnEvaluator',
           'LinearProbeEvaluator']


# ------------------------------------------------------------------ features

def _feature_step(apply_fn, mesh, mean, std, fast_compile=False):
  """jitted (variables, {'clip': uint8 (B, T, S, S, 3), poses...} split on 'data') -> (B, C) float32 pooled
  features; apply_fn(variables, clip, **poses, train=False) (downstream.call_args). One per process for equal
  models: a bound method (a flax module's `apply`) is cached by its module, which compares by its fields (bound
  methods compare by the identity of theirs, so every run's new module would trace and compile again)."""
  module = getattr(apply_fn, '__self__', None)
  if module is not None and getattr(type(module), '__hash__', None) is not None:
    return _module_feature_step(module, apply_fn.__func__, mesh, mean, std, fast_compile)
  return _jit_feature_step(apply_fn, mesh, mean, std, fast_compile)


@functools.lru_cache(maxsize=8)
def _module_feature_step(module, func, mesh, mean, std, fast_compile):
  return _jit_feature_step(functools.partial(func, module), mesh, mean, std, fast_compile)


@functools.lru_cache(maxsize=8)
def _jit_feature_step(apply_fn, mesh, mean, std, fast_compile):
  def local(variables, inputs):
    x, poses = downstream.call_args(inputs, lambda clips: augment.normalize(clips, mean, std))
    return apply_fn(variables, x, **poses, train=False)['pooled'].astype(jnp.float32)

  return jax.jit(parallel.data_parallel(local, mesh, (parallel.REPLICATED, parallel.BATCH), parallel.BATCH),
                 compiler_options=parallel.fast_compile_options() if fast_compile else None)


@functools.lru_cache(maxsize=8)
def _gather(mesh):
  return jax.jit(lambda t: t, out_shardings=parallel.replicated(mesh))  # every process gets every row


def per_video_outputs(step, variables, batches, num_videos, mesh, input_keys=('clip',)):
  """Runs `step(variables, global inputs) -> (B, D)` over an evaluation loader and averages per video.

  Args:
    step: jitted function of (replicated variables, {key: array} of `input_keys`, split on 'data') -> (B, D)
      split on 'data'.
    variables: the step's variables, already replicated on `mesh`.
    batches: iterable of this process's eval batches {'clip' uint8 (b, T, S, S, 3), 'pose_in', 'pose_in_conf',
      'video_index' (b,), 'valid' (b,) bool, 'label' (b,)}; padding rows have valid=False (and video_index -1).
    num_videos: videos in the split (every one must appear).
    input_keys: the batch keys the step reads (downstream.input_keys of the features).
  Returns:
    (per-video means (num_videos, D) float64, labels (num_videos,) int64), the same on every process.
  """
  outs, index, valid, labels = [], [], [], []
  for batch in batches:
    g = parallel.host_to_global({k: batch[k] for k in tuple(input_keys) + ('video_index', 'valid', 'label')}, mesh)
    out = step(variables, {k: g[k] for k in input_keys})
    rows = jax.device_get(_gather(mesh)((out, g['video_index'], g['valid'], g['label'])))
    for acc, r in zip((outs, index, valid, labels), rows):
      acc.append(np.asarray(r))
  if not outs:
    raise ValueError('the evaluation loader yielded no batch')
  index, valid, labels = np.concatenate(index), np.concatenate(valid).astype(bool), np.concatenate(labels)
  means, _ = average_per_video(np.concatenate(outs), index, valid, num_videos)
  video_labels = np.zeros(num_videos, np.int64)
  video_labels[index[valid]] = labels[valid]
  return means, video_labels


def extract_video_features(apply_fn, variables, batches, num_videos, config, mesh=None, input_keys=('clip',)):
  """Per-video features averaged over the clips of an evaluation loader.

  Args:
    apply_fn: a backbone's `apply(variables, x, train=False) -> {'pooled': (B, C), ...}`, or a
      DownstreamFeatures model's (which also takes the poses; input_keys = downstream.input_keys(features)).
    variables: its {'params', 'batch_stats'}.
    batches, num_videos, input_keys: as in `per_video_outputs`.
    config: the full config (data.mean / data.std normalise the clips).
    mesh: device mesh; batches are split over its 'data' axis (None = built from config.mesh).
  Returns:
    (features (num_videos, C) float64, labels (num_videos,) int64).
  """
  mesh = parallel.make_mesh(config) if mesh is None else mesh
  step = _feature_step(apply_fn, mesh, tuple(map(float, config.data.mean)), tuple(map(float, config.data.std)),
                       bool(config.train.fast_compile))
  return per_video_outputs(step, parallel.replicate(jax.device_get(variables), mesh), batches, num_videos, mesh,
                           input_keys)


def eval_batches(config, dataset_dir, split, mesh):
  """(evaluation loader of this process, number of videos) for `split`, batch config.eval.batch_size."""
  from csvr_jax.data import pipeline  # deferred: the Grain/TFDS stack is only needed here
  parallel.check_global_batch(config.eval.batch_size, mesh, 'config.eval.batch_size')
  num_videos = pipeline.split_size(dataset_dir, split)
  loader = pipeline.eval_loader(config.data, dataset_dir, split, parallel.local_batch_size(config.eval.batch_size))
  return loader, num_videos


def split_features(config, dataset_dir, split, apply_fn, variables, mesh=None, input_keys=('clip',)):
  """Features and labels of every video of `split` through the 10-clip evaluation loader.

  dataset_dir: a dataset folder (or an in-memory list of records, as the pipeline accepts).
  """
  mesh = parallel.make_mesh(config) if mesh is None else mesh
  loader, num_videos = eval_batches(config, dataset_dir, split, mesh)
  return extract_video_features(apply_fn, variables, loader, num_videos, config, mesh, input_keys)


def _prepare(query, gallery, mean_center):
  return l2_normalize(query, mean_center), l2_normalize(gallery, mean_center)


def knn_metrics(config, query, query_labels, gallery, gallery_labels):
  """{'top1': kNN top-1, 'R@k': ...} on (optionally mean-centred) L2-normalised video features."""
  q, g = _prepare(query, gallery, config.eval.mean_center)
  out = {'top1': knn_accuracy(q, query_labels, g, gallery_labels, k=config.eval.knn_k)}
  out.update(retrieval_recall(q, query_labels, g, gallery_labels, ks=tuple(config.eval.retrieval_ks)))
  return out


def fit_probe(config, train_x, train_y, num_classes):
  """The linear probe of config.eval: its L2 weight chosen by cross-validation on (train_x, train_y) among
  config.eval.linear_probe_l2 (downstream_metrics.fit_linear_probe_cv)."""
  return fit_linear_probe_cv(train_x, train_y, num_classes, tuple(config.eval.linear_probe_l2),
                             folds=config.eval.linear_probe_folds)


def linear_probe_metrics(config, query, query_labels, gallery, gallery_labels, num_classes):
  """Trains the probe on the gallery (train) videos, tests on the query videos -> classification metrics."""
  probe = fit_probe(config, gallery, gallery_labels, num_classes)
  return classification_metrics(predict_linear_probe(probe, query), query_labels, num_classes)


# ------------------------------------------------------------------ evaluators during pretraining

class FrozenFeatureEvaluator:
  """Base of the kNN and linear-probe evaluators (csvr_jax/train/evaluators.py): the V-Network's features of a
  query and a gallery split (10-clip protocol), rebuilt from config.model (vnet, width, dtype).

  Options (config.evals entry): dataset_dir ('' = config.data.dataset_dir), query_split ('' =
  config.data.eval_split), gallery_split ('' = config.data.train_split; also the probe's training set).
  """

  def __init__(self, config, workdir, dataset_dir='', gallery_split='', query_split=''):
    del workdir
    self.config = config
    self.dataset_dir = dataset_dir or config.data.dataset_dir
    self.splits = (query_split or config.data.eval_split, gallery_split or config.data.train_split)
    self.apply_fn = backbone_init.build_backbone(config, config.model.vnet, config.model.width).apply

  def features(self, state, cache):
    """((query features, labels), (gallery features, labels)); `cache` ((dataset_dir, split) -> features) is
    shared by the evaluators of one step, so each split is extracted once."""
    vnet = {'params': state.params['vnet'], 'batch_stats': state.batch_stats['vnet']}
    for split in self.splits:
      if (self.dataset_dir, split) not in cache:
        cache[(self.dataset_dir, split)] = split_features(self.config, self.dataset_dir, split, self.apply_fn, vnet)
    return tuple(cache[(self.dataset_dir, split)] for split in self.splits)


class KnnEvaluator(FrozenFeatureEvaluator):
  """type 'knn': kNN top-1 (config.eval.knn_k neighbours) and R@k (config.eval.retrieval_ks), query vs gallery."""

  def run(self, state, step, cache):
    del step
    (q, ql), (g, gl) = self.features(state, cache)
    yield from knn_metrics(self.config, q, ql, g, gl).items()


class LinearProbeEvaluator(FrozenFeatureEvaluator):
  """type 'linear_probe': top-1 of a logistic-regression probe trained on the gallery, tested on the query."""

  def run(self, state, step, cache):
    del step
    (q, ql), (g, gl) = self.features(state, cache)
    num_classes = int(max(ql.max(), gl.max())) + 1
    yield 'top1', linear_probe_metrics(self.config, q, ql, g, gl, num_classes)['top1']


# ------------------------------------------------------------------ modes

def _mode_features(config):
  """config.finetune.features from config.checkpoint.init_from -> train/test features and the run's
  description."""
  model, variables, meta = backbone_init.load_downstream(config)
  keys = downstream.input_keys(config.finetune.features)
  d = config.data
  test = split_features(config, d.dataset_dir, d.eval_split, model.apply, variables, input_keys=keys)
  train = split_features(config, d.dataset_dir, d.train_split, model.apply, variables, input_keys=keys)
  return train, test, report.describe_run(config, meta)


def _finish(workdir, run, metrics, per_class=None, write_report=True):
  if jax.process_index() == 0:
    report.update_results(workdir, run, metrics, per_class)
    if write_report:
      report.write_report(workdir)
    print(' '.join(f'{k} {100 * v:.1f}' for k, v in metrics.items() if v is not None))


def retrieval_results(config, gallery, query):
  """(gallery, query) = ((features, labels), (features, labels)) -> {'knn/top1', 'retrieval/R@k', ...}."""
  m = knn_metrics(config, query[0], query[1], gallery[0], gallery[1])
  return {'knn/top1': m.pop('top1'), **{f'retrieval/{k}': v for k, v in m.items()}}


def linear_probe_results(config, gallery, query, names):
  """-> ({'linear_probe/top1', ...}, {'linear_probe': {class name: accuracy}}); names: the class names."""
  m = linear_probe_metrics(config, query[0], query[1], gallery[0], gallery[1], len(names))
  metrics = {'linear_probe/top1': m['top1'], 'linear_probe/top5': m['top5'],
             'linear_probe/mean_class_accuracy': m['mean_class_accuracy']}
  return metrics, {'linear_probe': dict(zip(names, m['per_class_accuracy'].tolist()))}


def retrieval_mode(config, workdir):
  """`--mode=retrieval`: R@k and kNN top-1 of test videos querying train videos; -> results.json."""
  gallery, query, run = _mode_features(config)
  metrics = retrieval_results(config, gallery, query)
  _finish(workdir, run, metrics)
  return metrics


def linear_probe_mode(config, workdir):
  """`--mode=linear_probe`: multinomial logistic regression on frozen video features; -> results.json."""
  from csvr_jax.data import records  # deferred with the data stack
  gallery, query, run = _mode_features(config)
  metrics, per_class = linear_probe_results(config, gallery, query, records.class_names(config.data.dataset_dir))
  _finish(workdir, run, metrics, per_class)
  return metrics


def frozen_modes(config, workdir, write_report=True):
  """Both `linear_probe_mode` and `retrieval_mode` on one extraction of the frozen features (each mode alone
  extracts the same train and test features); the same metrics under the same keys in results.json."""
  from csvr_jax.data import records  # deferred with the data stack
  gallery, query, run = _mode_features(config)
  metrics, per_class = linear_probe_results(config, gallery, query, records.class_names(config.data.dataset_dir))
  metrics.update(retrieval_results(config, gallery, query))
  _finish(workdir, run, metrics, per_class, write_report)
  return metrics


# Pure metrics, re-exported for `from csvr_jax.train.evaluate import ...`.
first_hit_rank = downstream_metrics.first_hit_rank
knn_predict = downstream_metrics.knn_predict
