"""`--mode=pretrain`: CSVR self-supervised pretraining (staged, then joint), data parallel, resumable.

Reads top to bottom: mesh -> data -> model/optimizer -> state -> steps -> restore -> evals -> loop.
A run restarted with the same workdir resumes from its latest checkpoint (train state, data iterator, rng);
SIGTERM saves and exits; a NaN/Inf loss stops with a message naming the loss and the step before anything
non-finite is saved.
"""
import json
import os

import jax
import numpy as np

from csvr_jax import checkpoint
from csvr_jax import metrics as metrics_lib
from csvr_jax import parallel
from csvr_jax.train import evaluators
from csvr_jax.train import loop
from csvr_jax.train import networks
from csvr_jax.train import schedule
from csvr_jax.train import shared_programs
from csvr_jax.train import state as state_lib
from csvr_jax.train import steps as steps_lib


class RunPrograms:
  """What a pretraining run traces and compiles: the networks, the optimizers, the jitted initial state and each
  stage's StepFns. Runs of one process with the same settings share one (shared_programs.py)."""

  def __init__(self, config, mesh, total_steps):
    self.config, self.mesh = config, mesh
    self.nets = networks.Networks(config)
    self.optimizers = state_lib.make_optimizers(config, total_steps)
    self._step_fns, self._init = {}, None

  def step_fns(self, stage):
    """The stage's StepFns, built (and each step compiled) once."""
    key = (stage.name, stage.start, stage.end, json.dumps(stage.losses, sort_keys=True, default=list),
           stage.trainable)
    if key not in self._step_fns:
      self._step_fns[key] = steps_lib.StepFns(self.nets, self.config, stage, self.optimizers, self.mesh)
    return self._step_fns[key]

  def init(self, rng):
    """(jitted rng -> TrainState from the networks' own initialisers, its abstract state): state_lib.jit_init."""
    if self._init is None:
      self._init = state_lib.jit_init(self.nets.init, self.optimizers, rng, parallel.replicated(self.mesh),
                                      parallel.compiler_options(self.config))
    return self._init


def total_steps_of(config, dataset_size):
  """config.train.total_steps, or epochs over the training split at the global batch."""
  if config.train.total_steps > 0:
    return config.train.total_steps
  steps = config.train.epochs * dataset_size // config.train.batch_size
  if steps <= 0:
    raise ValueError(f'config.train.epochs={config.train.epochs} over {dataset_size} videos at '
                     f'config.train.batch_size={config.train.batch_size} gives no steps')
  return steps


def make_loader(config):
  """This process's share of the pretraining batches (Grain DataLoader with checkpointable iterator)."""
  from csvr_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if not config.data.dataset_dir:
    raise ValueError('config.data.dataset_dir is empty: point it at a dataset built by data_prep.build')
  size = pipeline.split_size(config.data.dataset_dir, config.data.train_split)
  loader = pipeline.pretrain_loader(config.data, config.data.dataset_dir, config.data.train_split,
                                    parallel.local_batch_size(config.train.batch_size), seed=config.seed)
  return loader, size


def run(config, workdir):
  parallel.initialize(config)
  loader, dataset_size = make_loader(config)
  return train(config, workdir, iter(loader), total_steps_of(config, dataset_size),
               steps_per_epoch=dataset_size // config.train.batch_size)


def train(config, workdir, data_iter, total_steps, init_variables=None, steps_per_epoch=None):
  """The training loop on `data_iter` (host batches of the pretraining contract, with get_state/set_state).

  init_variables: key -> {network: variables} (traceable); None = the networks' own initialisers.
  steps_per_epoch: resolves stage lengths given in epochs (None: every stage must be given in steps).
  Returns (final TrainState, {stage name: StepFns}). Raises metrics.NonFiniteLossError on NaN/Inf.
  """
  # ------------------------------------------------------------------------------------- mesh
  mesh = parallel.make_mesh(config)
  parallel.check_global_batch(config.train.batch_size, mesh)
  is_main = jax.process_index() == 0

  # ------------------------------------------------------------------------- model/optimizer
  programs = shared_programs.shared('pretrain', config, mesh, total_steps,
                                    build=lambda: RunPrograms(config, mesh, total_steps))
  optimizers = programs.optimizers
  stages = schedule.resolve_stages(config, total_steps, steps_per_epoch)

  # --------------------------------------------------------------- state (fresh, or restored)
  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpoint.TrainCheckpointer(workdir, config.checkpoint.keep)
  rng = jax.random.PRNGKey(config.seed)
  if init_variables is None:
    init, abstract = programs.init(rng)
  else:
    init, abstract = state_lib.jit_init(init_variables, optimizers, rng, parallel.replicated(mesh),
                                        parallel.compiler_options(config))
  if ckpt.latest_step() is not None:  # resuming: the checkpoint's arrays, restored into the state's shapes
    state = ckpt.restore(abstract, data_iter, resume_data_order=config.checkpoint.resume_data_order, config=config)
    if is_main:
      print(f'pretrain: resumed from step {int(state.step)} ({ckpt.directory})', flush=True)
  else:
    state, _ = state_lib.state_from(init, rng)
  if is_main:
    sizes = state_lib.count_params(state.params)
    print(f'pretrain: {total_steps} steps, global batch {config.train.batch_size} on {jax.device_count()} '
          f'devices; stages {[(s.name, s.end - s.start) for s in stages]}; params '
          + ', '.join(f'{k} {v:,}' for k, v in sizes.items()), flush=True)

  # ------------------------------------------------------------------------------------ steps
  step_fns = {}

  def fns_for(stage):
    step_fns[stage.name] = programs.step_fns(stage)
    return step_fns[stage.name]

  # ------------------------------------------------------------------------------------ evals
  evals = evaluators.build(config, workdir)
  writer = metrics_lib.MetricWriter(workdir, total_steps, config.train.batch_size, config.logging.progress_bar,
                                    main_keys=['total/loss', 'context/loss', 'pose/d_loss', 'video_rec/l2'])
  writer.write_config(config)

  def step_fn(state, host_batch, step):
    batch = parallel.host_to_global(host_batch, mesh)
    state, metrics = fns_for(schedule.stage_at(stages, step)).train_step(state, batch, step)
    last_batch[0] = batch
    return state, metrics

  def log_images_hook(step, state):
    stage = schedule.stage_at(stages, step - 1)
    if step % config.logging.image_every_steps == 0 and (stage.losses.keys() & {'pose', 'video'}):
      log_images(writer, step, fns_for(stage), state, last_batch[0])

  def evaluators_hook(step, state):  # their metrics join the step's record (loop.run)
    return evaluators.run_due(evals, state, step, total_steps)

  # ------------------------------------------------------------------------------------- loop
  last_batch = [None]  # the step's global batch, for image logging
  state = loop.run(state, data_iter, step_fn, total_steps=total_steps, config=config, ckpt=ckpt, writer=writer,
                   name='pretrain', hooks=(log_images_hook, evaluators_hook),
                   extra_scalars=lambda step: {'train/lr': float(optimizers['vnet'][1](step - 1))})
  return state, step_fns


def vnet_variables(state):
  """The V-Network's {'params', 'batch_stats'} (what --mode=export writes)."""
  return {'params': state.params['vnet'], 'batch_stats': state.batch_stats['vnet']}


def log_images(writer, step, fns, state, batch):
  """Real vs generated frames (reconstructed, predicted) and real vs predicted pose skeletons."""
  fakes, reals, extra = jax.device_get(fns.samples(state, batch))
  rows = []
  for gan in ('video_rec', 'video_pred'):
    if gan in fakes:
      rows += [reals[gan][0], fakes[gan][0]]
  if rows:
    writer.write_image(step, 'video/real_vs_generated', metrics_lib.frame_grid(rows))
  if 'pose' in fakes:
    shape = fakes['pose'].shape[1:2] + (-1, 2)
    writer.write_image(step, 'pose/real_vs_predicted',
                       metrics_lib.pose_grid(np.reshape(reals['pose'][0], shape),
                                             np.reshape(fakes['pose'][0], shape), extra['pose_gt_conf'][0]))
