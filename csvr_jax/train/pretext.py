"""Table II's pretext metrics on held-out clips, at every pretraining checkpoint (evaluator type 'pretext').

The paper's Table II follows the pretext tasks through pretraining: context-matching top-1, pose-prediction MSE
(x100) and the Inception Score of generated videos, beside action recognition. Here every metric comes with the
trivial baseline (or reference) it has to beat; names (flat, slash-separated) and definitions:

  context/top1                  video -> I-frame matching top-1 within a batch of train.batch_size held-out clips
                                (objectives.context_metrics: is the closest valid I-frame one of the clip's own?)
  context/chance                1 / batch size: what random embeddings score in expectation (clip i owns n_i of
                                the batch's N valid I-frames, and mean_i n_i / N = 1 / B whatever the masks)
  pose/mse_x100                 100 x mean squared error of the predicted future poses, x and y of every valid
                                future joint (confidence > 0) pooled over all held-out clips; coordinates are
                                fractions of the crop
  pose/repeat_last_mse_x100     the same for repeating each joint's last observed position over the future: the
                                latest input step where that joint is valid; a joint never valid in the input
                                takes the mean of the clip's valid input coordinates (where the person is), and
                                a clip without any valid input joint takes the frame centre (0.5, 0.5)
  video_rec/psnr                PSNR in dB (frames in [-1, 1], peak-to-peak 2) of the reconstructed clip, per clip,
                                averaged over clips
  video_rec/copy_last_psnr      the same for the clip's last frame repeated over the clip (a static video: a
                                reconstruction must beat it to have reproduced any motion)
  video_pred/psnr               PSNR of the predicted future clip
  video_pred/copy_last_psnr     the same for the clip's last frame repeated over the future
  video_rec/inception_score     Inception Score of the reconstructed clips under the IS classifier: exp(E_x KL(
                                p(y|x) || p(y))), p(y) the mean of p(y|x) over all held-out clips (one split)
  video_rec/real_inception_score, video_pred/inception_score, video_pred/real_inception_score: the real clips'
                                IS (the reference), the predicted future clips' and the real future clips'

Held-out samples: pretraining-style samples (clip, future clip, I-frames, poses) of `config.eval.pretext_split`
('' = data.eval_split): the first `config.eval.pretext_batches` batches of the pretraining loader with seed
`config.eval.pretext_seed`, with deterministic views (centre square of the full short side, no flip, no colour
jitter, no blur). Windows and I-frame subsets are drawn from that seed, so every checkpoint sees the same clips;
a split with fewer videos than batches x batch size repeats videos with other windows. Each process loads its
share once and keeps it in memory.

Inference: `objectives.generator_forward` with every branch of config.loss.branches active and no network
trainable, so every network runs in inference mode (BatchNorm running statistics), the video generators render
dense clips, and the generators' noise comes from a fixed key: the same weights give the same numbers, on any
number of devices (one global batch per call, under the same mesh and shard_map as training).

IS classifier (the paper: a C3D classifier, TGAN practice; none is available here): a classifier trained from
random initialisation on the labelled train split of the same dataset by the finetune mode, named by
`config.eval.pretext_classifier` (that run's folder, or a workdir holding exactly one finetune run):

  python -m csvr_jax.main --mode=finetune --config=configs/ucf101_finetune.py --workdir=runs/is_classifier \
      --config.checkpoint.init_from='' --config.eval.method_name=is_classifier
  python -m csvr_jax.main --config=configs/ucf101.py --workdir=runs/csvr \
      --config.eval.pretext_classifier=runs/is_classifier

It must see clips of the pretraining resolution. Without one, the IS metrics are absent (None in results.json)
with the reason in the run's 'pretext_notes'. Results: workdir/results.json, the pretraining run's 'pretext'
keyed by step (report.py), and report.md's Table II.
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax import checkpoint
from csvr_jax import parallel
from csvr_jax import report
from csvr_jax.models import pose_gan
from csvr_jax.train import networks
from csvr_jax.train import objectives
from csvr_jax.train import schedule
from csvr_jax.train import shared_programs

IS_METRICS = ('video_{}/inception_score', 'video_{}/real_inception_score')


# ------------------------------------------------------------------------------------ equations (pure)

def repeat_last_pose(pose_in, conf_in, future_len):
  """The repeat-last-observed-pose baseline (module docstring): (B, T, 2N), (B, T, N) -> (B, future_len, 2N),
  every future step pose_gan.last_observed_pose."""
  last = pose_gan.last_observed_pose(pose_in, conf_in > 0)
  return jnp.broadcast_to(last[:, None], (last.shape[0], future_len, last.shape[1]))


def masked_squared_error(pred, target, conf):
  """Per-sample sum of squared errors over the valid coordinates and their count.

  pred, target: (B, T, 2N); conf: (B, T, N), > 0 where the joint is valid. Returns ((B,), (B,)).
  """
  w = jnp.repeat((conf > 0).astype(jnp.float32), 2, axis=-1)
  err = jnp.sum(w * jnp.square(pred.astype(jnp.float32) - target), axis=(1, 2))
  return err, jnp.sum(w, axis=(1, 2))


def per_sample_mse(video, target):
  """(B, ...) -> (B,) mean squared error per sample."""
  return jnp.mean(jnp.square(video.astype(jnp.float32) - target), axis=tuple(range(1, video.ndim)))


def copy_last_frame(clip, frames):
  """(B, T, H, W, C) -> (B, frames, H, W, C): the clip's last frame repeated."""
  return jnp.broadcast_to(clip[:, -1:], (clip.shape[0], frames) + clip.shape[2:])


def psnr_db(mse, peak_to_peak=2.0):
  """PSNR in dB of per-sample MSEs (numpy); frames in [-1, 1] have peak-to-peak 2 (as objectives.psnr)."""
  return 10.0 * np.log10(peak_to_peak ** 2 / np.maximum(np.asarray(mse, np.float64), 1e-10))


def inception_score(probs):
  """exp(mean_i KL(p(y|x_i) || p(y))) of class probabilities (N, K), p(y) = mean_i p(y|x_i); one split."""
  p = np.asarray(probs, np.float64)
  marginal = np.mean(p, axis=0, keepdims=True)
  kl = np.sum(np.where(p > 0, p * (np.log(np.maximum(p, 1e-30)) - np.log(np.maximum(marginal, 1e-30))), 0.0),
              axis=1)
  return float(np.exp(np.mean(kl)))


# ------------------------------------------------------------------------------------------ inputs

def held_out_data_config(data_config):
  """The data section for held-out samples: a centre square of the full short side (random_crop_box falls back
  to it when no box of area scale 1 and aspect 1 fits; the whole frame when square), no flip, no colour jitter,
  no blur. The I-frames get the same view."""
  d = data_config.copy_and_resolve_references()
  d.crop_scale, d.crop_ratio = (1.0, 1.0), (1.0, 1.0)
  d.flip_prob, d.jitter_prob, d.blur_prob = 0.0, 0.0, 0.0
  return d


def _split(config):
  return config.eval.pretext_split or config.data.eval_split


def load_held_out(config):
  """This process's held-out host batches: a list of config.eval.pretext_batches pretraining-contract batches."""
  from csvr_jax.data import pipeline  # deferred: the Grain/TFDS stack is only needed here
  split, n = _split(config), config.eval.pretext_batches
  if n < 1:
    raise ValueError(f'config.eval.pretext_batches={n}: need at least 1 held-out batch')
  if pipeline.split_size(config.data.dataset_dir, split) < 1:
    raise ValueError(f'config.eval.pretext_split: split {split!r} of {config.data.dataset_dir} has no videos')
  loader = pipeline.pretrain_loader(held_out_data_config(config.data), config.data.dataset_dir, split,
                                    parallel.local_batch_size(config.train.batch_size), seed=config.eval.pretext_seed,
                                    num_workers=0)
  it = iter(loader)
  return [next(it) for _ in range(n)]


def eval_stage(config):
  """Every branch of config.loss.branches active (video targets from config.loss.video_targets), nothing
  trainable: generator_forward then runs every network in inference mode."""
  for b in config.loss.branches:
    if b not in schedule.LOSS_NAMES:
      raise ValueError(f'config.loss.branches: unknown branch {b!r}; choose from {schedule.LOSS_NAMES}')
  targets = schedule.video_targets(config)
  return schedule.Stage('pretext', 0, 0, {b: (targets if b == 'video' else ()) for b in config.loss.branches}, ())


# ------------------------------------------------------------------------------------ IS classifier

def classifier_run_dir(path):
  """config.eval.pretext_classifier -> the finetune run folder holding checkpoints/."""
  if os.path.isdir(os.path.join(path, checkpoint.CHECKPOINT_DIR)):
    return path
  parent = os.path.join(path, 'finetune')
  runs = sorted(d for d in (os.listdir(parent) if os.path.isdir(parent) else ())
                if os.path.isdir(os.path.join(parent, d, checkpoint.CHECKPOINT_DIR)))
  if len(runs) != 1:
    raise ValueError(f'config.eval.pretext_classifier={path!r}: expected a finetune run folder (with '
                     f'{checkpoint.CHECKPOINT_DIR}/) or a workdir with exactly one run under finetune/; found '
                     f'{len(runs)}')
  return os.path.join(parent, runs[0])


def _classifier_arch(saved):
  """(arch, width) of the finetuned backbone, by backbone_init.load_backbone's rule for its init_from."""
  init = saved['checkpoint']['init_from']
  if init and os.path.isdir(init):
    with open(os.path.join(init, checkpoint.META_FILE)) as f:
      meta = json.load(f)
    return meta['arch'], float(meta['width'])
  if init:
    return saved['model']['vnet'], 1.0  # a torchvision .pth/.npz: full width
  return saved['model']['vnet'], float(saved['model']['width'])


class ISClassifier:
  """A finetuned V-Network classifier read from its training checkpoint; `probs(videos)` inside shard_map."""

  def __init__(self, config, path):
    from csvr_jax.models import heads  # pylint: disable=g-import-not-at-top
    from csvr_jax.train import backbone_init  # pylint: disable=g-import-not-at-top
    run_dir = classifier_run_dir(path)
    saved, _ = checkpoint.read_checkpoint_item(run_dir, 'config')
    state, self.step = checkpoint.read_checkpoint_item(run_dir)
    # The saved config is a JSON file from any version of the code: a run from before finetune.features has none.
    features = saved['finetune'].get('features', 'vnet')
    if features != 'vnet':
      raise ValueError(f'config.eval.pretext_classifier={path!r}: finetuned on finetune.features={features!r}; '
                       'the IS classifier must see the video alone (finetune.features=vnet)')
    if saved['data']['crop_size'] != config.data.crop_size:
      raise ValueError(f'config.eval.pretext_classifier={path!r}: trained on {saved["data"]["crop_size"]}-pixel '
                       f'crops, the generated videos have config.data.crop_size={config.data.crop_size}')
    arch, width = _classifier_arch(saved)
    self.backbone = backbone_init.build_backbone(config, arch, width)
    self.head = heads.Classifier(num_classes=int(saved['finetune']['num_classes']),
                                 dropout=float(saved['model']['dropout']))
    self.mean = tuple(float(x) for x in saved['data']['mean'])
    self.std = tuple(float(x) for x in saved['data']['std'])
    self.variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
    self._check_shapes(config, path)
    self.description = f'{arch} width {width:g} finetuned in {os.path.abspath(run_dir)} (step {self.step})'

  def _check_shapes(self, config, path):
    x = jax.ShapeDtypeStruct((1, config.data.clip_len, config.data.crop_size, config.data.crop_size, 3), jnp.float32)
    want = jax.eval_shape(self.backbone.init, jax.random.key(0), x)['params']
    same = jax.tree.structure(want) == jax.tree.structure(self.variables['params']['backbone']) and all(
        tuple(a.shape) == tuple(np.shape(b)) for a, b in zip(jax.tree.leaves(want),
                                                             jax.tree.leaves(self.variables['params']['backbone'])))
    if not same:
      raise ValueError(f'config.eval.pretext_classifier={path!r}: its backbone parameters do not match the network '
                       'its saved config describes')

  def probs(self, variables, videos):
    """videos in [-1, 1] (B, T, S, S, 3) -> (B, K) softmax probabilities (inference mode)."""
    x01 = (videos.astype(jnp.float32) + 1.0) * 0.5
    x = (x01 - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)
    out = self.backbone.apply({'params': variables['params']['backbone'], 'batch_stats': variables['batch_stats']},
                              x, train=False)
    logits = self.head.apply({'params': variables['params']['classifier']}, out['pooled'], train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


# --------------------------------------------------------------------------------- one held-out batch

def batch_statistics(params, batch_stats, classifier_vars, batch, key, *, nets, config, stage, classifier):
  """Inside shard_map (local rows of one global held-out batch) -> replicated per-sample statistics of the
  global batch ({name: (B,) or (B, K)}) and the batch's context top-1 (scalar)."""
  k_aug, k_gen = jax.random.split(key)
  inputs = objectives.prepare_inputs(batch, k_aug, config)  # config has no colour jitter / blur: no augmentation
  (fakes, _), (reals, _, metrics, _) = objectives.generator_forward(params, batch_stats, inputs, k_gen, nets=nets,
                                                                    config=config, stage=stage, dense_video=True)
  out = {}
  if 'context' in stage.losses:
    out['context/top1'] = metrics['context/top1']
  if 'pose' in stage.losses:
    conf = inputs['pose_gt_conf']
    out['pose/sq_err'], out['pose/count'] = masked_squared_error(fakes['pose'], inputs['pose_gt'], conf)
    baseline = repeat_last_pose(inputs['pose_in'], inputs['pose_in_conf'], conf.shape[1])
    out['pose/baseline_sq_err'], _ = masked_squared_error(baseline, inputs['pose_gt'], conf)
  for target in stage.losses.get('video', ()):
    fake, real = fakes['video_' + target], reals['video_' + target]
    out[f'video_{target}/mse'] = per_sample_mse(fake, real)
    out[f'video_{target}/copy_last_mse'] = per_sample_mse(copy_last_frame(inputs['clip_target'], real.shape[1]),
                                                          real)
    if classifier is not None:
      out[f'video_{target}/probs'] = classifier.probs(classifier_vars, fake)
      out[f'video_{target}/real_probs'] = classifier.probs(classifier_vars, real)
  gather = lambda x: x if x.ndim == 0 else jax.lax.all_gather(x, parallel.DATA, tiled=True, to='invarying')
  return {k: gather(v) for k, v in out.items()}


def jit_statistics(config, stage, classifier, mesh):
  """batch_statistics jitted over `mesh`: (params, batch_stats, classifier variables, global held-out batch, key)
  -> replicated statistics. config: with the held-out data section (held_out_data_config)."""
  fn = functools.partial(batch_statistics, nets=networks.Networks(config), config=config, stage=stage,
                         classifier=classifier)
  rep = parallel.REPLICATED
  return jax.jit(parallel.data_parallel(fn, mesh, (rep, rep, rep, parallel.BATCH, rep), rep),
                 compiler_options=parallel.compiler_options(config))


def summarize(stats, batch_size):
  """Host statistics of all held-out batches ({name: [per-batch arrays]}) -> the metrics (module docstring)."""
  cat = lambda k: np.concatenate([np.reshape(x, (-1,) + np.shape(x)[1:]) for x in stats[k]])
  m = {}
  if 'context/top1' in stats:
    m['context/top1'] = float(np.mean(stats['context/top1']))  # equal-size batches: the mean over all clips
    m['context/chance'] = 1.0 / batch_size
  if 'pose/sq_err' in stats:
    count = max(float(np.sum(cat('pose/count'))), 1.0)
    m['pose/mse_x100'] = 100.0 * float(np.sum(cat('pose/sq_err'))) / count
    m['pose/repeat_last_mse_x100'] = 100.0 * float(np.sum(cat('pose/baseline_sq_err'))) / count
  for target in ('rec', 'pred'):
    if f'video_{target}/mse' in stats:
      m[f'video_{target}/psnr'] = float(np.mean(psnr_db(cat(f'video_{target}/mse'))))
      m[f'video_{target}/copy_last_psnr'] = float(np.mean(psnr_db(cat(f'video_{target}/copy_last_mse'))))
    if f'video_{target}/probs' in stats:
      m[f'video_{target}/inception_score'] = inception_score(cat(f'video_{target}/probs'))
      m[f'video_{target}/real_inception_score'] = inception_score(cat(f'video_{target}/real_probs'))
  return m


# ------------------------------------------------------------------------------------------ evaluator

class PretextEvaluator:
  """Held-out batches, the IS classifier and the jitted statistics, built once; `__call__(params, batch_stats)`
  -> metrics. `notes`: {metric: why it is absent}."""

  def __init__(self, config, mesh=None):
    self.mesh = parallel.make_mesh(config) if mesh is None else mesh
    parallel.check_global_batch(config.train.batch_size, self.mesh)
    self.batch_size = config.train.batch_size
    self.seed = config.eval.pretext_seed
    self.config = config.copy_and_resolve_references()
    self.config.data = held_out_data_config(config.data)
    self.stage = eval_stage(config)
    self.batches = load_held_out(config)
    self.notes, self.classifier, classifier_vars = {}, None, {}
    targets = self.stage.losses.get('video', ())
    if targets and config.eval.pretext_classifier:
      self.classifier = ISClassifier(config, config.eval.pretext_classifier)
      classifier_vars = self.classifier.variables
    elif targets:
      for t in targets:
        for name in IS_METRICS:
          self.notes[name.format(t)] = ('absent: no IS classifier (config.eval.pretext_classifier is empty; train '
                                        'one with --mode=finetune from random init, see csvr_jax/train/pretext.py)')
    self.classifier_vars = parallel.replicate(jax.device_get(classifier_vars), self.mesh)
    # Shared by the evaluators of runs with the same settings (shared_programs.py); the IS classifier comes from
    # config.eval.pretext_classifier, one of them.
    self._fn = shared_programs.shared('pretext', config, self.mesh,
                                      build=lambda: jit_statistics(self.config, self.stage, self.classifier, self.mesh))

  def __call__(self, params, batch_stats):
    """Every network's params and batch_stats (name -> tree) -> {metric: float}. A collective: every process."""
    stats = {}
    key = jax.random.PRNGKey(self.seed)
    for i, batch in enumerate(self.batches):
      out = self._fn(params, batch_stats, self.classifier_vars, parallel.host_to_global(batch, self.mesh),
                     jax.random.fold_in(key, i))
      for k, v in jax.device_get(out).items():
        stats.setdefault(k, []).append(np.asarray(v))
    return summarize(stats, self.batch_size)


class PretextMetricsEvaluator:
  """type 'pretext' of the evaluator registry (csvr_jax/train/evaluators.py): the metrics of the module docstring
  from the whole TrainState, also written to workdir/results.json and report.md (process 0). The held-out
  batches and the jitted statistics are built at the first run."""

  def __init__(self, config, workdir):
    self.config, self.workdir, self._evaluator = config, workdir, None

  def run(self, state, step, cache):
    del cache
    if self._evaluator is None:
      self._evaluator = PretextEvaluator(self.config)
    metrics = self._evaluator(state.params, state.batch_stats)
    if jax.process_index() == 0:
      record(self.workdir, self.config, step, metrics, self._evaluator.notes)
    yield from metrics.items()


def _epoch(config, step):
  """Pretraining epochs at `step`: step x global batch / training videos."""
  from csvr_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return step * config.train.batch_size / max(pipeline.split_size(config.data.dataset_dir, config.data.train_split), 1)


def record(workdir, config, step, metrics, notes):
  """Merges the metrics of `step` into workdir/results.json (the pretraining run's 'pretext') and rewrites
  report.md; absent metrics are None there, with their reason in 'pretext_notes'."""
  run = report.pretraining_run(config)
  run['pretext'] = {str(step): {**{k: None for k in notes}, **metrics, 'epoch': _epoch(config, step)}}
  run['pretext_notes'] = dict(notes)
  report.update_results(workdir, run)
  report.write_report(workdir)
