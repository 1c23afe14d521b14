r"""Yardsticks from simple supervised models on the study's own clips: what the data allows, apart from CSVR.

  python -m csvr_jax.study.yardsticks --config=configs/study.py:validation \
      --dataset_dir=data/study/validation/motion/synth_motion/1.0.0 [--train_batches=400] [--vnet_steps=800] \
      [--pose_g_steps=8000]

Motion energy: is the class visible in the pixels' motion at the study's clip shapes? A logistic regression on
the clip's absolute grey-level frame differences, average-pooled to 8x8 per frame pair, trained on pretraining
clips of the train split and scored on held-out clips of the eval split (clip-level top-1). If it is well above
chance while a supervised V-Network is not, the motion is in the pixels and the network or its recipe misses it.

Pose prediction: the study's target asks the pose GAN for a prediction MSE at most half of repeating the last observed pose. This
fits a deterministic regressor (scikit-learn MLP, two hidden layers of 256) from the observed poses to the future
displacement from the last observed pose, on pretraining samples of the train split, and scores it on held-out
samples of the eval split with the pretext metric (masked MSE x100, pretext.py): what a model trained with full
supervision and no adversarial term reaches on the same inputs. A GAN sample is worse than the best deterministic
predictor by the spread of its samples, so a regressor near the target means the target is near what the data
allows.

Pose generator with the L2 term alone (--pose_g_steps > 0): the study's own G_p (config.model: widths, layers,
output) trained on eq. 1's L2 term only (no discriminator), with the recipe's optimiser (SGD, momentum, weight
decay, lr = config.optim.lr_per_sample x batch) and a cosine decay over the steps, on the same training samples
as the MLP: once on their held-out views (centre square, as the metric sees them) and once on pretraining views
(the recipe's random resized crop and flip, as the GAN trains on them); scored on the held-out samples with one
noise draw per sample, as the pretext metric. It says how many samples the network needs to reach the target
without the adversarial term, and what the crop augmentation costs the pretext metric.

Supervised V-Network (--vnet_steps > 0): the study's V-Network (config.model.vnet at config.model.width) with a
linear classifier, trained from random initialisation with labels on finetune-loader clips of the train split
(the study's random resized crop and flip), once on the RGB clips and once on their frame differences (T-1
frames, the same network), and scored on the evaluation clips (centre crop, num_eval_clips per video). Adam at a
constant learning rate, no device augmentation: a plain recipe, not the library's finetune. If the network learns
the classes from frame differences but not from RGB, it can represent the motion and the RGB input lets it fit
something else first (each training video's own scene and clothing).

Output: the motion-energy probe's top-1, one line per pose predictor (repeat-last, MLP, 10-NN, the pose generator
on each view) with its MSE x100 and ratio, then the supervised V-Network's test top-1 from RGB and from frame
differences.
"""
import itertools

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags


def define_flags():
  """Command-line flags, defined only when run as a program (tests import the functions)."""
  config_flags.DEFINE_config_file('config', None, 'A study config (clip length, stride, future length).',
                                  lock_config=True)
  flags.DEFINE_string('dataset_dir', None, 'The dataset (a folder with dataset_info.json).')
  flags.DEFINE_integer('train_batches', 400, 'Training samples, in batches of 16.')
  flags.DEFINE_integer('test_batches', 40, 'Held-out samples, in batches of 16.')
  flags.DEFINE_integer('vnet_steps', 0, 'Supervised V-Network steps per input (RGB, frame differences); 0: skip.')
  flags.DEFINE_integer('vnet_batch', 32, 'Supervised V-Network batch size.')
  flags.DEFINE_float('vnet_lr', 1e-3, 'Supervised V-Network learning rate (Adam, constant).')
  flags.DEFINE_integer('pose_g_steps', 0, 'Steps of the pose generator trained on the L2 term alone; 0: skip.')
  flags.DEFINE_integer('pose_g_batch', 16, 'Its batch size (the paper pretrains at 16).')
  flags.mark_flags_as_required(['config', 'dataset_dir'])


FLAGS = flags.FLAGS


def load(config, dataset_dir, split, batches, seed, augmented=False):
  """`batches` pretraining batches of 16 (held-out view, no augmentation; `augmented`: the recipe's pretraining
  views) -> dict of arrays: poses (B, T, 2N), confidences (B, T, N), labels (B,) and the clips' motion-energy
  features (B, (T-1)*64)."""
  from csvr_jax.data import pipeline  # deferred: the flag parser runs first
  from csvr_jax.train import pretext
  data = config.data if augmented else pretext.held_out_data_config(config.data)
  it = iter(pipeline.pretrain_loader(data, dataset_dir, split, 16, seed=seed, num_workers=0))
  keys = ('pose_in', 'pose_in_conf', 'pose_gt', 'pose_gt_conf', 'label')
  out = {k: [] for k in keys + ('motion_energy',)}
  for _ in range(batches):
    b = next(it)
    for k in keys:
      out[k].append(np.asarray(b[k], np.float32))
    out['motion_energy'].append(motion_energy(np.asarray(b['clip'], np.float32)))
  out = {k: np.concatenate(v) for k, v in out.items()}
  for k in ('pose_in', 'pose_gt'):  # (B, T, N, 2) -> (B, T, 2N), x and y interleaved per joint
    out[k] = out[k].reshape(out[k].shape[:2] + (-1,))
  return out


def motion_energy(clip):
  """(B, T, H, W, 3) pixel values -> (B, (T-1) * 64): |grey frame t+1 - frame t| average-pooled to 8x8."""
  diff = np.abs(np.diff(clip.mean(axis=-1), axis=1))
  b, t, h, w = diff.shape
  return diff.reshape(b, t, 8, h // 8, 8, w // 8).mean(axis=(3, 5)).reshape(b, -1)


def motion_energy_top1(train, test):
  """Clip-level top-1 of a logistic regression on standardised motion-energy features."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import StandardScaler
  scale = StandardScaler().fit(train['motion_energy'])
  model = LogisticRegression(C=0.1, max_iter=2000).fit(scale.transform(train['motion_energy']), train['label'])
  return float(model.score(scale.transform(test['motion_energy']), test['label']))


def inputs_and_last(d):
  """Regressor inputs (poses relative to the person's centre, validity) and the last observed pose (B, 2N)."""
  from csvr_jax.models import pose_gan
  last = np.asarray(pose_gan.last_observed_pose(d['pose_in'], d['pose_in_conf'] > 0))
  b = len(last)
  centre = last.reshape(b, -1, 2).mean(axis=1)                                        # (B, 2)
  valid = np.repeat(d['pose_in_conf'] > 0, 2, axis=-1)
  rel = (d['pose_in'] - np.tile(centre, last.shape[1] // 2)[:, None]) * valid
  x = np.concatenate([rel.reshape(b, -1), valid.reshape(b, -1), last - np.tile(centre, last.shape[1] // 2)], 1)
  return x, last


def mse_x100(pred, d):
  """The pretext metric: MSE over the valid future coordinates, x100."""
  w = np.repeat(d['pose_gt_conf'] > 0, 2, axis=-1)
  return 100.0 * float(np.sum(w * (pred - d['pose_gt']) ** 2) / max(np.sum(w), 1))


def predictors(train, test):
  """{name: (B, T', 2N) predictions on `test`} for repeat-last and the regressors fitted on `train`."""
  from sklearn.neighbors import KNeighborsRegressor
  from sklearn.neural_network import MLPRegressor
  x_tr, last_tr = inputs_and_last(train)
  x_te, last_te = inputs_and_last(test)
  steps = test['pose_gt'].shape[1]
  w_tr = np.repeat(train['pose_gt_conf'] > 0, 2, axis=-1)
  y_tr = ((train['pose_gt'] - last_tr[:, None]) * w_tr).reshape(len(x_tr), -1)  # missing joints: no displacement
  out = {'repeat last': np.broadcast_to(last_te[:, None], test['pose_gt'].shape)}
  mlp = MLPRegressor(hidden_layer_sizes=(256, 256), alpha=1e-3, early_stopping=True, max_iter=500, random_state=0)
  for name, model in (('MLP 256x256', mlp), ('10-NN', KNeighborsRegressor(10))):
    model.fit(x_tr, y_tr)
    out[name] = last_te[:, None] + model.predict(x_te).reshape(len(x_te), steps, -1)
  return out


def fit_pose_generator(config, train, test, steps, batch_size, seed=0):
  """The study's G_p trained on eq. 1's L2 term alone (module docstring) -> its (B, T', 2N) predictions on test."""
  import jax
  import jax.numpy as jnp
  import optax
  from csvr_jax import losses
  from csvr_jax.models import pose_gan
  m, o = config.model, config.optim
  g = pose_gan.PoseGenerator(channels=m.pose_channels, encoder_layers=m.pose_encoder_layers,
                             noise_dim=m.pose_noise_dim, out_len=test['pose_gt'].shape[1], output=m.pose_output)
  lr = optax.cosine_decay_schedule(o.lr_per_sample * batch_size, steps)
  tx = optax.chain(optax.add_decayed_weights(o.weight_decay), optax.sgd(lr, momentum=o.momentum))
  valid = lambda d, i: (d['pose_in_conf'][i] > 0).astype(np.float32)
  rng = np.random.default_rng(seed)
  noise = lambda n: jnp.asarray(rng.normal(size=(n, m.pose_noise_dim)), jnp.float32)
  variables = g.init(jax.random.PRNGKey(seed), train['pose_in'][:2], valid(train, slice(0, 2)), noise(2))
  params, stats = variables['params'], variables.get('batch_stats', {})
  opt = tx.init(params)

  @jax.jit
  def step(params, stats, opt, pose_in, valid_in, pose_gt, valid_gt, z):
    def loss_fn(p):
      (pred, _), new = g.apply({'params': p, 'batch_stats': stats}, pose_in, valid_in, z, train=True,
                               mutable=['batch_stats'])
      return losses.pose_l2_loss(pred, pose_gt, valid_gt), new.get('batch_stats', {})
    (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), stats, opt

  for _ in range(steps):
    i = rng.integers(0, len(train['pose_in']), batch_size)
    params, stats, opt = step(params, stats, opt, train['pose_in'][i], valid(train, i), train['pose_gt'][i],
                              train['pose_gt_conf'][i] > 0, noise(batch_size))
  n = len(test['pose_in'])
  pred, _ = g.apply({'params': params, 'batch_stats': stats}, test['pose_in'], valid(test, slice(0, n)), noise(n),
                    train=False)
  return np.asarray(pred)


def frame_differences(x):
  """(B, T, H, W, C) normalised clips -> (B, T-1, H, W, C) differences of consecutive frames."""
  return x[:, 1:] - x[:, :-1]


def supervised_vnet_top1(config, train_batches, test_clips, test_labels, inputs='rgb', lr=1e-3, seed=0):
  """Trains the study's V-Network + a linear classifier with labels; -> (last-100-step train top-1, test top-1).

  train_batches: iterable of {'clip' uint8 (B, T, S, S, 3), 'label'} (one step each); test_clips uint8
  (N, T, S, S, 3). inputs: 'rgb' or 'frame_diff'.
  """
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax
  from csvr_jax import models
  from csvr_jax.data import augment
  if inputs not in ('rgb', 'frame_diff'):
    raise ValueError(f'inputs={inputs!r}: choose rgb or frame_diff')
  mean, std = config.data.mean, config.data.std
  num_classes = int(config.study.classes)

  class Classifier(nn.Module):
    @nn.compact
    def __call__(self, clip, train):
      x = augment.normalize(clip, mean, std)
      if inputs == 'frame_diff':
        x = frame_differences(x)
      f = models.get_video_backbone(config.model.vnet, width=config.model.width)(x, train)['pooled']
      return nn.Dense(num_classes)(f)

  model, tx = Classifier(), optax.adam(lr)
  train_batches = iter(train_batches)
  first = next(train_batches)
  train_batches = itertools.chain([first], train_batches)
  variables = model.init(jax.random.PRNGKey(seed), jnp.asarray(first['clip'][:2]), train=False)
  params, stats = variables['params'], variables.get('batch_stats', {})
  opt = tx.init(params)

  @jax.jit
  def step(params, stats, opt, clip, label):
    def loss_fn(p):
      logits, new = model.apply({'params': p, 'batch_stats': stats}, clip, train=True, mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean(), (new['batch_stats'], logits)
    (_, (stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), stats, opt, jnp.mean(logits.argmax(-1) == label)

  predict = jax.jit(lambda p, s, x: model.apply({'params': p, 'batch_stats': s}, x, train=False).argmax(-1))
  hits = []
  for batch in train_batches:
    params, stats, opt, hit = step(params, stats, opt, jnp.asarray(batch['clip']), jnp.asarray(batch['label']))
    hits.append(float(hit))
  pred = np.concatenate([np.asarray(predict(params, stats, test_clips[i:i + 256]))
                         for i in range(0, len(test_clips), 256)])
  return float(np.mean(hits[-100:])), float(np.mean(pred == np.asarray(test_labels)))


def supervised_vnet_lines(config, dataset_dir, steps, batch_size, lr):
  """The supervised V-Network yardstick on a dataset: one printable line per input (RGB, frame differences)."""
  from csvr_jax.data import pipeline
  clips, labels = [], []
  for b in pipeline.eval_loader(config.data, dataset_dir, config.data.eval_split, 64, num_workers=0):
    clips.append(b['clip'][b['valid']])
    labels.append(b['label'][b['valid']])
  clips, labels = np.concatenate(clips), np.concatenate(labels)
  lines = []
  for inputs in ('rgb', 'frame_diff'):
    train = pipeline.finetune_loader(config.data, dataset_dir, 'train', batch_size, seed=0, num_workers=0)
    fit, top1 = supervised_vnet_top1(config, itertools.islice(train, steps), clips, labels, inputs, lr)
    lines.append(f'supervised V-Network ({config.model.vnet}, width {config.model.width}) from {inputs}: '
                 f'test top-1 {100 * top1:.1f}% on {len(labels)} clips (train top-1 {100 * fit:.1f}% over the '
                 f'last 100 steps; {steps} steps of {batch_size}, Adam {lr:g})')
  return lines


def main(argv):
  del argv
  config = FLAGS.config
  train = load(config, FLAGS.dataset_dir, 'train', FLAGS.train_batches, seed=1)
  test = load(config, FLAGS.dataset_dir, config.data.eval_split, FLAGS.test_batches, seed=0)
  chance = 1.0 / len(np.unique(train['label']))
  print(f'motion energy: linear top-1 {100 * motion_energy_top1(train, test):.1f}% on {len(test["label"])} '
        f'held-out clips (chance {100 * chance:.1f}%)')
  preds = predictors(train, test)
  base = mse_x100(preds['repeat last'], test)
  if FLAGS.pose_g_steps > 0:
    what = f'pose generator, L2 alone, {FLAGS.pose_g_steps} steps of {FLAGS.pose_g_batch}'
    preds[f'{what}, held-out views'] = fit_pose_generator(config, train, test, FLAGS.pose_g_steps,
                                                          FLAGS.pose_g_batch)
    augmented = load(config, FLAGS.dataset_dir, 'train', FLAGS.train_batches, seed=1, augmented=True)
    preds[f'{what}, pretraining views'] = fit_pose_generator(config, augmented, test, FLAGS.pose_g_steps,
                                                             FLAGS.pose_g_batch)
  for name, p in preds.items():
    m = mse_x100(p, test)
    print(f'{name}: pose MSE x100 {m:.3f}, {m / base:.3f}x repeat-last ({len(test["pose_gt"])} held-out samples)')
  if FLAGS.vnet_steps > 0:
    for line in supervised_vnet_lines(config, FLAGS.dataset_dir, FLAGS.vnet_steps, FLAGS.vnet_batch, FLAGS.vnet_lr):
      print(line, flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
