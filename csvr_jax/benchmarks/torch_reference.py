"""The PyTorch reference of the finetune-step benchmark: torchvision's video ResNet doing the work of csvr_jax's
`--mode=finetune` step (csvr_jax/benchmarks/finetune_bench.py), with the hyperparameters the runner reads from the
same config and passes on the command line.

One step, on a fixed on-device batch of the finetune contract (uint8 clips (B,T,S,S,3), labels):
  augment 'device': per clip, colour jitter (probability jitter_prob; brightness, contrast, saturation, hue) then
      a Gaussian blur (probability blur_prob, sigma uniform in blur_sigma, radius ceil(3 max sigma), reflect
      padding, as two matrix products per image), then normalisation: the formulas of csvr_jax/data/augment.py,
      on the GPU, inside the step; float32 with TF32 matmuls (XLA's default float32 dot precision on such GPUs);
  augment 'none': normalisation only;
then (B,3,T,S,S) channels_last_3d (a free view of the (B,T,S,S,3) layout), the model under bf16 autocast, dropout
and a linear classifier, cross-entropy, backward, SGD with momentum and weight decay added to the gradient (fused
kernel where available), the learning rate lr_per_sample x B on a cosine schedule advanced every step.
Modes: 'eager', and 'compile': torch.compile (default mode) of augmentation + forward; cudnn.benchmark on.

torch is imported only here, and the runner (csvr_jax/benchmarks/steps.py) starts this module as its own process
(`python -m csvr_jax.benchmarks.torch_reference --arch=r3d_18 ...`), before JAX touches the device: the two
frameworks never share a process (JAX preallocates device memory) and each peak-memory number belongs to one.
Timing as in csvr_jax/benchmarks/common.py: warm-up steps (compilation and cuDNN's algorithm search happen
there), then `repeats` windows of `steps` steps, synchronised at the window ends; ms/step is the median window.
"""
import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

# csvr_jax backbone name -> torchvision constructor name.
TORCHVISION_ARCH = {'r3d_18': 'r3d_18', 'r2plus1d_18': 'r2plus1d_18', 'mc3_18': 'mc3_18'}
AUGMENTS = ('device', 'none')
_GREY = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


# ------------------------------------------------------------------------------------------ augmentation
def _grey(x):
  return x[..., 0:1] * _GREY[0] + x[..., 1:2] * _GREY[1] + x[..., 2:3] * _GREY[2]


def color_jitter(x, brightness, contrast, saturation, hue):
  """x float (B,T,H,W,3) in [0, 1]; factors (B,1,1,1,1); hue in turns (csvr_jax.data.augment.color_jitter)."""
  x = (x * brightness).clamp(0.0, 1.0)
  mean = _grey(x).mean(dim=(-3, -2), keepdim=True)
  x = (contrast * x + (1.0 - contrast) * mean).clamp(0.0, 1.0)
  x = (saturation * x + (1.0 - saturation) * _grey(x)).clamp(0.0, 1.0)
  yiq = x @ torch.as_tensor(_RGB_TO_YIQ.T, device=x.device)
  angle = 2.0 * math.pi * hue[..., 0]
  cos, sin = torch.cos(angle), torch.sin(angle)
  i = yiq[..., 1] * cos - yiq[..., 2] * sin
  q = yiq[..., 1] * sin + yiq[..., 2] * cos
  yiq = torch.stack([yiq[..., 0], i, q], -1)
  return (yiq @ torch.as_tensor(_YIQ_TO_RGB.T, device=x.device)).clamp(0.0, 1.0)


def reflect_onehot(size, radius):
  """(size, 2r+1, size) float32: tap k of output i reads input j (reflect padding, edge not repeated)."""
  src = np.arange(size)[:, None] + np.arange(-radius, radius + 1)[None, :]
  period = 2 * (size - 1)
  src = np.abs(src) % max(period, 1)
  src = np.where(src > size - 1, period - src, src)
  return np.eye(size, dtype=np.float32)[src]


def gaussian_blur(x, sigma, radius, onehot_h, onehot_w):
  """Separable blur of x (B,T,H,W,C) with one sigma per clip (B,1,1,1,1) (csvr_jax.data.augment.gaussian_blur)."""
  taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
  s = sigma.reshape(-1, 1).clamp_min(1e-6)
  w = torch.exp(-0.5 * (taps / s) ** 2)
  w = w / w.sum(-1, keepdim=True)                                    # (B, K)
  rows = torch.einsum('bk,ikj->bij', w, onehot_h)                    # (B, H, H)
  cols = torch.einsum('bk,ikj->bij', w, onehot_w)                    # (B, W, W)
  x = torch.einsum('bij,btjwc->btiwc', rows, x)
  return torch.einsum('bvw,bthwc->bthvc', cols, x)


def draw_params(batch, a, device):
  """Per-clip random parameters of the device augmentation: (brightness, contrast, saturation, hue, sigma)."""
  shape = (batch, 1, 1, 1, 1)
  u = lambda: torch.rand(shape, device=device)
  do_jit = u() < a.jitter_prob
  factor = lambda strength, centre: torch.where(do_jit, centre + strength * (2 * u() - 1),
                                                torch.full(shape, centre, device=device))
  sb, sc, ss, sh = a.jitter_strength
  lo, hi = a.blur_sigma
  sigma = torch.where(u() < a.blur_prob, lo + (hi - lo) * u(), torch.zeros(shape, device=device))
  return factor(sb, 1.0), factor(sc, 1.0), factor(ss, 1.0), factor(sh, 0.0), sigma


def normalize(x, mean, std):
  return (x - torch.as_tensor(mean, device=x.device)) / torch.as_tensor(std, device=x.device)


def augment_clips(clips, params, a, onehots):
  """uint8 (B,T,H,W,3) -> float32 normalised, colour-jittered and blurred with `params` (draw_params)."""
  brightness, contrast, saturation, hue, sigma = params
  x = color_jitter(clips.float() / 255.0, brightness, contrast, saturation, hue)
  x = gaussian_blur(x, sigma, blur_radius(a), *onehots)
  return normalize(x, a.mean, a.std)


def blur_radius(a):
  return int(math.ceil(3 * a.blur_sigma[1]))


# ------------------------------------------------------------------------------------------ the step
def _sync(device):
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


def _make_optimizer(params, a, batch, device):
  """SGD momentum with weight decay added to the gradient; the fused CUDA kernel when this torch has it."""
  kw = dict(lr=a.lr_per_sample * batch, momentum=a.momentum, weight_decay=a.weight_decay)
  if device.type == 'cuda':
    try:
      return torch.optim.SGD(params, fused=True, **kw), 'fused'
    except (TypeError, RuntimeError):
      pass
  return torch.optim.SGD(params, **kw), 'foreach'


def make_model(arch, num_classes, dropout, device):
  """torchvision's video model with dropout before a fresh linear classifier, channels_last_3d, train mode."""
  if arch not in TORCHVISION_ARCH:
    raise ValueError(f'torch reference: no torchvision model for arch {arch!r}; choose from {sorted(TORCHVISION_ARCH)}')
  model = getattr(torchvision.models.video, TORCHVISION_ARCH[arch])()
  model.fc = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(model.fc.in_features, num_classes))
  return model.to(device=device, memory_format=torch.channels_last_3d).train()


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


def measure(arch, mode, augment, a, device, profile=False):
  """Times one train step. mode: 'eager' | 'compile'; augment: 'device' | 'none'. Returns a result row."""
  if augment not in AUGMENTS:
    raise ValueError(f'torch reference: augment {augment!r}; choose from {AUGMENTS}')
  torch.manual_seed(0)
  model = make_model(arch, a.num_classes, a.dropout, device)
  opt, opt_kind = _make_optimizer(model.parameters(), a, a.batch, device)
  sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.schedule_steps)
  amp_dtype = {'bfloat16': torch.bfloat16, 'float16': torch.float16}.get(a.dtype)
  onehots = tuple(torch.as_tensor(reflect_onehot(a.crop, blur_radius(a)), device=device) for _ in range(2))

  def forward(clips):
    if augment == 'device':
      x = augment_clips(clips, draw_params(clips.shape[0], a, device), a, onehots)
    else:
      x = normalize(clips.float() / 255.0, a.mean, a.std)
    x = x.permute(0, 4, 1, 2, 3)  # (B,3,T,H,W), strides of channels_last_3d
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
      return model(x).float()

  net = torch.compile(forward) if mode == 'compile' else forward
  gen = torch.Generator(device='cpu').manual_seed(0)
  clips = torch.randint(0, 256, (a.batch, a.frames, a.crop, a.crop, 3), dtype=torch.uint8, generator=gen).to(device)
  labels = torch.randint(0, a.num_classes, (a.batch,), generator=gen).to(device)

  def step():
    loss = F.cross_entropy(net(clips), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss

  if device.type == 'cuda':
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
  t0 = time.perf_counter()
  for _ in range(max(a.warmup, 1)):
    loss = step()
  _sync(device)
  warmup_s = time.perf_counter() - t0
  windows = []
  for _ in range(a.repeats):
    t0 = time.perf_counter()
    for _ in range(a.steps):
      loss = step()
    _sync(device)
    windows.append((time.perf_counter() - t0) / a.steps)
  out = dict(what='finetune_step', impl=f'torch_{mode}', arch=arch, features='vnet', augment=augment, batch=a.batch,
             ms_per_step=1e3 * statistics.median(windows), ms_per_step_windows=[1e3 * w for w in windows],
             warmup_s=warmup_s, loss=float(loss), optimizer=opt_kind, torch_version=torch.__version__)
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
    out['top_kernels'] = [dict(name=n, ms_per_step=t / 3, calls_per_step=c / 3) for n, t, c in _top_kernels(prof, 25)]
  del net, model, opt, clips, labels
  if device.type == 'cuda':
    torch.cuda.empty_cache()
  return out


def run(a):
  """Measures every (augment, mode) in turn; one that fails is recorded with its error instead of its numbers."""
  device = torch.device(a.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
  if device.type == 'cuda':
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True  # the augmentation's float32 matmuls, as XLA runs them
  results = []
  for augment in a.augment.split(','):
    for mode in a.modes.split(','):
      try:
        results.append(measure(a.arch, mode, augment, a, device, profile=a.profile and mode == 'eager'))
      except Exception as e:  # pylint: disable=broad-except  # one broken mode must not hide the others
        results.append(dict(what='finetune_step', impl=f'torch_{mode}', arch=a.arch, features='vnet',
                            augment=augment, batch=a.batch, error=f'{type(e).__name__}: {str(e)[:2000]}'))
      print(json.dumps({k: v for k, v in results[-1].items() if k != 'top_kernels'}), flush=True)
  return results


def _floats(text):
  return tuple(float(x) for x in text.split(','))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--arch', required=True)
  p.add_argument('--modes', default='eager,compile')
  p.add_argument('--augment', default='none,device', help='device | none, comma-separated')
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
  # The recipe's hyperparameters: the runner passes the finetune config's values (steps.torch_reference_args).
  for name in ('lr_per_sample', 'momentum', 'weight_decay', 'dropout', 'jitter_prob', 'blur_prob'):
    p.add_argument(f'--{name}', type=float, required=True)
  p.add_argument('--schedule_steps', type=int, required=True)
  for name in ('jitter_strength', 'blur_sigma', 'mean', 'std'):
    p.add_argument(f'--{name}', type=_floats, required=True, help='comma-separated floats')
  return p.parse_args(argv)


def main(argv=None):
  a = parse_args(argv)
  results = run(a)
  with open(a.json_out, 'w') as f:
    json.dump(results, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
