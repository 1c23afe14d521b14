"""What the step benchmarks share: their flags, the timing windows, peak device memory, MFU from analytic FLOPs,
XLA's account of a compiled program, the recipe configs and the report file.

Timing method, the same in every benchmark (and in torch_reference.py): a fixed on-device batch, `warmup` untimed
steps after compilation (at least one, so that the first window never waits for a compile or for the warm-up),
then `repeats` windows of `steps` steps each, synchronised at the window ends; ms/step is the median window.
MFU = useful FLOPs per step / step time / the card's dense bf16 rate, with the useful FLOPs counted analytically
from the model (a backward pass = 2x its forward), never XLA's count of the compiled program (on a GPU that leaves
out the cuDNN convolutions, and it counts overhead such as the augmentation as work).

Only `flag_*` helpers and the runner (steps.py) read flags; everything else takes its settings as arguments, so
the tests call it directly.
"""
import dataclasses
import datetime
import importlib
import json
import os
import statistics
import time

from absl import flags
import jax

# ------------------------------------------------------------------------------------------------ flags
flags.DEFINE_list('arch', ['r3d_18', 'r2plus1d_18'], 'Backbones (model.vnet) to measure.')
flags.DEFINE_integer('batch', 32, 'Clips per step (global batch; the paper: 32 finetune, 16 pretraining per GPU).')
flags.DEFINE_string('dtype', 'bfloat16', 'Compute dtype (parameters and BatchNorm statistics stay float32).')
flags.DEFINE_integer('crop', 112, 'Clip height and width.')
flags.DEFINE_integer('frames', 16, 'Clip length (and future-clip length in pretraining).')
flags.DEFINE_float('width', 1.0, 'Channel multiplier of the backbones (tiny CPU runs use < 1).')
flags.DEFINE_string('conv_impl', '', "model.conv_impl ('' = the recipe's: fold_s2d for finetuning, base.py's for "
                    'pretraining).')
flags.DEFINE_bool('remat', False, 'Rematerialise backbone blocks (train.remat; pretraining only).')
flags.DEFINE_bool('fast_compile', False, 'train.fast_compile: XLA optimisation level 0 (quick CPU checks only).')
flags.DEFINE_integer('steps', 20, 'Timed steps per window.')
flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation (at least 1).')
flags.DEFINE_integer('repeats', 3, 'Timed windows; ms/step is the median window.')
flags.DEFINE_string('label', '', 'Name of this variant in the results (e.g. the XLA flags it ran with).')
flags.DEFINE_string('json_out', None, 'Write all results to this JSON file (rewritten after every result).')
flags.DEFINE_float('peak_tflops', 0.0, 'Dense bf16 rate of the card for MFU; 0 = from the device kind.')
flags.DEFINE_bool('profile', False, 'Finetune: record per-kernel device time of a few steps (JAX profiler).')
flags.DEFINE_string('hlo_dir', None, 'Finetune: write the optimized HLO of each step here (gzip text).')
# finetune_step
flags.DEFINE_integer('num_classes', 101, 'Finetune: classifier outputs (UCF101).')
flags.DEFINE_list('features', ['vnet'], 'Finetune: config.finetune.features to measure: vnet | fi | fd.')
flags.DEFINE_list('augment', ['none', 'device'], "Finetune: 'device' = the step's colour jitter + blur + "
                  "normalisation (what --mode=finetune runs), 'none' = normalisation only (the model's cost).")
flags.DEFINE_string('reference', None, "'torch': also time torchvision doing the same work, eager and compiled.")
flags.DEFINE_list('torch_modes', ['eager', 'compile'], 'PyTorch modes to time with --reference=torch.')
flags.DEFINE_integer('torch_timeout_s', 400, 'Give up on the PyTorch reference process after this long.')
# pretrain_step
flags.DEFINE_list('gan_update', ['one_stage', 'alternating'], 'Pretraining: GAN update modes to measure.')
flags.DEFINE_list('video_gan', ['tgan2', 'dense'], 'Pretraining: video GANs (model.video_gan), one after the other.')
flags.DEFINE_bool('pretrain_joint', True, 'Pretraining: time the joint stage (false: only --pretrain_branches).')
flags.DEFINE_bool('pretrain_branches', False, 'Pretraining: also time the single-branch stages.')
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The shapes and numerics a benchmark builds its config with."""
  arch: str
  batch: int
  frames: int
  crop: int
  width: float
  dtype: str
  conv_impl: str = ''       # '' keeps the recipe's model.conv_impl
  remat: bool = False
  fast_compile: bool = False


@dataclasses.dataclass(frozen=True)
class Timing:
  steps: int = 20
  warmup: int = 3
  repeats: int = 3


def flag_sizes(arch):
  return Sizes(arch=arch, batch=FLAGS.batch, frames=FLAGS.frames, crop=FLAGS.crop, width=FLAGS.width,
               dtype=FLAGS.dtype, conv_impl=FLAGS.conv_impl, remat=FLAGS.remat, fast_compile=FLAGS.fast_compile)


def flag_timing():
  return Timing(steps=FLAGS.steps, warmup=FLAGS.warmup, repeats=FLAGS.repeats)


# ------------------------------------------------------------------------------------------------ configs
def recipe_config(name, arg=None):
  """configs/<name>.py's get_config(arg): the one place the benchmarks read the config files."""
  return importlib.import_module(f'configs.{name}').get_config(arg)


def apply_sizes(config, sizes):
  """The benchmark's shapes and numerics on a recipe config (in place; returns it)."""
  config.model.vnet, config.model.width, config.model.dtype = sizes.arch, sizes.width, sizes.dtype
  config.model.conv_impl = sizes.conv_impl or config.model.conv_impl
  config.data.clip_len, config.data.future_len, config.data.crop_size = sizes.frames, sizes.frames, sizes.crop
  config.train.remat, config.train.fast_compile = sizes.remat, sizes.fast_compile
  return config


# ------------------------------------------------------------------------------------------------ timing
def time_windows(run_one, timing):
  """Median seconds per call of `run_one` (-> device arrays, blocked on at the window ends) and every window's.

  At least one warm-up call, so the first window waits neither for a compile nor for the warm-up steps."""
  out = None
  for _ in range(max(timing.warmup, 1)):
    out = run_one()
  jax.block_until_ready(out)
  windows = []
  for _ in range(timing.repeats):
    t0 = time.perf_counter()
    for _ in range(timing.steps):
      out = run_one()
    jax.block_until_ready(out)
    windows.append((time.perf_counter() - t0) / timing.steps)
  return statistics.median(windows), windows


def device_peak_bytes():
  """Peak device memory of this process so far (monotonic; None where the backend does not say)."""
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


# Dense bf16 matrix rate per device kind, FLOP/s. H100/H200: the 8192^3 bf16 matmul measured on the lent machines
# (~790 TFLOP/s), the figure the performance document's MFU uses; the others: datasheets.
PEAK_BF16 = (('H200', 790e12), ('H100', 790e12), ('A100', 312e12), ('L4', 121e12), ('TPU v4', 275e12),
             ('TPU v5 lite', 197e12), ('TPU v5e', 197e12), ('TPU v5p', 459e12), ('TPU v6', 918e12))


def peak_flops(device_kind, override_tflops=0.0):
  if override_tflops > 0:
    return override_tflops * 1e12
  for key, rate in PEAK_BF16:
    if key.lower() in device_kind.lower():
      return rate
  return None


def add_throughput(r, forward_flops_per_clip, peak):
  """Adds clips/s, the useful FLOPs per step (3 x forward per clip x batch) and MFU to a timed result row."""
  r['clips_per_s'] = r['batch'] / (r['ms_per_step'] / 1e3)
  if forward_flops_per_clip:
    r['flops_per_step'] = 3.0 * forward_flops_per_clip * r['batch']
    if peak:
      r['mfu'] = r['flops_per_step'] / (r['ms_per_step'] / 1e3) / peak
  return r


def compile_report(compiled):
  """XLA's own FLOP count and memory plan of a compiled program (diagnostics; MFU does not use them)."""
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


def error_text(e):
  return f'{type(e).__name__}: {e}'[:2000]


# ------------------------------------------------------------------------------------------------ report
def report(results, ratios, settings):
  """The run's report: card, versions, XLA flags, settings, every result row and the ratios."""
  device = jax.devices()[0]
  return dict(card=device.device_kind, backend=jax.default_backend(),
              date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
              jax_version=jax.__version__, xla_flags=os.environ.get('XLA_FLAGS', ''),
              peak_flops=peak_flops(device.device_kind, settings.get('peak_tflops', 0.0)), config=settings,
              results=results, ratios=ratios)


def write_json(path, data):
  """Atomic write (a kill mid-write keeps the previous file)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(data, f, indent=1)
  os.replace(path + '.tmp', path)
