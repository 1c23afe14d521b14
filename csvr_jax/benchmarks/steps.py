"""Train-step benchmark: `python -m csvr_jax.bench --what=finetune_step[,pretrain_step] ...`.

  python -m csvr_jax.bench --what=finetune_step --arch=r3d_18,r2plus1d_18 --batch=32 --dtype=bfloat16 \
      --reference=torch --json_out=runs/bench/steps.json

Measures ms/step, clips/s, MFU (analytic FLOPs, fwd+bwd = 3x fwd, over the card's bf16 rate) and peak
device memory of the finetune step (backbone + linear classifier, softmax cross-entropy, SGD momentum with
weight decay, bf16 compute with float32 parameters and BatchNorm statistics, the state buffers donated);
`--reference=torch` runs torchvision's equivalent in its own process first (eager and torch.compile'd,
csvr_jax/benchmarks/torch_reference.py) and reports the ratios JAX/torch (clips/s over clips/s, > 1 means
JAX is faster). The pretraining step is measured by csvr_jax/benchmarks/pretrain_bench.py.

Each variant to compare (XLA flags, `--conv_impl`) runs as its own process: XLA_FLAGS are read once per
process, and the peak-memory number of a process then belongs to one configuration.
"""
import datetime
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags
import jax
import jax.numpy as jnp
import flax.linen as nn
import optax

from csvr_jax.benchmarks import bench_report
from csvr_jax.benchmarks import pretrain_bench  # defines --gan_update, --pretrain_branches
from csvr_jax.benchmarks import xla_report


def _define(kind, name, default, help_text):
  """Defines a flag unless another benchmark module already did (they share one absl namespace)."""
  if name not in flags.FLAGS:
    getattr(flags, f'DEFINE_{kind}')(name, default, help_text)


_define('list', 'arch', ['r3d_18', 'r2plus1d_18'], 'Backbones to measure.')
_define('integer', 'batch', 32, 'Clips per step (one device).')
_define('string', 'dtype', 'bfloat16', 'Compute dtype (parameters and BatchNorm statistics stay float32).')
_define('string', 'reference', None, "'torch': also time torchvision's step, eager and torch.compile'd.")
_define('string', 'json_out', None, 'Write all results to this JSON file.')
_define('integer', 'steps', 20, 'Timed steps per window.')
_define('integer', 'warmup', 3, 'Untimed steps after compilation.')
_define('integer', 'repeats', 3, 'Timed windows; ms/step is the median window.')
_define('integer', 'crop', 112, 'Clip height and width.')
_define('integer', 'frames', 16, 'Clip length.')
_define('float', 'width', 1.0, 'Channel multiplier of the backbone (tiny CPU runs use < 1).')
_define('integer', 'num_classes', 101, 'Classifier outputs (UCF101).')
_define('string', 'conv_impl', '', "Backbone's conv_impl option ('' = the backbone's default).")
_define('bool', 'remat', False, 'Rematerialise backbone blocks.')
_define('string', 'label', '', 'Name of this variant in the results (e.g. the XLA flags it ran with).')
_define('bool', 'profile', False, 'Record per-kernel device time of a few steps (JAX profiler).')
_define('string', 'hlo_dir', None, 'Write the optimized HLO of each step here (gzip text).')
_define('float', 'peak_tflops', 0.0, 'Dense bf16 rate of the card for MFU; 0 = from the device kind.')
_define('list', 'torch_modes', ['eager', 'compile'], 'PyTorch modes to time with --reference=torch.')
_define('integer', 'torch_timeout_s', 400, 'Give up on the PyTorch reference process after this long.')
FLAGS = flags.FLAGS

# UCF101 finetune recipe (DESIGN.md section 1: lr 1e-4*B, wd 0.003, momentum 0.9); the same numbers as the
# torch reference. They do not change the step's cost.
LR_PER_SAMPLE = 1e-4
WEIGHT_DECAY = 0.003
MOMENTUM = 0.9

# Dense bf16 matrix rate per device kind, FLOP/s. H100/H200: the 8192^3 bf16 matmul measured on the lent
# machines (~790 TFLOP/s, /work/.library/device/KINDS.md), the figure the MFU uses; others: datasheet.
PEAK_BF16 = (('H200', 790e12), ('H100', 790e12), ('A100', 312e12), ('L4', 121e12), ('TPU v4', 275e12),
             ('TPU v5 lite', 197e12), ('TPU v5e', 197e12), ('TPU v5p', 459e12), ('TPU v6', 918e12))


def peak_flops(device_kind):
  if FLAGS.peak_tflops > 0:
    return FLAGS.peak_tflops * 1e12
  for key, rate in PEAK_BF16:
    if key.lower() in device_kind.lower():
      return rate
  return None


def analytic_flops(arch, frames, crop, width):
  """Forward FLOPs of one clip through the backbone.

  From csvr_jax.benchmarks.flops.backbone_flops when that module exists, else XLA's cost analysis of the
  lowered (unoptimised) forward pass on abstract shapes, batch 1 - the same exact 2-FLOPs-per-MAC count of
  every convolution, nothing allocated.
  """
  try:
    from csvr_jax.benchmarks import flops as flops_lib  # pylint: disable=import-outside-toplevel
    return float(flops_lib.backbone_flops(arch, frames, crop, width)[1])
  except ImportError:
    pass
  from csvr_jax import models  # pylint: disable=import-outside-toplevel
  module = models.get_video_backbone(arch, width=width)
  x = jax.ShapeDtypeStruct((1, frames, crop, crop, 3), jnp.float32)
  variables = jax.eval_shape(lambda v: module.init(jax.random.key(0), v, train=False), x)
  cost = jax.jit(lambda v, a: module.apply(v, a, train=False)).lower(variables, x).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops']) if cost and 'flops' in cost else None  # some backends lower without costs


class Classifier(nn.Module):
  """Backbone + linear classifier on the pooled feature; logits in float32 for the loss."""
  backbone: nn.Module
  num_classes: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, video, train):
    pooled = self.backbone(video, train=train)['pooled']
    return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(pooled).astype(jnp.float32)


def make_model(arch, dtype, width, num_classes, conv_impl, remat):
  from csvr_jax import models  # pylint: disable=import-outside-toplevel
  kw = dict(width=width, dtype=dtype, remat=remat)
  if conv_impl:
    kw['conv_impl'] = conv_impl
  return Classifier(models.get_video_backbone(arch, **kw), num_classes, dtype)


def finetune_step(state, batch, *, model, tx):
  """One SGD step: (state, {'video' (B,T,H,W,3), 'label' (B,)}) -> (state, {'loss'})."""
  def loss_fn(params):
    logits, new_vars = model.apply({'params': params, 'batch_stats': state['batch_stats']},
                                   batch['video'], train=True, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    return loss, new_vars['batch_stats']
  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
  updates, opt_state = tx.update(grads, state['opt'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  return dict(params=params, batch_stats=batch_stats, opt=opt_state), {'loss': loss}


def time_compiled(step, state, batch, *, steps, warmup, repeats):
  """Runs a compiled, state-donating step; returns (state, median seconds/step, all window times, loss)."""
  metrics = None
  for _ in range(warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  windows = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    windows.append((time.perf_counter() - t0) / steps)
  return state, statistics.median(windows), windows, float(metrics['loss'])


def compile_report(compiled):
  """XLA's own FLOP count and memory plan of a compiled step."""
  out = {}
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out['xla_flops'] = float(cost.get('flops', 0.0))
  except Exception:  # pylint: disable=broad-except  # not every backend reports costs
    pass
  try:
    mem = compiled.memory_analysis()
    out['xla_memory'] = {k: int(getattr(mem, k)) for k in (
        'argument_size_in_bytes', 'output_size_in_bytes', 'alias_size_in_bytes', 'temp_size_in_bytes')}
  except Exception:  # pylint: disable=broad-except
    pass
  return out


def device_peak_bytes():
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def finish_numbers(r, batch, flops_per_clip_fwd, peak):
  """Adds clips/s and MFU (from analytic FLOPs when known, else XLA's count) to a result dict."""
  r['clips_per_s'] = batch / (r['ms_per_step'] / 1e3)
  if flops_per_clip_fwd:
    r['flops_per_step'] = 3.0 * flops_per_clip_fwd * batch
    r['flops_source'] = 'analytic (3x forward)'
  elif r.get('xla_flops'):
    r['flops_per_step'] = r['xla_flops']
    r['flops_source'] = 'xla cost analysis'
  if peak and r.get('flops_per_step'):
    r['mfu'] = r['flops_per_step'] / (r['ms_per_step'] / 1e3) / peak
  return r


def bench_finetune(arch):
  """Compiles and times the JAX finetune step of one backbone -> (result dict, profile function)."""
  dtype = jnp.dtype(FLAGS.dtype)
  model = make_model(arch, dtype, FLAGS.width, FLAGS.num_classes, FLAGS.conv_impl, FLAGS.remat)
  tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                   optax.sgd(LR_PER_SAMPLE * FLAGS.batch, momentum=MOMENTUM))
  shape = (FLAGS.batch, FLAGS.frames, FLAGS.crop, FLAGS.crop, 3)

  @jax.jit
  def init(key):
    k_init, k_video, k_label = jax.random.split(key, 3)
    variables = model.init(k_init, jnp.zeros((1,) + shape[1:], dtype), train=False)
    state = dict(params=variables['params'], batch_stats=variables['batch_stats'],
                 opt=tx.init(variables['params']))
    batch = dict(video=jax.random.normal(k_video, shape, dtype),
                 label=jax.random.randint(k_label, (FLAGS.batch,), 0, FLAGS.num_classes))
    return state, batch

  # RngBitGenerator keys: the same random init, but XLA compiles threefry over ~60 parameter shapes
  # minutes long on a small CPU (measured: r3d_18 init 230 s threefry vs 25 s rbg, 2 loaded cores).
  state, batch = init(jax.random.key(0, impl='unsafe_rbg'))
  n_params = sum(x.size for x in jax.tree.leaves(state['params']))
  t0 = time.perf_counter()
  step = jax.jit(functools.partial(finetune_step, model=model, tx=tx), donate_argnums=(0,))
  compiled = step.lower(state, batch).compile()
  r = dict(what='finetune_step', impl='jax', arch=arch, label=FLAGS.label, batch=FLAGS.batch,
           conv_impl=FLAGS.conv_impl, params=int(n_params), compile_s=time.perf_counter() - t0)
  r.update(compile_report(compiled))
  hlo = compiled.as_text()
  r['hlo'] = xla_report.hlo_summary(hlo)
  if FLAGS.hlo_dir:
    import gzip  # pylint: disable=import-outside-toplevel
    os.makedirs(FLAGS.hlo_dir, exist_ok=True)
    tag = '_'.join(x for x in ('finetune', arch, FLAGS.label, FLAGS.conv_impl) if x)
    with gzip.open(os.path.join(FLAGS.hlo_dir, f'{tag}.hlo.txt.gz'), 'wt') as f:
      f.write(hlo)
  state, sec, windows, loss = time_compiled(compiled, state, batch, steps=FLAGS.steps,
                                            warmup=FLAGS.warmup, repeats=FLAGS.repeats)
  r.update(ms_per_step=1e3 * sec, ms_per_step_windows=[1e3 * w for w in windows], loss=loss,
           peak_bytes=device_peak_bytes())
  holder = [state]

  def profile():
    """Per-kernel device time of 3 more steps into r['profile'] (run after the timed numbers are saved)."""
    def run_steps(n=3):
      for _ in range(n):
        holder[0], m = compiled(holder[0], batch)
      jax.block_until_ready(m)
    r['profile'] = xla_report.profile_kernels(run_steps, 3)
    if 'top' in r['profile']:
      r['profile']['groups'] = xla_report.kernel_groups(r['profile']['top'])
  return r, profile


def run_torch_reference(arch):
  """Runs torch_reference.py in its own process; returns its result dicts (or one dict with 'error')."""
  if importlib.util.find_spec('torch') is None or importlib.util.find_spec('torchvision') is None:
    return [dict(impl='torch', arch=arch, skipped='torch/torchvision not importable')]
  with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, 'torch.json')
    cmd = [sys.executable, '-m', 'csvr_jax.benchmarks.torch_reference', f'--arch={arch}',
           f'--modes={",".join(FLAGS.torch_modes)}', f'--batch={FLAGS.batch}', f'--frames={FLAGS.frames}',
           f'--crop={FLAGS.crop}', f'--num_classes={FLAGS.num_classes}', f'--dtype={FLAGS.dtype}',
           f'--steps={FLAGS.steps}', f'--warmup={max(FLAGS.warmup, 3)}', f'--repeats={FLAGS.repeats}',
           f'--json_out={out}'] + (['--profile'] if FLAGS.profile else [])
    if os.environ.get('JAX_PLATFORMS', '') == 'cpu':  # a CPU-only run keeps torch on the CPU too
      cmd.append('--device=cpu')
    try:
      p = subprocess.run(cmd, capture_output=True, text=True, timeout=FLAGS.torch_timeout_s, check=False)
    except subprocess.TimeoutExpired:
      return [dict(impl='torch', arch=arch, error=f'timed out after {FLAGS.torch_timeout_s} s')]
    if p.returncode != 0 or not os.path.exists(out):
      return [dict(impl='torch', arch=arch, error=(p.stderr or p.stdout)[-2000:])]
    with open(out) as f:
      return json.load(f)


def pretrain_results(arch):
  """Yields the pretraining-step measurements (csvr_jax/benchmarks/pretrain_bench.py) as they come, or one
  error entry."""
  try:
    yield from pretrain_bench.bench_pretrain(arch)
  except ImportError as e:
    yield dict(what='pretrain_step', arch=arch, error=f'pretraining engine not available: {e}')


def selected_benchmarks():
  what = list(FLAGS['what'].value) if 'what' in FLAGS else []
  return [w for w in what if w in ('finetune_step', 'pretrain_step')] or ['finetune_step']


def write_report(results, device, peak):
  """The run's report (also written after every result, so a crash later keeps what was measured)."""
  rat = bench_report.ratios(results)
  report = dict(card=device.device_kind, backend=jax.default_backend(),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                jax_version=jax.__version__, xla_flags=os.environ.get('XLA_FLAGS', ''),
                peak_flops=peak, config=dict(batch=FLAGS.batch, dtype=FLAGS.dtype, frames=FLAGS.frames,
                                             crop=FLAGS.crop, width=FLAGS.width, steps=FLAGS.steps,
                                             repeats=FLAGS.repeats, label=FLAGS.label,
                                             conv_impl=FLAGS.conv_impl, remat=FLAGS.remat),
                results=results, ratios=rat)
  if FLAGS.json_out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json_out)), exist_ok=True)
    with open(FLAGS.json_out + '.tmp', 'w') as f:
      json.dump(report, f, indent=1)
    os.replace(FLAGS.json_out + '.tmp', FLAGS.json_out)
  return report


def main():
  whats = selected_benchmarks()
  results = []
  if FLAGS.reference not in (None, '', 'torch'):
    print(f'error: --reference={FLAGS.reference!r}; the only reference is torch', file=sys.stderr)
    sys.exit(2)
  # PyTorch first, while JAX has not touched the device yet (nothing preallocated).
  if FLAGS.reference == 'torch' and 'finetune_step' in whats:
    for arch in FLAGS.arch:
      for r in run_torch_reference(arch):
        r['what'] = 'finetune_step'
        results.append(r)
  device = jax.devices()[0]  # only now: JAX preallocates device memory when its backend starts
  peak = peak_flops(device.device_kind)
  write_report(results, device, peak)
  for arch in FLAGS.arch:
    fwd = analytic_flops(arch, FLAGS.frames, FLAGS.crop, FLAGS.width)
    for r in results:
      if r.get('arch') == arch and 'ms_per_step' in r:
        finish_numbers(r, r['batch'], fwd, peak)
    if 'finetune_step' in whats:
      r, profile = bench_finetune(arch)
      results.append(finish_numbers(r, FLAGS.batch, fwd, peak))
      write_report(results, device, peak)
      if FLAGS.profile:
        profile()
        write_report(results, device, peak)
    if 'pretrain_step' in whats:
      for r in pretrain_results(arch):  # the report is rewritten after each, so a kill keeps what was measured
        results.append(finish_numbers(r, r['batch'], r.pop('flops_per_clip_fwd', None), peak)
                       if 'ms_per_step' in r else r)
        write_report(results, device, peak)
  report = write_report(results, device, peak)
  bench_report.print_table(results, report['ratios'])
  if FLAGS.json_out:
    print(f'wrote {FLAGS.json_out}')
  return report
