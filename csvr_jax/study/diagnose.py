r"""Where a CSVR pretraining run's networks get their gradients from, at one of its checkpoints.

  python -m csvr_jax.study.diagnose --config=configs/study.py \
      --run=runs/study/scene/seed0/pretrain_csvr [--step=N] [--batches=4]

The study asks why CSVR's V-Network ends where it does against Context only: in the joint stage it receives the
sum of two gradients, sigma_c dL_context/dtheta (what Context only gets alone) and dL_video/dtheta (pixel L2 and
the adversarial term, through f_s -> integration -> the generators). For training batches of the run's data, this
prints the norm of each part with respect to the V-Network and to the pose generator (sigma_p L_pose against
L_video), and the cosine between them (below 0: the video branch pulls the backbone against the context loss).
The networks run as in the joint stage (every network of the losses in training mode, BatchNorm on the batch).
Then, from the run's export: how much of the pooled f_i (the 'fi' downstream features) comes from the poses: per
feature dimension, the share of f_i's variance over test clips that moves when each clip's poses are swapped for
another clip's (Var of the pose part / Var of f_i, assuming the parts add; near 0: f_i carries no pose information,
the integration's gate M keeps f_s), the mean gate M, and the scale of eq. 4's pose term: the standard deviation
over clips of the pooled (1 - M) beta_d against that of the pooled f_i (means over feature dimensions).
Then, where the pose GAN's pretext MSE comes from (`--pose_samples=K`, on the pretext metric's held-out clips):
the MSE of one generator sample (what Table II's metric measures) splits exactly into the error of the mean of
K samples and the samples' spread around that mean, each as a fraction of repeating the last observed pose.
A sampler that draws from the true distribution of futures has a spread equal to the data's own uncertainty, so
its one-sample MSE is about twice the best deterministic predictor's; a spread near 0 says the noise is ignored.
Output: one line per part and a JSON file beside the run (gradients_step<N>.json; a later call adds its parts).
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags


def define_flags():
  """Command-line flags, defined only when run as a program (tests import the functions)."""
  config_flags.DEFINE_config_file('config', None, 'The study config the run was made with.', lock_config=True)
  flags.DEFINE_string('run', None, 'The pretraining folder (with checkpoints/), e.g. .../seed0/pretrain_csvr.')
  flags.DEFINE_integer('step', -1, 'Checkpoint step (-1: the latest).')
  flags.DEFINE_integer('batches', 4, 'Training batches to average the gradients over (0: skip them).')
  flags.DEFINE_integer('pose_samples', 8, 'Pose generator samples per held-out clip for the MSE split (0: skip).')
  flags.mark_flags_as_required(['config', 'run'])


FLAGS = flags.FLAGS

PARTS = ('context', 'video', 'pose')  # each loss alone; its gradient into the networks it reaches


def flat(tree):
  return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(tree)])


def cosine(a, b):
  """Cosine of two gradient vectors (numpy); 0 when either is 0."""
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def restore_state(config, run_dir, step):
  """(mesh, networks, optimizers, TrainState) at checkpoint `step` (-1: the latest) of run_dir."""
  from csvr_jax import checkpoint, parallel  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import networks  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(config)
  nets = networks.Networks(config)
  optimizers = state_lib.make_optimizers(config, config.train.total_steps)
  abstract = state_lib.abstract_state(nets.init, optimizers, jax.random.PRNGKey(config.seed), parallel.replicated(mesh))
  ckpt = checkpoint.TrainCheckpointer(run_dir, config.checkpoint.keep)
  return mesh, nets, optimizers, ckpt.restore(abstract, step=None if step < 0 else step)


def part_gradients(config, restored, num_batches):
  """{part: [{network: flat gradient (numpy)}, ...] per batch} of the `restored` state (restore_state)."""
  from csvr_jax import parallel  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import pretrain, schedule  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import steps as steps_lib  # pylint: disable=g-import-not-at-top
  mesh, nets, optimizers, state = restored
  loader, _ = pretrain.make_loader(config)
  it = iter(loader)
  batches = [parallel.host_to_global(next(it), mesh) for _ in range(num_batches)]
  out = {}
  for part in PARTS:
    if part not in config.loss.branches:
      continue
    losses = {part: schedule.video_targets(config) if part == 'video' else ()}
    stage = schedule.Stage(part, 0, 1, losses, tuple(sorted(schedule.networks_used(losses))))
    fns = steps_lib.StepFns(nets, config, stage, optimizers, mesh)
    wanted = [n for n in ('vnet', 'pose_g') if n in stage.g_names]
    # The generator side's gradient of L (what the alternating update's g_step descends); D's is not needed.
    grads = jax.jit(parallel.data_parallel(lambda s, b: fns.g_grads(s, b, wanted)[0], mesh,  # pylint: disable=cell-var-from-loop
                                           (parallel.REPLICATED, parallel.BATCH), parallel.REPLICATED),
                    compiler_options=parallel.compiler_options(config))
    out[part] = [{n: np.asarray(jax.device_get(flat(g[n]))) for n in wanted}
                 for g in (grads(state, batch) for batch in batches)]
  return out


def summarize(grads):
  """Mean over batches of each part's gradient norm per network and of the cosine between parts."""
  report = {}
  parts = list(grads)
  for network in ('vnet', 'pose_g'):
    have = [p for p in parts if network in grads[p][0]]
    entry = {f'norm/{p}': float(np.mean([np.linalg.norm(b[network]) for b in grads[p]])) for p in have}
    for i, a in enumerate(have):
      for b in have[i + 1:]:
        entry[f'cosine/{a}_{b}'] = float(np.mean([cosine(x[network], y[network])
                                                   for x, y in zip(grads[a], grads[b])]))
    if entry:
      report[network] = entry
  return report


def pose_share_of_fi(config, export_dir, max_batches=8):
  """{'fi_pose_share': mean over dimensions of Var(f_i(poses) - f_i(other clip's poses)) / (2 Var(f_i)),
  'gate_mean': mean of M} on test clips of the eval loader (module docstring); one device."""
  from csvr_jax import parallel  # pylint: disable=g-import-not-at-top
  from csvr_jax.data import augment  # pylint: disable=g-import-not-at-top
  from csvr_jax.models import downstream  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import backbone_init, evaluate  # pylint: disable=g-import-not-at-top
  c = config.copy_and_resolve_references()
  c.checkpoint.init_from, c.finetune.features, c.model.sync_bn = export_dir, 'fi', False
  model, variables, _ = backbone_init.load_downstream(c)
  loader, _ = evaluate.eval_batches(c, c.data.dataset_dir, c.data.eval_split, parallel_mesh(c))

  @functools.partial(jax.jit, compiler_options=parallel.compiler_options(c))
  def pooled(variables, clip, pose_in, conf):
    """-> (pooled f_i (B, C), pooled (1 - M) beta_d (B, C), mean gate M), f_i as DownstreamFeatures('fi')."""
    params, stats = variables['params'], variables['batch_stats']
    of = lambda n: {'params': params[n], **({'batch_stats': stats[n]} if n in stats else {})}
    x = augment.normalize(clip, tuple(c.data.mean), tuple(c.data.std))
    f_s = model.vnet.apply(of('vnet'), x, train=False)['features']
    f_d = model.pose_g.apply(of('pose_g'), *downstream.pose_encoder_inputs(pose_in, conf), train=False)
    f_i, aux = model.integration.apply(of('integration'), f_s, f_d, train=False)
    beta_term = (1 - aux['mask']) * aux['beta']  # what eq. 4-5 add to f_i from the poses alone
    return jnp.mean(f_i, axis=(1, 2, 3)), jnp.mean(beta_term, axis=(1, 2, 3)), jnp.mean(aux['mask'])

  same, swapped, beta, gate = [], [], [], []
  for i, b in enumerate(loader):
    if i == max_batches:
      break
    f, t, m = pooled(variables, b['clip'], b['pose_in'], b['pose_in_conf'])
    g, _, _ = pooled(variables, b['clip'], np.roll(b['pose_in'], 1, axis=0), np.roll(b['pose_in_conf'], 1, axis=0))
    same.append(np.asarray(f))
    swapped.append(np.asarray(g))
    beta.append(np.asarray(t))
    gate.append(float(m))
  same, swapped, beta = np.concatenate(same), np.concatenate(swapped), np.concatenate(beta)
  share = np.var(same - swapped, axis=0) / np.maximum(2 * np.var(same, axis=0), 1e-12)
  return {'fi_pose_share': float(np.mean(share)), 'gate_mean': float(np.nanmean(gate)),
          'fi_std': float(np.mean(np.std(same, axis=0))), 'beta_term_std': float(np.mean(np.std(beta, axis=0)))}


def split_pose_error(samples, target, conf):
  """One-sample squared error = error of the samples' mean + their spread (exact), summed over clips.

  samples: (K, B, T', 2N) generator samples; target: (B, T', 2N); conf: (B, T', N), > 0 where the joint is valid.
  Returns {'sample': mean over the K samples of their squared error, 'mean': squared error of the mean of the K
  samples, 'spread': mean squared distance of the samples from that mean, 'count': valid coordinates}.
  """
  samples = np.asarray(samples, np.float64)
  w = np.repeat(np.asarray(conf) > 0, 2, axis=-1)
  mean = samples.mean(axis=0)
  return {'sample': float(np.mean(np.sum(w * (samples - target) ** 2, axis=(1, 2, 3)))),
          'mean': float(np.sum(w * (mean - target) ** 2)),
          'spread': float(np.mean(np.sum(w * (samples - mean) ** 2, axis=(1, 2, 3)))),
          'count': float(np.sum(w))}


def pose_error_split(config, restored, num_samples):
  """{'sample', 'mean', 'spread': MSE x100, and each '/repeat_last'} on the pretext metric's held-out clips, for
  the `restored` state (restore_state)."""
  from csvr_jax import parallel  # pylint: disable=g-import-not-at-top
  from csvr_jax.train import pretext  # pylint: disable=g-import-not-at-top
  _, nets, _, state = restored
  batches = pretext.load_held_out(config)  # the pretext metric's clips and views
  params, stats = state.params['pose_g'], state.batch_stats['pose_g']

  @functools.partial(jax.jit, compiler_options=parallel.compiler_options(config))
  def sample(pose_in, valid_in, keys):
    draw = lambda k: nets.apply('pose_g', params, stats, pose_in, valid_in, train=False, noise_keys=k)[0][0]
    return jax.vmap(draw)(keys)

  totals = dict(sample=0.0, mean=0.0, spread=0.0, count=0.0, repeat_last=0.0)
  key = jax.random.PRNGKey(config.eval.pretext_seed)
  flat = lambda p: np.asarray(p, np.float32).reshape(p.shape[:2] + (-1,))  # (B, T, N, 2) -> (B, T, 2N)
  for i, b in enumerate(batches):
    pose_in, pose_gt = flat(b['pose_in']), flat(b['pose_gt'])
    conf_in, conf_gt = np.asarray(b['pose_in_conf'], np.float32), np.asarray(b['pose_gt_conf'], np.float32)
    keys = jax.random.split(jax.random.fold_in(key, i), num_samples * len(pose_in)).reshape(num_samples,
                                                                                           len(pose_in), -1)
    part = split_pose_error(sample(pose_in, (conf_in > 0).astype(np.float32), keys), pose_gt, conf_gt)
    base = pretext.repeat_last_pose(pose_in, conf_in, pose_gt.shape[1])
    totals['repeat_last'] += split_pose_error(np.asarray(base)[None], pose_gt, conf_gt)['sample']
    for k, v in part.items():
      totals[k] += v
  count = max(totals.pop('count'), 1.0)
  out = {k: 100.0 * v / count for k, v in totals.items()}
  out.update({f'{k}/repeat_last': out[k] / out['repeat_last'] for k in ('sample', 'mean', 'spread')})
  return {f'pose_{k}': v for k, v in out.items()}


def parallel_mesh(config):
  from csvr_jax import parallel  # pylint: disable=g-import-not-at-top
  return parallel.make_mesh(config)


def main(argv):
  del argv
  from csvr_jax import demo, xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.set_default_xla_flags()
  config = FLAGS.config
  demo.enable_compilation_cache(os.path.join(config.study.data_dir, 'jax_cache'))
  from csvr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  saved, step = checkpoint.read_checkpoint_item(FLAGS.run, 'config', None if FLAGS.step < 0 else FLAGS.step)
  config = config.copy_and_resolve_references()  # the run's dataset, branches and seed, from its checkpoint
  config.data.dataset_dir = saved['data']['dataset_dir']
  config.loss.branches = tuple(saved['loss']['branches'])
  config.seed = int(saved['seed'])
  report = {}
  needs_state = FLAGS.batches > 0 or (FLAGS.pose_samples > 0 and 'pose' in config.loss.branches)
  restored = restore_state(config, FLAGS.run, step) if needs_state else None
  if restored:
    step = int(restored[-1].step)
  if FLAGS.batches > 0:
    grads = part_gradients(config, restored, FLAGS.batches)
    report = summarize(grads)
    for network, entry in report.items():
      print(f'step {step} {network}: ' + ', '.join(f'{k} {v:.4g}' for k, v in entry.items()))
  export = os.path.join(FLAGS.run, 'export')
  if FLAGS.step < 0 and os.path.isdir(export) and 'video' in config.loss.branches:
    report['fi'] = pose_share_of_fi(config, export)
    fi = report['fi']
    print(f'export fi: pose share of pooled f_i {fi["fi_pose_share"]:.4g}, mean gate M {fi["gate_mean"]:.4g}; '
          f'std over clips of the pooled (1 - M) beta_d {fi["beta_term_std"]:.4g} against f_i {fi["fi_std"]:.4g}')
  if FLAGS.pose_samples > 0 and 'pose' in config.loss.branches:
    report['pose'] = pose_error_split(config, restored, FLAGS.pose_samples)
    p = report['pose']
    print(f'pose MSE x100 on held-out clips (repeat-last {p["pose_repeat_last"]:.4g}): one sample '
          f'{p["pose_sample"]:.4g} ({p["pose_sample/repeat_last"]:.3g}x) = mean of {FLAGS.pose_samples} samples '
          f'{p["pose_mean"]:.4g} ({p["pose_mean/repeat_last"]:.3g}x) + spread {p["pose_spread"]:.4g} '
          f'({p["pose_spread/repeat_last"]:.3g}x)')
  path = os.path.join(FLAGS.run, f'gradients_step{step}.json')
  if os.path.exists(path):  # a run diagnosed part by part keeps every part
    with open(path) as f:
      report = {**json.load(f), **report}
  with open(path, 'w') as f:
    json.dump({**report, 'step': step}, f, indent=1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
