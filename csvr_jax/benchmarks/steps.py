"""The step benchmarks' runner: `python -m csvr_jax.bench --what=finetune_step[,pretrain_step] ...`.

  python -m csvr_jax.bench --what=finetune_step --arch=r3d_18,r2plus1d_18 --batch=32 --augment=none,device \
      --reference=torch --json_out=runs/bench/steps.json
  python -m csvr_jax.bench --what=pretrain_step --arch=r3d_18 --batch=16 --gan_update=one_stage,alternating \
      --video_gan=tgan2,dense

Per row: ms/step, clips/s, MFU, peak device memory, compile time and XLA's account of the program. The finetune
step is csvr_jax/benchmarks/finetune_bench.py (the library's `--mode=finetune` step), the pretraining step
csvr_jax/benchmarks/pretrain_bench.py (steps.StepFns); `--reference=torch` first runs torchvision doing the finetune
step's work (csvr_jax/benchmarks/torch_reference.py, its own process, eager and torch.compile'd, the same
`--augment` settings and the finetune config's hyperparameters) and reports JAX / torch clips/s per (arch,
augment): > 1 means JAX is faster. The report (`--json_out`) is rewritten after every row, so a killed run keeps
what it measured; csvr_jax/benchmarks/bench_report.py prints it and merges the reports of several processes.

Each variant to compare (XLA flags, `--conv_impl`) runs as its own process: XLA_FLAGS are read once per process,
and the peak-memory number of a process then belongs to one configuration (launch/gpu_bench.sh).
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import jax

from csvr_jax.benchmarks import bench_report
from csvr_jax.benchmarks import common
from csvr_jax.benchmarks import finetune_bench
from csvr_jax.benchmarks import pretrain_bench

FLAGS = common.FLAGS
STEP_BENCHMARKS = ('finetune_step', 'pretrain_step')


def torch_reference_args(config, augments, timing, *, modes, profile, device=None):
  """Command-line arguments of torch_reference.py doing the work of the finetune step of `config`."""
  d, f = config.data, config.finetune
  if f.schedule != 'cosine' or f.warmup_steps:
    raise ValueError(f'torch reference: only the cosine schedule without warm-up is mirrored; the config has '
                     f'finetune.schedule={f.schedule!r}, finetune.warmup_steps={f.warmup_steps}')
  floats = lambda xs: ','.join(str(float(x)) for x in xs)
  args = [f'--arch={config.model.vnet}', f'--modes={",".join(modes)}', f'--augment={",".join(augments)}',
          f'--batch={f.batch_size}', f'--frames={d.clip_len}', f'--crop={d.crop_size}',
          f'--num_classes={f.num_classes}', f'--dtype={config.model.dtype}', f'--steps={timing.steps}',
          f'--warmup={max(timing.warmup, 3)}', f'--repeats={timing.repeats}',
          f'--lr_per_sample={f.lr_per_sample}', f'--momentum={f.momentum}', f'--weight_decay={f.weight_decay}',
          f'--dropout={config.model.dropout}', f'--schedule_steps={finetune_bench.SCHEDULE_STEPS}',
          f'--jitter_prob={d.jitter_prob}', f'--jitter_strength={floats(d.jitter_strength)}',
          f'--blur_prob={d.blur_prob}', f'--blur_sigma={floats(d.blur_sigma)}', f'--mean={floats(d.mean)}',
          f'--std={floats(d.std)}']
  return args + (['--profile'] if profile else []) + ([f'--device={device}'] if device else [])


def run_torch_reference(config, augments, timing, *, modes, profile, timeout_s):
  """torch_reference.py in its own process -> its result rows (or one row with 'error' / 'skipped')."""
  row = dict(what='finetune_step', impl='torch', arch=config.model.vnet, features='vnet')
  if importlib.util.find_spec('torch') is None or importlib.util.find_spec('torchvision') is None:
    return [dict(row, skipped='torch/torchvision not importable')]
  device = 'cpu' if os.environ.get('JAX_PLATFORMS', '') == 'cpu' else None  # a CPU-only run keeps torch there
  with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, 'torch.json')
    cmd = [sys.executable, '-m', 'csvr_jax.benchmarks.torch_reference', f'--json_out={out}'] + torch_reference_args(
        config, augments, timing, modes=modes, profile=profile, device=device)
    try:
      p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
      return [dict(row, error=f'timed out after {timeout_s} s')]
    if p.returncode != 0 or not os.path.exists(out):
      return [dict(row, error=(p.stderr or p.stdout)[-2000:])]
    with open(out) as f:
      return json.load(f)


def selected():
  what = [w for w in FLAGS.what if w in STEP_BENCHMARKS] if 'what' in FLAGS else []
  return what or ['finetune_step']


def settings():
  """The flags a report records."""
  names = ('batch', 'dtype', 'frames', 'crop', 'width', 'steps', 'warmup', 'repeats', 'label', 'conv_impl', 'remat',
           'fast_compile', 'augment', 'features', 'gan_update', 'video_gan', 'peak_tflops')
  return {n: FLAGS[n].value for n in names}


def finetune_config(arch, features):
  return finetune_bench.finetune_config(common.flag_sizes(arch), num_classes=FLAGS.num_classes, features=features)


def finetune_rows(arch, timing, peak):
  """Yields a row per (--features, --augment) of the JAX finetune step (an error row where one fails)."""
  for features in FLAGS.features:
    config = finetune_config(arch, features)
    for augment in FLAGS.augment:
      try:
        row = finetune_bench.bench(config, augment, timing, label=FLAGS.label, hlo_dir=FLAGS.hlo_dir,
                                   profile=FLAGS.profile, peak=peak)
      except Exception as e:  # pylint: disable=broad-except  # the other variants still run
        row = dict(what='finetune_step', impl='jax', arch=arch, features=features, augment=augment,
                   label=FLAGS.label, error=common.error_text(e))
      print(f"finetune_step {arch} {features} augment={augment}: "
            f"{row.get('ms_per_step', float('nan')):.1f} ms/step {row.get('error', '')}", flush=True)
      yield row


def pretrain_rows(arch, timing, peak):
  """Yields the pretraining rows of every --video_gan, --gan_update and stage group as they are measured."""
  groups = ((('joint',),) if FLAGS.pretrain_joint else ()) + (
      (pretrain_bench.BRANCH_STAGES,) if FLAGS.pretrain_branches else ())
  for video_gan in FLAGS.video_gan:
    config = pretrain_bench.pretrain_config(common.flag_sizes(arch), gan_update=FLAGS.gan_update[0],
                                            video_gan=video_gan)
    yield from pretrain_bench.bench_variant(config, FLAGS.gan_update, timing, groups=groups, label=FLAGS.label,
                                            peak=peak)


def main():
  whats = selected()
  if FLAGS.reference not in (None, '', 'torch'):
    print(f'error: --reference={FLAGS.reference!r}; the only reference is torch', file=sys.stderr)
    sys.exit(2)
  for name in FLAGS.augment:
    finetune_bench.check_augment(name)
  timing = common.flag_timing()
  results = []

  def save():
    rep = common.report(results, bench_report.ratios(results), settings())
    if FLAGS.json_out:
      common.write_json(FLAGS.json_out, rep)
    return rep

  # PyTorch first, while JAX has not touched the device yet (nothing preallocated); vnet only (torchvision).
  if FLAGS.reference == 'torch' and 'finetune_step' in whats:
    for arch in FLAGS.arch:
      results += run_torch_reference(finetune_config(arch, 'vnet'), FLAGS.augment, timing, modes=FLAGS.torch_modes,
                                     profile=FLAGS.profile, timeout_s=FLAGS.torch_timeout_s)
  peak = common.peak_flops(jax.devices()[0].device_kind, FLAGS.peak_tflops)  # JAX's backend starts here
  for arch in FLAGS.arch:
    torch_rows = [r for r in results if r.get('arch') == arch and 'ms_per_step' in r]
    if torch_rows:  # the useful FLOPs of the JAX vnet step: the same work
      fwd = finetune_bench.forward_flops_per_clip(finetune_config(arch, 'vnet'))
      for r in torch_rows:
        common.add_throughput(r, fwd, peak)
    save()
    for rows in ((finetune_rows,) if 'finetune_step' in whats else ()) + (
        (pretrain_rows,) if 'pretrain_step' in whats else ()):
      for r in rows(arch, timing, peak):
        results.append(r)
        save()
  rep = save()
  bench_report.print_table(results, rep['ratios'])
  if FLAGS.json_out:
    print(f'wrote {FLAGS.json_out}')
  return rep
