"""Augmentation: geometry on the host (decode, random resized crop, flip, poses follow), colour on the device.

The paper's four augmentations (random crop, random flip, Gaussian blur, colour jitter) on clips and I-frames.
Split by cost: the host decodes only the sampled JPEGs and crops/resizes/flips them (cheap in OpenCV, and poses
must follow the geometry), producing uint8 (…, S, S, 3); the jitted step then runs colour jitter + Gaussian
blur + mean/std normalisation (`device_augment`), which are elementwise/convolution work an accelerator does
for free.

JPEG decoder: simplejpeg (libjpeg-turbo, straight to RGB) with its fast integer IDCT (`fastdct`): pixels within
~1 grey level of the exact IDCT, below the q90 JPEG error, and the same decoder serves training and evaluation;
resize: OpenCV `cv2.resize` (bilinear). Chosen by measurement (docs/performance.md, "Decoding and resizing"),
with the alternatives measured and not adopted.

Choices where the paper is silent:
* Random resized crop as torchvision's RandomResizedCrop (area `data.crop_scale`, aspect `data.crop_ratio`, 10
  tries then a centre crop), one box and one flip per clip (the future clip shares the clip's box and flip so
  that prediction targets live in the same view; the poses P_in / P_gt follow the same box and flip).
  Each I-frame gets its own box and flip.
* Poses: x, y are fractions of the full frame; after the crop they are fractions of the crop; joints that fall
  outside the crop get confidence 0. A flip maps x -> 1 - x AND swaps left/right joints
  (records.COCO18_FLIP_PERMUTATION).
* Colour jitter as torchvision ColorJitter(0.4, 0.4, 0.4, 0.1) applied with probability `data.jitter_prob`,
  in the fixed order brightness, contrast, saturation, hue (torchvision shuffles the order); hue is a rotation
  of the chroma plane in YIQ space (a close, cheaper stand-in for the HSV hue shift). Contrast uses the mean
  grey level of each frame (what torchvision does on a (T, C, H, W) tensor).
* Gaussian blur with probability `data.blur_prob`, sigma ~ U(`data.blur_sigma`), separable, kernel radius
  ceil(3 * max sigma), reflect padding.
* Evaluation view: resize to short side `data.short_side` (frames are stored at that size already) and take the
  centre `crop_size` square; no colour augmentation.
"""
import math

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import simplejpeg

from csvr_jax.data import records

# Grain parallelises across worker processes; OpenCV's own thread pool would only oversubscribe the cores.
cv2.setNumThreads(1)


# ---------------------------------------------------------------------------------------------- host side
def decode_jpeg(data, buffer=None):
  """JPEG bytes -> (H, W, 3) uint8 RGB, with libjpeg-turbo's fast integer IDCT (see the module docstring).

  buffer: optional writable uint8 array of at least H * W * 3 bytes to decode into (the result is a view of it).
  """
  return simplejpeg.decode_jpeg(data, colorspace='RGB', fastdct=True, buffer=buffer)


def jpeg_size(data):
  """(H, W) of a JPEG, read from its header without decoding."""
  height, width = simplejpeg.decode_jpeg_header(data)[:2]
  return height, width


def random_crop_box(height, width, scale, ratio, rng):
  """torchvision RandomResizedCrop box -> (y0, x0, h, w) ints inside the frame."""
  area = height * width
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  # One Generator call for all 10 tries (area, aspect, y0, x0 uniforms): per-number calls (uniform, integers)
  # cost ~40 us per box, a few % of a pretraining sample. Same distributions as torchvision.
  for u_area, u_aspect, u_y, u_x in rng.random((10, 4)).tolist():
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    aspect = math.exp(log_lo + (log_hi - log_lo) * u_aspect)
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      y0 = min(int(u_y * (height - h + 1)), height - h)  # uniform integer in [0, height - h]
      x0 = min(int(u_x * (width - w + 1)), width - w)
      return y0, x0, h, w
  # Fallback: centre crop with the aspect clamped to the allowed range.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height, width, short_side, crop_size):
  """Box equivalent to: resize to short side `short_side`, then take the centre `crop_size` square."""
  side = int(round(crop_size * min(height, width) / short_side))
  side = min(side, height, width)
  return (height - side) // 2, (width - side) // 2, side, side


def crop_resize(frame, box, size, out=None):
  """(H, W, 3) uint8, box (y0, x0, h, w) -> (size, size, 3) uint8 (bilinear), written into `out` if given."""
  y0, x0, h, w = box
  patch = frame[y0:y0 + h, x0:x0 + w]
  if out is None:
    out = np.empty((size, size, 3), np.uint8)
  if h == size and w == size:
    out[...] = patch
    return out
  return cv2.resize(patch, (size, size), dst=out, interpolation=cv2.INTER_LINEAR)


def render_views(jpegs, views, size, out=None):
  """Crop + resize + flip views of JPEG frames -> (N, size, size, 3) uint8, each needed frame decoded once.

  jpegs: indexable, frame index -> JPEG bytes. views: N tuples (frame index, box (y0, x0, h, w), flip).
  out: None (a new (N, size, size, 3) array), a C-contiguous (N, size, size, 3) uint8 array, or a list of
  (n_k, size, size, 3) ones with sum n_k = N that the views fill in order (e.g. rows of batch arrays).
  Returns `out`.
  A frame can serve several views (the clip, the future clip under the loop policy, the I-frames): its views are
  rendered right after decoding it, into one reused decode buffer, so decoded frames stay in the CPU cache
  instead of ~35 frames (~2.3 MB) per sample going through memory. The buffer is sized by the first frame
  (simplejpeg allocates it) and only re-sized when a frame does not fit: no header parse per frame.
  Flips run after all resizes, one cv2.flip per run of consecutive flipped views in an output array (a clip is
  one run: its frames stacked as rows of one (n * size, size, 3) image flip horizontally in a single call).
  """
  if out is None:
    out = np.empty((len(views), size, size, 3), np.uint8)
  blocks = [out] if isinstance(out, np.ndarray) else list(out)
  if sum(len(block) for block in blocks) != len(views):
    raise ValueError(f'render_views: {len(views)} views but room for {sum(len(b) for b in blocks)}')
  # The loops below run ~36 times a pretraining sample: crop_resize inlined, cv2.resize called with positional
  # arguments (its binding parses keywords ~0.8 us more slowly a call).
  by_frame = {}
  for (i, box, _), dest in zip(views, (view for block in blocks for view in block)):
    targets = by_frame.get(i)
    if targets is None:
      by_frame[i] = [(dest, box)]
    else:
      targets.append((dest, box))
  buffer = None
  resize, linear = cv2.resize, cv2.INTER_LINEAR
  dsize = (size, size)
  for i, targets in by_frame.items():
    data = jpegs[i]
    try:
      frame = decode_jpeg(data, buffer)
    except ValueError:
      if buffer is None:
        raise
      buffer = np.empty(jpeg_size(data) + (3,), np.uint8)  # a larger frame than the previous ones
      frame = decode_jpeg(data, buffer)
    if buffer is None:
      buffer = frame
    for dest, (y0, x0, h, w) in targets:  # = crop_resize(frame, box, size, dest)
      if h == size and w == size:
        dest[...] = frame[y0:y0 + h, x0:x0 + w]
      else:
        resize(frame[y0:y0 + h, x0:x0 + w], dsize, dest, 0, 0, linear)
  first = 0
  for block in blocks:
    n = len(block)
    flipped = [k for k in range(n) if views[first + k][2]]
    for start, stop in _runs(flipped):
      rows = block[start:stop].reshape(-1, size, 3)
      cv2.flip(rows, 1, rows)  # in place; numpy's overlapping rows[:, ::-1] copy is ~20x slower
    first += n
  return out


def _runs(indices):
  """Sorted ints -> [start, stop) ranges of consecutive values."""
  runs = []
  for k in indices:
    if runs and runs[-1][1] == k:
      runs[-1][1] = k + 1
    else:
      runs.append([k, k + 1])
  return runs


def transform_poses(xy, conf, box, frame_hw, flip):
  """Poses of the full frame -> poses of the (flipped) crop.

  Args:
    xy: (N, J, 2) x, y as fractions of the full frame; conf: (N, J).
    box: (y0, x0, h, w) crop in pixels of a frame of size `frame_hw` = (H, W).
    flip: horizontal flip after the crop (x -> 1 - x and left/right joints swapped; J must be 18).
  Returns:
    xy (N, J, 2) float32 as fractions of the crop, conf (N, J) float32 (0 for joints outside the crop).
  """
  y0, x0, h, w = box
  height, width = frame_hw
  if flip:  # permuting the joints first gives the same values as permuting the result
    xy, conf = xy[:, _FLIP_PERMUTATION], conf[:, _FLIP_PERMUTATION]
  # x and y together: per coordinate the same operations in the same order as (x * width - x0) / w, in half the
  # numpy calls (this runs once a sample).
  xy = np.asarray(xy)
  dtype = xy.dtype  # of the scalars too: python ints in numpy arithmetic take the array's dtype
  p = (xy * np.array([width, height], dtype) - np.array([x0, y0], dtype)) / np.array([w, h], dtype)
  inside = ((p >= 0) & (p <= 1)).all(-1)
  keep = inside & (conf > 0)  # invalid joints carry no coordinates
  if flip:
    p[..., 0] = 1.0 - p[..., 0]
  out = np.where(keep[..., None], p, 0.0).astype(np.float32, copy=False)
  return out, np.where(inside, conf, 0.0).astype(np.float32, copy=False)


_FLIP_PERMUTATION = np.asarray(records.COCO18_FLIP_PERMUTATION)


# -------------------------------------------------------------------------------------------- device side
_GREY = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def normalize(images, mean, std):
  """uint8 (or float in [0, 255]) (…, 3) -> float32 (x / 255 - mean) / std."""
  x = jnp.asarray(images, jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _grey(x):
  return (x[..., 0:1] * _GREY[0] + x[..., 1:2] * _GREY[1] + x[..., 2:3] * _GREY[2])


def color_jitter(x, brightness, contrast, saturation, hue):
  """x float (…, H, W, 3) in [0, 1]; factors broadcastable to (…, 1, 1, 1); hue in turns (±0.5)."""
  x = jnp.clip(x * brightness, 0.0, 1.0)
  mean = jnp.mean(_grey(x), axis=(-3, -2), keepdims=True)
  x = jnp.clip(contrast * x + (1.0 - contrast) * mean, 0.0, 1.0)
  x = jnp.clip(saturation * x + (1.0 - saturation) * _grey(x), 0.0, 1.0)
  yiq = x @ _RGB_TO_YIQ.T
  angle = 2.0 * jnp.pi * hue[..., 0]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  i = yiq[..., 1] * cos - yiq[..., 2] * sin
  q = yiq[..., 1] * sin + yiq[..., 2] * cos
  yiq = jnp.stack([yiq[..., 0], i, q], -1)
  return jnp.clip(yiq @ _YIQ_TO_RGB.T, 0.0, 1.0)


def _blur_matrix(weights, size, radius):
  """Per-sample (…, size, size) matrix applying 1D taps `weights` (…, 2r+1) with reflect padding."""
  taps = np.arange(-radius, radius + 1)
  src = np.arange(size)[:, None] + taps[None, :]  # (size, K) source index of each tap, before reflection
  period = 2 * (size - 1)
  src = np.abs(src) % max(period, 1)
  src = np.where(src > size - 1, period - src, src)  # reflect ('reflect' mode: edge not repeated)
  onehot = np.eye(size, dtype=np.float32)[src]  # (size, K, size)
  return jnp.einsum('...k,ikj->...ij', weights, onehot)


def gaussian_blur(x, sigma, radius):
  """Separable Gaussian blur with reflect padding. x (…, H, W, C); sigma broadcastable to (…, 1, 1, 1).

  Written as two small matrix products per image (H x H and W x W matrices built from the taps): it compiles
  fast and runs on the matrix units, unlike 2r+1 shifted copies. sigma = 0 leaves x unchanged.
  """
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  s = jnp.maximum(sigma[..., 0, 0, 0], 1e-6)[..., None]  # (…, 1)
  w = jnp.exp(-0.5 * (taps / s) ** 2)
  w = w / jnp.sum(w, axis=-1, keepdims=True)  # (…, K)
  h, wd = x.shape[-3], x.shape[-2]
  rows = _blur_matrix(w, h, radius)  # (…, H, H)
  cols = _blur_matrix(w, wd, radius)  # (…, W, W)
  x = jnp.einsum('...ij,...jwc->...iwc', rows, x)
  return jnp.einsum('...vw,...hwc->...hvc', cols, x)


def device_augment(images, key, config, shared_axes=1):
  """Colour jitter + Gaussian blur + normalisation, jittable.

  Args:
    images: uint8 (*lead, *shared, S, S, 3). With shared_axes=1 a batch of clips (B, T, S, S, 3): one draw of
      parameters per clip, the same for all its frames. With shared_axes=0, e.g. I-frames (B, M, S, S, 3):
      an independent draw per image.
    key: PRNG key.
    config: the `data` section (jitter_prob, jitter_strength, blur_prob, blur_sigma, mean, std).
  Returns:
    float32 of the same shape, normalised by mean/std.
  """
  lead = images.shape[:images.ndim - 3 - shared_axes]
  bshape = lead + (1,) * (shared_axes + 3)
  k_jit, k_b, k_c, k_s, k_h, k_blur, k_sigma = jax.random.split(key, 7)
  sb, sc, ss, sh = config.jitter_strength

  def factor(k, strength, centre):
    return jax.random.uniform(k, bshape, minval=centre - strength, maxval=centre + strength)

  do_jit = jax.random.bernoulli(k_jit, config.jitter_prob, bshape)
  brightness = jnp.where(do_jit, factor(k_b, sb, 1.0), 1.0)
  contrast = jnp.where(do_jit, factor(k_c, sc, 1.0), 1.0)
  saturation = jnp.where(do_jit, factor(k_s, ss, 1.0), 1.0)
  hue = jnp.where(do_jit, factor(k_h, sh, 0.0), 0.0)
  x = jnp.asarray(images, jnp.float32) / 255.0
  x = color_jitter(x, brightness, contrast, saturation, hue)
  lo, hi = config.blur_sigma
  do_blur = jax.random.bernoulli(k_blur, config.blur_prob, bshape)
  sigma = jnp.where(do_blur, jax.random.uniform(k_sigma, bshape, minval=lo, maxval=hi), 0.0)
  x = gaussian_blur(x, sigma, radius=int(math.ceil(3 * hi)))
  return (x - jnp.asarray(config.mean, jnp.float32)) / jnp.asarray(config.std, jnp.float32)
