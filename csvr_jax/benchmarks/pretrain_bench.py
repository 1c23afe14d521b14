"""The pretraining step of `--mode=pretrain`, timed on a synthetic batch (`python -m csvr_jax.bench
--what=pretrain_step --gan_update=one_stage,alternating --video_gan=tgan2,dense`).

The programs are csvr_jax/train/steps.py's: `StepFns(Networks(config), config, stage, make_optimizers(...), mesh)`
for the config of configs/k400.py (the paper's Kinetics-400 recipe: r3d_18, bf16, conv_impl fold_s2d, tgan2 video
GANs, SGD / Adam as in training) with the benchmark's shapes and a schedule holding every stage. Per
`gan_update` mode the programs `StepFns.train_step` dispatches with n_critic=1: 'one_stage' (OSGAN) one program,
`one_stage_step`; 'alternating' `d_step` then `g_step`. All programs of a stage group are lowered and compiled at
once (in parallel threads), then each mode is timed on those very executables, the state threaded through
(donated). The joint stage (all three branches, every network trainable) by default; with `pretrain_branches`
also the single-branch stages (pose / context / video warm-up), the per-branch breakdown. The batch follows the
pretrain contract (csvr_jax/data/pipeline.py) with random uint8 pixels and poses, put on the devices once, so the
input pipeline is not part of the number; colour jitter and blur run inside the step, as in training.

MFU counts the model's useful FLOPs of the video GAN measured (csvr_jax/benchmarks/branch_flops.py), the same for
both modes: per clip vnet, inet (all I-frames), the heads, pose_g, integration and each video generator once,
each discriminator twice (real and fake; tgan2: every level), backward = 2x forward. The gradient penalty's extra
passes, the augmentation and the alternating mode's second generator forward are overhead, not counted.
"""
import concurrent.futures
import time

import jax
import numpy as np

from csvr_jax import parallel
from csvr_jax.benchmarks import branch_flops
from csvr_jax.benchmarks import common
from csvr_jax.benchmarks import xla_report
from csvr_jax.train import networks
from csvr_jax.train import schedule
from csvr_jax.train import state as state_lib
from csvr_jax.train import steps as steps_lib

BRANCH_STAGES = ('pose', 'context', 'video_warmup')
GAN_UPDATES = ('one_stage', 'alternating')
STAGE_STEPS = 10  # per stage of the benchmark's schedule: it only has to hold every stage


def pretrain_config(sizes, *, gan_update, video_gan=''):
  """configs/k400.py with the benchmark's shapes, `gan_update` (n_critic 1) and a schedule holding every stage.

  video_gan '' keeps the recipe's model.video_gan."""
  if gan_update not in GAN_UPDATES:
    raise ValueError(f'--gan_update={gan_update!r}: choose from {GAN_UPDATES}')
  c = common.apply_sizes(common.recipe_config('k400'), sizes)
  c.model.video_gan = video_gan or c.model.video_gan
  if c.model.video_gan not in networks.VIDEO_GANS:
    raise ValueError(f'--video_gan={c.model.video_gan!r}: choose from {networks.VIDEO_GANS}')
  c.train.batch_size, c.gan_update, c.n_critic = sizes.batch, gan_update, 1
  c.train.stages = schedule.paper_stages(branch_steps=STAGE_STEPS, joint_steps=STAGE_STEPS)
  c.train.total_steps = 4 * STAGE_STEPS
  return c


def synthetic_batch(config, seed=0):
  """Host numpy batch of the pretrain contract: random pixels and poses, the first half of the I-frames valid."""
  d, b, n = config.data, config.train.batch_size, config.model.num_joints
  rng = np.random.default_rng(seed)
  pix = lambda *s: rng.integers(0, 256, size=s, dtype=np.uint8)
  m = d.max_iframes
  return {
      'clip': pix(b, d.clip_len, d.crop_size, d.crop_size, 3),
      'future_clip': pix(b, d.future_len, d.crop_size, d.crop_size, 3),
      'iframes': pix(b, m, d.crop_size, d.crop_size, 3),
      'iframe_mask': np.arange(m)[None, :].repeat(b, 0) < max(1, m // 2),
      'pose_in': rng.uniform(size=(b, d.clip_len, n, 2)).astype(np.float32),
      'pose_in_conf': np.ones((b, d.clip_len, n), np.float32),
      'pose_gt': rng.uniform(size=(b, d.future_len, n, 2)).astype(np.float32),
      'pose_gt_conf': np.ones((b, d.future_len, n), np.float32),
      'video_index': np.arange(b, dtype=np.int32),
      'label': np.zeros((b,), np.int32),
      'looped': np.zeros((b,), bool),
  }


def useful_flops_per_clip(config):
  """Forward FLOPs per clip of one joint step's model passes (see the module docstring)."""
  rows = {name: gflops * 1e9 for name, _, gflops in branch_flops.branch_rows(config)}
  twice = ('pose_d', 'video_d_rec', 'video_d_pred')
  return sum(f * (2 if name in twice else 1) for name, f in rows.items())


def programs(mode):
  """The jitted programs `StepFns.train_step` dispatches in `mode` (n_critic=1), in call order."""
  return ['one_stage_step'] if mode == 'one_stage' else ['d_step', 'g_step']


def compile_all(lowered):
  """{key: jax Lowered} -> ({key: Compiled}, {key: compile seconds}): the first program alone, then the rest
  in parallel threads.

  XLA compiles outside the GIL, so threads overlap the CPU side of the compiles. On a GPU most of that time is
  autotuning the convolutions, which runs candidates on the device and caches the winners per process: the first
  (largest: the one-stage step holds every convolution of the joint step) program compiles alone, which keeps the
  autotuning timings free of a concurrent compile's kernels, and the others then find most of theirs tuned."""
  def one(lo):
    t0 = time.perf_counter()
    compiled = lo.compile()
    return compiled, time.perf_counter() - t0
  keys = list(lowered)
  done = {keys[0]: one(lowered[keys[0]])} if keys else {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(keys) - 1)) as pool:
    futures = {k: pool.submit(one, lowered[k]) for k in keys[1:]}
    done.update({k: f.result() for k, f in futures.items()})
  return {k: c for k, (c, _) in done.items()}, {k: s for k, (_, s) in done.items()}


def describe(compiled, names):
  """XLA's FLOP count, memory plan per program and convolution custom calls of one mode's programs."""
  r = dict(xla_flops=0.0, xla_memory={}, hlo={'conv_custom_calls': {}})
  convs = r['hlo']['conv_custom_calls']
  for n in names:
    rep = common.compile_report(compiled[n])
    r['xla_flops'] += rep.get('xla_flops', 0.0)
    r['xla_memory'][n] = rep.get('xla_memory')
    for k, v in xla_report.hlo_summary(compiled[n].as_text())['conv_custom_calls'].items():
      convs[k] = convs.get(k, 0) + v
  return r


def run_mode(compiled, names, holder, batch):
  """One training step of a mode: its programs in call order on holder['state'] (donated, replaced)."""
  s, metrics = holder['state'], {}
  for n in names:
    s, m = compiled[n](s, batch)
    metrics.update(m)
  holder['state'] = s
  return metrics


def init_state(config, mesh):
  """(Networks, stages by name, optimizers, the initial replicated TrainState) as the pretraining loop builds them."""
  nets = networks.Networks(config)
  stages = {s.name: s for s in schedule.resolve_stages(config, total_steps=config.train.total_steps)}
  optimizers = state_lib.make_optimizers(config, total_steps=config.train.total_steps)
  state, _ = state_lib.create_state(nets.init, optimizers, jax.random.PRNGKey(config.seed), parallel.replicated(mesh),
                                    compiler_options=parallel.compiler_options(config))
  return nets, stages, optimizers, state


def bench_variant(config, modes, timing, *, groups=(('joint',),), mesh=None, label='', peak=None):
  """Yields a result row per (stage, mode) of each stage group, as measured (a kill keeps what was yielded).

  One state, one set of StepFns per stage: `gan_update` only picks which programs `train_step` calls. Errors
  become rows with 'error' and the run goes on. `peak_bytes` is the process's device-memory peak so far
  (monotonic): the first row's is its own; `xla_memory` gives each program's plan."""
  mesh = mesh or parallel.make_mesh(config)
  base = dict(what='pretrain_step', impl='jax', arch=config.model.vnet, batch=config.train.batch_size,
              width=config.model.width, label=label,
              conv_impl=config.model.conv_impl, video_gan=config.model.video_gan, dtype=config.model.dtype,
              devices=int(mesh.devices.size))
  try:
    t0 = time.perf_counter()
    nets, stages, optimizers, state = init_state(config, mesh)
    batch = parallel.host_to_global(synthetic_batch(config), mesh)
    base['init_s'] = time.perf_counter() - t0
    fwd = useful_flops_per_clip(config)
  except Exception as e:  # pylint: disable=broad-except  # one error row per mode, the run goes on
    for m in modes:
      yield dict(base, gan_update=m, stage='joint', error=common.error_text(e))
    return
  holder = {'state': state}
  for group in groups:
    make_fns = lambda st: steps_lib.StepFns(nets, config, stages[st], optimizers, mesh)
    for r in bench_group(group, modes, holder, batch, make_fns, timing):
      row = dict(base, **r)
      if 'ms_per_step' in row:
        common.add_throughput(row, fwd if row['stage'] == 'joint' else None, peak)
      print(f"pretrain_step {row['arch']} {row['video_gan']} {row['stage']} {row['gan_update']}: "
            f"{row.get('ms_per_step', float('nan')):.1f} ms/step {row.get('error', '')}", flush=True)
      yield row


def bench_group(group, modes, holder, batch, make_fns, timing):
  """Compiles every program of `group`'s stages in every mode at once, then times each (stage, mode); yields
  partial rows. holder['state'] is threaded through (donated) and left holding the latest state."""
  t0 = time.perf_counter()
  try:
    fns = {st: make_fns(st) for st in group}
    lowered = {(st, p): getattr(fns[st], p).lower(holder['state'], batch)
               for st in group for m in modes for p in programs(m)}
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled, compile_s = compile_all(lowered)
    wall = time.perf_counter() - t0
  except Exception as e:  # pylint: disable=broad-except  # one error row per (stage, mode)
    for st in group:
      for m in modes:
        yield dict(stage=st, gan_update=m, error=common.error_text(e))
    return
  for st in group:
    for m in modes:
      names = programs(m)
      r = dict(stage=st, gan_update=m, lower_s=lower_s, compile_wall_s=wall,
               compile_s=sum(compile_s[(st, p)] for p in names))
      try:
        own = {p: compiled[(st, p)] for p in names}
        r.update(describe(own, names))
        sec, windows = common.time_windows(lambda: run_mode(own, names, holder, batch), timing)
        r.update(ms_per_step=1e3 * sec, ms_per_step_windows=[1e3 * w for w in windows],
                 peak_bytes=common.device_peak_bytes())
      except Exception as e:  # pylint: disable=broad-except  # report, and still measure the rest
        r['error'] = common.error_text(e)
      yield r
