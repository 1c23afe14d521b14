"""What training shows: JSONL + TensorBoard scalars, a console progress line, image grids, NaN/Inf stop.

Metrics are flat dicts of scalars with slash namespaces ('pose/d_loss', 'grad_norm/vnet'), pulled to the host
only at log steps. Only process 0 writes (files and console); every process runs the same finite check, so all
of them stop together. TensorBoard files come from tensorboardX (no TensorFlow needed).
"""
import io
import json
import math
import os
import sys
import time

import jax
import numpy as np

# OpenPose COCO-18 limbs (joint index pairs): neck-shoulders-arms, neck-hips-legs, neck-nose-eyes-ears.
POSE_LIMBS = ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
              (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))


class NonFiniteLossError(RuntimeError):
  """Raised when a loss is NaN or Inf; the message names the loss and the step."""


def check_finite(step, metrics, checkpoint_note=''):
  """Raises NonFiniteLossError naming the first non-finite loss (keys containing 'loss' first, then any)."""
  names = sorted(metrics, key=lambda k: ('loss' not in k, k))
  for name in names:
    value = float(np.asarray(metrics[name]))
    if not math.isfinite(value):
      raise NonFiniteLossError(f'{name} is {value} at step {step}; training stopped'
                               + (f' ({checkpoint_note})' if checkpoint_note else ''))


class MetricWriter:
  """JSONL (workdir/metrics.jsonl) + TensorBoard (workdir/tb/) + console, from process 0 only."""

  def __init__(self, workdir, total_steps, batch_size, progress_bar=True, main_keys=None):
    self.active = jax.process_index() == 0
    self.total_steps = total_steps
    self.batch_size = batch_size
    self.progress_bar = progress_bar
    self.main_keys = main_keys
    self._last = None  # (time, step) of the previous scalar write, for steps/s
    self.image_dir = os.path.join(workdir, 'images')
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    import tensorboardX  # pylint: disable=g-import-not-at-top  (only process 0 needs it)
    self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))

  def write_scalars(self, step, metrics):
    """metrics: flat {name: scalar}; adds 'perf/steps_per_sec' and 'perf/clips_per_sec' between calls."""
    metrics = {k: float(np.asarray(v)) for k, v in metrics.items()}
    now = time.time()
    if self._last is not None and step > self._last[1]:
      rate = (step - self._last[1]) / max(now - self._last[0], 1e-9)
      metrics['perf/steps_per_sec'] = rate
      metrics['perf/clips_per_sec'] = rate * self.batch_size
    self._last = (now, step)
    if not self.active:
      return
    self._jsonl.write(json.dumps({'step': int(step), **metrics}) + '\n')
    self._jsonl.flush()
    for k, v in metrics.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()
    if self.progress_bar:
      print(self.progress_line(step, metrics), file=sys.stderr, flush=True)

  def progress_line(self, step, metrics):
    """'[  40/1000   4%] 2.31 steps/s 37 clips/s ETA 6m55s | loss 1.234 ...' (main losses only)."""
    total = max(self.total_steps, 1)
    rate = metrics.get('perf/steps_per_sec')
    eta = _fmt_time((self.total_steps - step) / rate) if rate else '?'
    speed = f'{rate:.2f} steps/s {metrics["perf/clips_per_sec"]:.1f} clips/s' if rate else '- steps/s'
    keys = self.main_keys or [k for k in metrics if k.endswith('loss') and not k.startswith('perf/')]
    losses = ' '.join(f'{k} {metrics[k]:.4g}' for k in keys if k in metrics)
    return f'[{step:>{len(str(total))}}/{total} {100 * step // total:3d}%] {speed} ETA {eta} | {losses}'

  def write_image(self, step, name, image):
    """image: uint8 (H, W, 3); saved as images/{name}_{step:08d}.png and to TensorBoard."""
    if not self.active:
      return
    from PIL import Image  # pylint: disable=g-import-not-at-top
    os.makedirs(self.image_dir, exist_ok=True)
    Image.fromarray(image).save(os.path.join(self.image_dir, f'{name.replace("/", "_")}_{step:08d}.png'))
    self._tb.add_image(name, image, step, dataformats='HWC')
    self._tb.flush()

  def write_config(self, config):
    if self.active:
      self._tb.add_text('config', '```\n' + str(config) + '\n```', 0)

  def close(self):
    if self.active:
      self._jsonl.close()
      self._tb.close()


def _fmt_time(seconds):
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


def video_to_uint8(x):
  """Video in [-1, 1] (any shape ending in 3) -> uint8."""
  return np.clip((np.asarray(x, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def frame_grid(rows, max_frames=8):
  """rows: list of (T, H, W, 3) videos in [-1, 1] (e.g. real, reconstructed, real future, predicted) of one
  sample -> uint8 (len(rows) * H, min(T, max_frames) * W, 3), frames evenly subsampled, 1-px white gaps."""
  t = min(min(r.shape[0] for r in rows), max_frames)
  out = []
  for r in rows:
    idx = np.linspace(0, r.shape[0] - 1, t).round().astype(int)
    frames = video_to_uint8(r[idx])
    frames = np.pad(frames, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=255)
    out.append(np.concatenate(list(frames), axis=1))
  return np.concatenate(out, axis=0)


def pose_grid(real, pred, conf=None, max_steps=8):
  """Skeletons of one sample: real (T, 18, 2) in [0, 1] (black) vs predicted (red), one panel per time step;
  joints with conf <= 0 are left out. Returns a uint8 (H, W, 3) image rendered with matplotlib (Agg)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  real, pred = np.asarray(real, np.float32), np.asarray(pred, np.float32)
  conf = np.ones(real.shape[:2], np.float32) if conf is None else np.asarray(conf, np.float32)
  steps = np.linspace(0, real.shape[0] - 1, min(real.shape[0], max_steps)).round().astype(int)
  fig, axes = plt.subplots(1, len(steps), figsize=(1.6 * len(steps), 1.8), dpi=64, squeeze=False)
  for ax, t in zip(axes[0], steps):
    for pose, color in ((real[t], 'k'), (pred[t], 'r')):
      for a, b in POSE_LIMBS:
        if a < pose.shape[0] and b < pose.shape[0] and conf[t, a] > 0 and conf[t, b] > 0:
          ax.plot([pose[a, 0], pose[b, 0]], [pose[a, 1], pose[b, 1]], color=color, lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)  # image coordinates: y grows downwards
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f't={t}', fontsize=7)
  buf = io.BytesIO()
  fig.savefig(buf, format='png')
  plt.close(fig)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf.seek(0)
  return np.asarray(Image.open(buf).convert('RGB'))
