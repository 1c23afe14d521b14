"""The PyTorch reference for the finetune-step benchmark: torchvision's video ResNets, SGD train step.

The strongest plain PyTorch a user would run (DESIGN.md section 5): channels_last_3d memory format, bf16
autocast, cudnn.benchmark, fused SGD where available; measured eager AND torch.compile'd (default mode).
torch is imported only in this module, and this module is run as its own process by
csvr_jax.benchmarks.steps (`python -m csvr_jax.benchmarks.torch_reference --arch=r3d_18 ...`), so that
the two frameworks never share a process (JAX preallocates device memory; two cuDNN builds in one process
are asking for trouble) and each peak-memory number belongs to one framework.

Timing method, the same as the JAX side: a fixed on-device batch, warm-up steps (compilation and cuDNN's
algorithm search happen there), then `repeats` windows of `steps` steps each, synchronised at the window
ends; ms/step is the median window.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

# csvr_jax backbone name -> torchvision constructor name.
TORCHVISION_ARCH = {'r3d_18': 'r3d_18', 'r2plus1d_18': 'r2plus1d_18', 'mc3_18': 'mc3_18'}
# The UCF101 finetune recipe (DESIGN.md section 1); the values do not change the step's cost.
LR_PER_SAMPLE = 1e-4
WEIGHT_DECAY = 0.003
MOMENTUM = 0.9


def _sync(device):
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


def _make_optimizer(params, lr, device):
  """SGD momentum with weight decay; the fused CUDA kernel when this torch has it (fewest launches)."""
  kw = dict(lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
  if device.type == 'cuda':
    try:
      return torch.optim.SGD(params, fused=True, **kw), 'fused'
    except (TypeError, RuntimeError):
      pass
  return torch.optim.SGD(params, **kw), 'foreach'


def _top_kernels(prof, n):
  """[(name, total ms, calls)] of the n device kernels with the most self time, from a torch profile."""
  rows = []
  for e in prof.key_averages():
    t = getattr(e, 'self_device_time_total', None)
    if t is None:
      t = getattr(e, 'self_cuda_time_total', 0)
    if t > 0:
      rows.append((e.key, t / 1e3, e.count))
  rows.sort(key=lambda r: -r[1])
  return rows[:n]


def measure(arch, mode, *, batch, frames, crop, num_classes, dtype, steps, warmup, repeats, device,
            profile=False):
  """Times one torchvision train step. mode: 'eager' | 'compile'. Returns a dict of numbers."""
  if arch not in TORCHVISION_ARCH:
    raise ValueError(f'torch reference: no torchvision model for arch {arch!r}; choose from '
                     f'{sorted(TORCHVISION_ARCH)}')
  torch.manual_seed(0)
  model = getattr(torchvision.models.video, TORCHVISION_ARCH[arch])(num_classes=num_classes)
  model = model.to(device=device, memory_format=torch.channels_last_3d).train()
  opt, opt_kind = _make_optimizer(model.parameters(), LR_PER_SAMPLE * batch, device)
  net = torch.compile(model) if mode == 'compile' else model
  amp_dtype = {'bfloat16': torch.bfloat16, 'float16': torch.float16}.get(dtype)
  # (B, C, T, H, W) as torchvision expects, stored channels-last; float32 as a data loader delivers it,
  # autocast casts it at the first convolution.
  x = torch.randn(batch, 3, frames, crop, crop, device=device).contiguous(
      memory_format=torch.channels_last_3d)
  y = torch.randint(0, num_classes, (batch,), device=device)

  def step():
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
      loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  if device.type == 'cuda':
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
  t0 = time.perf_counter()
  for _ in range(warmup):
    loss = step()
  _sync(device)
  warmup_s = time.perf_counter() - t0
  windows = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      loss = step()
    _sync(device)
    windows.append((time.perf_counter() - t0) / steps)
  out = dict(impl=f'torch_{mode}', arch=arch, batch=batch, ms_per_step=1e3 * statistics.median(windows),
             ms_per_step_windows=[1e3 * w for w in windows], warmup_s=warmup_s, loss=float(loss),
             optimizer=opt_kind, torch_version=torch.__version__)
  out['clips_per_s'] = batch / (out['ms_per_step'] / 1e3)
  if device.type == 'cuda':
    out['peak_bytes'] = int(torch.cuda.max_memory_allocated(device))
    out['device_kind'] = torch.cuda.get_device_name(device)
  if profile:
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
      acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
      for _ in range(3):
        step()
      _sync(device)
    out['top_kernels'] = [dict(name=n, ms_per_step=t / 3, calls_per_step=c / 3)
                          for n, t, c in _top_kernels(prof, 25)]
  del net, model, opt, x, y
  if device.type == 'cuda':
    torch.cuda.empty_cache()
  return out


def run(arch, *, modes=('eager', 'compile'), batch=32, frames=16, crop=112, num_classes=101,
        dtype='bfloat16', steps=20, warmup=5, repeats=3, device=None, profile=False):
  """Measures each mode in turn; a mode that fails is recorded with its error instead of its numbers."""
  device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
  if device.type == 'cuda':
    torch.backends.cudnn.benchmark = True
  results = []
  for mode in modes:
    try:
      results.append(measure(arch, mode, batch=batch, frames=frames, crop=crop, num_classes=num_classes,
                             dtype=dtype, steps=steps, warmup=warmup, repeats=repeats, device=device,
                             profile=profile and mode == 'eager'))
    except Exception as e:  # pylint: disable=broad-except  # one broken mode must not hide the other
      results.append(dict(impl=f'torch_{mode}', arch=arch, batch=batch,
                          error=f'{type(e).__name__}: {str(e)[:2000]}'))
    print(json.dumps({k: v for k, v in results[-1].items() if k != 'top_kernels'}), flush=True)
  return results


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--arch', required=True)
  p.add_argument('--modes', default='eager,compile')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--frames', type=int, default=16)
  p.add_argument('--crop', type=int, default=112)
  p.add_argument('--num_classes', type=int, default=101)
  p.add_argument('--dtype', default='bfloat16')
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--device', default=None)
  p.add_argument('--profile', action='store_true')
  p.add_argument('--json_out', required=True)
  a = p.parse_args(argv)
  results = run(a.arch, modes=tuple(a.modes.split(',')), batch=a.batch, frames=a.frames, crop=a.crop,
                num_classes=a.num_classes, dtype=a.dtype, steps=a.steps, warmup=a.warmup,
                repeats=a.repeats, device=a.device, profile=a.profile)
  with open(a.json_out, 'w') as f:
    json.dump(results, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
