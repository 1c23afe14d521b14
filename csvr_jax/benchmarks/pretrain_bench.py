"""Pretraining-step benchmark: the full CSVR step of csvr_jax/train/steps.py on a synthetic batch.

`python -m csvr_jax.bench --what=pretrain_step --arch=r3d_18 --batch=16 --gan_update=one_stage,alternating`

Measures, per `gan_update` mode, ms per batch, clips/s, MFU and peak memory of the joint stage (all three
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
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax.benchmarks import xla_report



def _define(kind, name, default, help_text):
  if name not in flags.FLAGS:
    getattr(flags, f'DEFINE_{kind}')(name, default, help_text)


_define('list', 'gan_update', ['one_stage', 'alternating'], 'Pretraining GAN update modes to measure.')
_define('bool', 'pretrain_branches', False, 'Also time the single-branch stages (per-branch breakdown).')
FLAGS = flags.FLAGS

BRANCH_STAGES = ('pose', 'context', 'video_warmup')


def pretrain_config(arch, *, batch, frames, crop, width, dtype, gan_update, remat):
  """configs/base.py with the benchmark's sizes and a schedule holding every stage (10 steps each)."""
  from configs import base  # pylint: disable=import-outside-toplevel  # ml_collections only here
  c = base.get_config()
  c.model.vnet, c.model.width, c.model.dtype = arch, width, dtype
  c.data.clip_len, c.data.future_len, c.data.crop_size = frames, frames, crop
  c.train.batch_size, c.train.remat, c.gan_update, c.n_critic = batch, remat, gan_update, 1
  c.train.stages = base.paper_stages(branch_steps=10, joint_steps=10)
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
  except Exception:  # pylint: disable=broad-except  # MFU is then from XLA's count
    return None
  twice = ('pose_d', 'video_d_rec', 'video_d_pred')
  return sum(f * (2 if name in twice else 1) for name, f in rows.items())


def _time(run_one, steps, warmup, repeats):
  for _ in range(warmup):
    run_one()
  windows = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      out = run_one()
    jax.block_until_ready(out)
    windows.append((time.perf_counter() - t0) / steps)
  return statistics.median(windows), windows


def bench_stage(fns, state, batch, mode, stage_name):
  """Compiles and times one stage's step in one mode -> (result dict, state); the state is donated.

  The programs `StepFns.train_step` dispatches (one_stage_step; or d_step then g_step, n_critic=1) are compiled
  ahead of time and called in the same order, so XLA's memory plan and convolution layouts come from the very
  executables that are timed (no second compile).
  """
  names = ['one_stage_step'] if mode == 'one_stage' else ['d_step', 'g_step']
  r = dict(what='pretrain_step', stage=stage_name, gan_update=mode)
  t0 = time.perf_counter()
  compiled = {n: getattr(fns, n).lower(state, batch).compile() for n in names}
  r['compile_s'] = time.perf_counter() - t0
  r['xla_flops'], r['xla_memory'], convs = 0.0, {}, {}
  for n, c in compiled.items():
    rep = steps_report(c)
    r['xla_flops'] += rep.get('xla_flops', 0.0)
    r['xla_memory'][n] = rep.get('xla_memory')
    for k, v in xla_report.hlo_summary(c.as_text())['conv_custom_calls'].items():
      convs[k] = convs.get(k, 0) + v
  r['hlo'] = {'conv_custom_calls': convs}
  holder = {'state': state}

  def run_one():
    s, metrics = holder['state'], {}
    for n in names:
      s, m = compiled[n](s, batch)
      metrics.update(m)
    holder['state'] = s
    return s, metrics

  sec, windows = _time(run_one, FLAGS.steps, max(FLAGS.warmup, 1), FLAGS.repeats)
  r.update(ms_per_step=1e3 * sec, ms_per_step_windows=[1e3 * w for w in windows])
  return r, holder['state']


def steps_report(compiled):
  """XLA's FLOP count and memory plan of one compiled program (csvr_jax.benchmarks.steps.compile_report)."""
  from csvr_jax.benchmarks import steps  # pylint: disable=import-outside-toplevel  # steps imports this module
  return steps.compile_report(compiled)


def bench_pretrain(arch):
  """[result dict] for each --gan_update mode (joint stage) and, with --pretrain_branches, each branch.

  Raises ImportError when the pretraining engine (csvr_jax/train) is missing."""
  from csvr_jax import parallel  # pylint: disable=import-outside-toplevel
  from csvr_jax.train import networks  # pylint: disable=import-outside-toplevel
  from csvr_jax.train import state as state_lib  # pylint: disable=import-outside-toplevel
  from csvr_jax.train import steps as steps_lib  # pylint: disable=import-outside-toplevel
  results = []
  for mode in FLAGS.gan_update:
    config = pretrain_config(arch, batch=FLAGS.batch, frames=FLAGS.frames, crop=FLAGS.crop, width=FLAGS.width,
                             dtype=FLAGS.dtype, gan_update=mode, remat=FLAGS.remat)
    base = dict(arch=arch, batch=FLAGS.batch, label=FLAGS.label, impl='jax')
    try:
      mesh = parallel.make_mesh(config)
      nets = networks.Networks(config)
      stages = {s.name: s for s in steps_lib.resolve_stages(config, total_steps=40)}
      optimizers = state_lib.make_optimizers(config, total_steps=40)
      # RngBitGenerator init keys: the random init compiles ~10x faster than threefry on a small CPU.
      init = lambda k: nets.init(jax.random.key(jax.random.randint(k, (), 0, 2**31 - 1), impl='unsafe_rbg'))
      state, _ = state_lib.create_state(init, optimizers, jax.random.PRNGKey(0), parallel.replicated(mesh))
      batch = parallel.host_to_global(synthetic_batch(config), mesh)
      fwd = useful_flops_per_clip(config)
      names = ['joint'] + (list(BRANCH_STAGES) if FLAGS.pretrain_branches else [])
      for name in names:
        fns = steps_lib.StepFns(nets, config, stages[name], optimizers, mesh)
        r, state = bench_stage(fns, state, batch, mode, name)
        r.update(base)
        if name == 'joint' and fwd:
          r['flops_per_clip_fwd'] = fwd
        stats = jax.local_devices()[0].memory_stats()
        r['peak_bytes'] = int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None
        results.append(r)
    except Exception as e:  # pylint: disable=broad-except  # report, and still measure the other mode
      results.append(dict(base, what='pretrain_step', gan_update=mode, error=f'{type(e).__name__}: {e}'[:2000]))
  return results
