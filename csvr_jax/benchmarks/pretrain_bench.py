"""Pretraining-step benchmark: the full CSVR step of csvr_jax/train/steps.py on a synthetic batch.

`python -m csvr_jax.bench --what=pretrain_step --arch=r3d_18 --batch=16 --gan_update=one_stage,alternating
 --video_gan=dense,tgan2`

Measures, per `gan_update` mode (all programs compiled at once, in parallel threads), ms per batch, clips/s, MFU and peak memory of the joint stage (all three
branches, every network trainable) exactly as the training loop runs it (`StepFns.train_step`: one jitted
program for one-stage OSGAN; a D step then a G step for alternating with n_critic=1). With
`--pretrain_branches` also the step of each single-branch stage (pose / context / video warm-up) - the
per-branch breakdown. The batch follows the pretrain batch contract (csvr_jax/data/pipeline.py) with random
uint8 pixels and poses; it stays on the device, so the numbers exclude the input pipeline.

Every result also carries XLA's memory plan of each program (`xla_memory`: arguments, outputs, temporaries)
and its convolution custom calls. MFU counts the model's useful FLOPs, the same for both modes (csvr_jax/benchmarks/branch_flops.py): per clip
vnet, inet (all I-frames), the heads, pose_g, integration and each video generator once, each discriminator
twice (real and fake), backward = 2x forward. The gradient penalty's extra passes and the alternating mode's
second generator forward are overhead, not counted.
"""
import concurrent.futures
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax.benchmarks import xla_report
from csvr_jax.train import schedule



def _define(kind, name, default, help_text):
  if name not in flags.FLAGS:
    getattr(flags, f'DEFINE_{kind}')(name, default, help_text)


_define('list', 'gan_update', ['one_stage', 'alternating'], 'Pretraining GAN update modes to measure.')
_define('bool', 'pretrain_branches', False, 'Also time the single-branch stages (per-branch breakdown).')
_define('bool', 'pretrain_joint', True, 'Time the joint stage (false: only --pretrain_branches).')
_define('list', 'video_gan', ['dense'], 'Video GANs (model.video_gan) to measure, one after the other: dense, tgan2.')
FLAGS = flags.FLAGS

BRANCH_STAGES = ('pose', 'context', 'video_warmup')


def pretrain_config(arch, *, batch, frames, crop, width, dtype, gan_update, remat, conv_impl='', video_gan=''):
  """configs/base.py with the benchmark's sizes and a schedule holding every stage (10 steps each).

  `conv_impl` / `video_gan` '' keep base.py's model.conv_impl / model.video_gan."""
  from configs import base  # pylint: disable=import-outside-toplevel  # ml_collections only here
  c = base.get_config()
  c.model.video_gan = video_gan or c.model.video_gan
  c.model.vnet, c.model.width, c.model.dtype = arch, width, dtype
  c.model.conv_impl = conv_impl or c.model.conv_impl
  c.data.clip_len, c.data.future_len, c.data.crop_size = frames, frames, crop
  c.train.batch_size, c.train.remat, c.gan_update, c.n_critic = batch, remat, gan_update, 1
  c.train.stages = schedule.paper_stages(branch_steps=10, joint_steps=10)
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
  """Forward FLOPs per clip of one joint step's model passes (see the module docstring), or None."""
  try:
    from csvr_jax.benchmarks import branch_flops  # pylint: disable=import-outside-toplevel
    rows = {name: gflops * 1e9 for name, _, gflops in branch_flops.branch_rows(config)}
  except Exception as e:  # pylint: disable=broad-except  # MFU is then from XLA's count
    print(f'analytic FLOPs unavailable ({type(e).__name__}: {e}); MFU falls back to XLA\'s count, which on a '
          'GPU leaves out the cuDNN convolutions', flush=True)
    return None
  twice = ('pose_d', 'video_d_rec', 'video_d_pred')
  return sum(f * (2 if name in twice else 1) for name, f in rows.items())


def _time(run_one, steps, warmup, repeats):
  out = None
  for _ in range(warmup):
    out = run_one()
  jax.block_until_ready(out)  # the first window must not also wait for the warm-up steps
  windows = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      out = run_one()
    jax.block_until_ready(out)
    windows.append((time.perf_counter() - t0) / steps)
  return statistics.median(windows), windows


def programs(mode):
  """The jitted programs `StepFns.train_step` dispatches in `mode` (n_critic=1), in call order."""
  return ['one_stage_step'] if mode == 'one_stage' else ['d_step', 'g_step']


def compile_all(lowered):
  """{key: jax Lowered} -> ({key: Compiled}, {key: compile seconds}): the first program alone, then the rest
  in parallel threads.

  XLA compiles outside the GIL, so threads overlap the CPU side of the compiles (each joint-step program takes
  minutes). On a GPU most of that time is autotuning the convolutions, which runs candidates on the device and
  caches the winners per process: compiling the first (largest: the one-stage step holds every convolution of
  the joint step) program alone keeps autotuning timings free of a concurrent compile's kernels, and the
  others then find most of their convolutions tuned."""
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
    rep = steps_report(compiled[n])
    r['xla_flops'] += rep.get('xla_flops', 0.0)
    r['xla_memory'][n] = rep.get('xla_memory')
    for k, v in xla_report.hlo_summary(compiled[n].as_text())['conv_custom_calls'].items():
      convs[k] = convs.get(k, 0) + v
  return r


def time_mode(compiled, names, state, batch):
  """Times one mode's programs called in training order -> (ms/step, window list, state); state is donated.

  The executables timed are the very ones `describe` reports on (no second compile)."""
  holder = {'state': state}

  def run_one():
    s, metrics = holder['state'], {}
    for n in names:
      s, m = compiled[n](s, batch)
      metrics.update(m)
    holder['state'] = s
    return s, metrics

  sec, windows = _time(run_one, FLAGS.steps, max(FLAGS.warmup, 1), FLAGS.repeats)
  return 1e3 * sec, [1e3 * w for w in windows], holder['state']


def steps_report(compiled):
  """XLA's FLOP count and memory plan of one compiled program (csvr_jax.benchmarks.steps.compile_report)."""
  from csvr_jax.benchmarks import steps  # pylint: disable=import-outside-toplevel  # steps imports this module
  return steps.compile_report(compiled)


def peak_bytes():
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def bench_pretrain(arch):
  """bench_pretrain_variant for each --video_gan in turn (same process, same device)."""
  for video_gan in FLAGS.video_gan:
    yield from bench_pretrain_variant(arch, video_gan)


def bench_pretrain_variant(arch, video_gan):
  """Yields a result dict for each --gan_update mode of the joint stage, then (--pretrain_branches) of each
  single-branch stage.

  One state, one set of step functions: `gan_update` only picks which programs `train_step` calls. The joint
  stage's programs of every mode are lowered and compiled at once (`compile_all`), then each mode is timed;
  then the same for the branch stages together. `peak_bytes` is the process's device-memory peak so far
  (monotonic): the first joint row is that mode's own peak; `xla_memory` gives each program's plan.
  Raises ImportError when the pretraining engine (csvr_jax/train) is missing."""
  from csvr_jax import parallel  # pylint: disable=import-outside-toplevel
  from csvr_jax.train import networks  # pylint: disable=import-outside-toplevel
  from csvr_jax.train import state as state_lib  # pylint: disable=import-outside-toplevel
  from csvr_jax.train import steps as steps_lib  # pylint: disable=import-outside-toplevel
  modes = list(FLAGS.gan_update)
  config = pretrain_config(arch, batch=FLAGS.batch, frames=FLAGS.frames, crop=FLAGS.crop, width=FLAGS.width,
                           dtype=FLAGS.dtype, gan_update=modes[0], remat=FLAGS.remat, conv_impl=FLAGS.conv_impl,
                           video_gan=video_gan)
  base = dict(what='pretrain_step', arch=arch, batch=FLAGS.batch, label=FLAGS.label, impl='jax',
              conv_impl=config.model.conv_impl, video_gan=config.model.video_gan)
  try:
    mesh = parallel.make_mesh(config)
    nets = networks.Networks(config)
    stages = {s.name: s for s in schedule.resolve_stages(config, total_steps=40)}
    optimizers = state_lib.make_optimizers(config, total_steps=40)
    # RngBitGenerator init keys: the random init compiles ~10x faster than threefry on a small CPU.
    init = lambda k: nets.init(jax.random.key(jax.random.randint(k, (), 0, 2**31 - 1), impl='unsafe_rbg'))
    t0 = time.perf_counter()
    state, _ = state_lib.create_state(init, optimizers, jax.random.PRNGKey(0), parallel.replicated(mesh))
    batch = parallel.host_to_global(synthetic_batch(config), mesh)
    init_s = time.perf_counter() - t0
    print(f'pretrain_step {arch}: state initialised in {init_s:.1f} s', flush=True)
  except Exception as e:  # pylint: disable=broad-except  # one error row per mode, the run goes on
    for m in modes:
      yield dict(base, gan_update=m, stage='joint', error=f'{type(e).__name__}: {e}'[:2000])
    return
  base['init_s'] = init_s
  fwd = useful_flops_per_clip(config)
  groups = ([['joint']] if FLAGS.pretrain_joint else []) + ([list(BRANCH_STAGES)] if FLAGS.pretrain_branches else [])
  for group in groups:
    holder = {'state': state}
    for r in bench_group(arch, group, modes, holder, batch, lambda st: steps_lib.StepFns(
        nets, config, stages[st], optimizers, mesh)):
      if r['stage'] == 'joint' and fwd and 'error' not in r:
        r['flops_per_clip_fwd'] = fwd
      yield dict(base, **r)
    state = holder['state']


def bench_group(arch, group, modes, holder, batch, make_fns):
  """Compiles every program of `group`'s stages in every mode at once, then times each (stage, mode); yields
  partial result dicts. holder['state'] is threaded through (donated) and left holding the latest state."""
  t0 = time.perf_counter()
  try:
    fns = {st: make_fns(st) for st in group}
    lowered = {(st, p): getattr(fns[st], p).lower(holder['state'], batch)
               for st in group for m in modes for p in programs(m)}
    lower_s = time.perf_counter() - t0
    print(f'pretrain_step {arch} {group}: {len(lowered)} programs lowered in {lower_s:.1f} s', flush=True)
    t0 = time.perf_counter()
    compiled, compile_s = compile_all(lowered)
    wall = time.perf_counter() - t0
    print(f'pretrain_step {arch} {group}: compiled in {wall:.1f} s wall (' +
          ', '.join(f'{st}/{p} {sec:.0f} s' for (st, p), sec in compile_s.items()) + ')', flush=True)
  except Exception as e:  # pylint: disable=broad-except  # one error row per (stage, mode)
    for st in group:
      for m in modes:
        yield dict(stage=st, gan_update=m, error=f'{type(e).__name__}: {e}'[:2000])
    return
  for st in group:
    for m in modes:
      names = programs(m)
      r = dict(stage=st, gan_update=m, lower_s=lower_s, compile_wall_s=wall,
               compile_s=sum(compile_s[(st, p)] for p in names))
      try:
        own = {p: compiled[(st, p)] for p in names}
        r.update(describe(own, names))
        r['ms_per_step'], r['ms_per_step_windows'], holder['state'] = time_mode(own, names, holder['state'], batch)
        r['peak_bytes'] = peak_bytes()
        print(f'pretrain_step {arch} {st} {m}: {r["ms_per_step"]:.1f} ms/step, peak {r["peak_bytes"]}', flush=True)
      except Exception as e:  # pylint: disable=broad-except  # report, and still measure the rest
        r['error'] = f'{type(e).__name__}: {e}'[:2000]
      yield r
