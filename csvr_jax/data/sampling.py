"""Temporal sampling (pure numpy, no I/O): which frames of a video make a sample.

Pretraining sample (docs/design.md, "Paper -> code"): the clip V = `clip_len` frames at `stride`, the future clip V+ = the
next `future_len` frames at the same stride (so frame k of the joint window is `start + k * stride`), the poses
P_in / P_gt at those same frames, and the I-frames of the clip window.

Choices where the paper is silent:
* Short videos (fewer than `(clip_len + future_len - 1) * stride + 1` frames): policy 'loop' reads the frame
  positions modulo the video length (from a random start), policy 'pad' repeats the last frame and marks the
  positions past the end invalid (their poses get confidence 0). Either way the sample's `looped` flag is True.
* I-frames of a clip: the codec's key frames inside [first clip frame - margin, last clip frame + margin]
  (DCM's 5-frame margin). More than `max_iframes`: a random subset (sorted). None: the key frame nearest to the
  clip's centre (a video always has one: its first frame; an empty key-frame list falls back to the clip's
  first frame). Padded to `max_iframes` with a validity mask.
* Evaluation: `num_clips` clip starts spaced uniformly from the first to the last possible start (the paper's
  "10 clips with a sliding window"); short videos follow the same policy as in training.
"""
import dataclasses

import numpy as np

POLICIES = ('loop', 'pad')


@dataclasses.dataclass(frozen=True)
class Window:
  """Frame indices of one sample.

  frames: (N,) int32 indices into the video, all within [0, num_frames); N = clip_len (+ future_len).
  valid: (N,) bool, False at positions that the 'pad' policy filled by repeating the last frame.
  looped: True when the video was too short and the short-video policy was applied.
  """
  frames: np.ndarray
  valid: np.ndarray
  looped: bool


def window_span(length, stride):
  """Frames covered by `length` positions at `stride` (first to last, inclusive)."""
  return (length - 1) * stride + 1


def _positions(num_frames, start, length, stride, policy):
  """Frame indices start + k * stride, k < length, made to fit a video of `num_frames` by `policy`."""
  if num_frames <= 0:
    raise ValueError(f'video has num_frames={num_frames}; need at least 1')
  if policy not in POLICIES:
    raise ValueError(f'data.short_video_policy={policy!r}; choose from {POLICIES}')
  pos = start + stride * np.arange(length, dtype=np.int64)
  looped = bool(pos[-1] >= num_frames)
  if policy == 'loop':
    frames = pos % num_frames
    valid = np.ones(length, bool)
  else:
    frames = np.minimum(pos, num_frames - 1)
    valid = pos < num_frames
  return Window(frames.astype(np.int32), valid, looped)


def sample_window(num_frames, length, stride, policy, rng):
  """A random window of `length` positions at `stride` (clip + future when length = T + T').

  Long enough videos: start uniform in [0, num_frames - span]. Short ones: 'loop' starts anywhere in the
  video and wraps; 'pad' starts at 0 and repeats the last frame.
  """
  span = window_span(length, stride)
  if num_frames >= span:
    start = int(rng.integers(0, num_frames - span + 1))
  elif policy == 'loop':
    start = int(rng.integers(0, num_frames))
  else:
    start = 0
  return _positions(num_frames, start, length, stride, policy)


def eval_windows(num_frames, length, stride, num_clips, policy):
  """`num_clips` deterministic windows with starts uniformly spaced over the video -> list of Window."""
  span = window_span(length, stride)
  last_start = max(num_frames - span, 0)
  starts = np.round(np.linspace(0, last_start, num_clips)).astype(np.int64)
  return [_positions(num_frames, int(s), length, stride, policy) for s in starts]


def split_clip_future(window, clip_len):
  """Window of T + T' positions -> (clip Window, future Window); `looped` is shared."""
  clip = Window(window.frames[:clip_len], window.valid[:clip_len], window.looped)
  future = Window(window.frames[clip_len:], window.valid[clip_len:], window.looped)
  return clip, future


def iframe_window(first_frame, last_frame, margin):
  """The frames [lo, hi] (inclusive) whose key frames belong to a clip spanning first_frame..last_frame: the
  clip widened by `margin` frames on each side. Scalars or numpy arrays (data_prep's key-frame statistics)."""
  return first_frame - margin, last_frame + margin


def select_iframes(keyframe_indices, clip_frames, margin, max_iframes, rng):
  """I-frames that belong to a clip.

  Args:
    keyframe_indices: (K,) int display indices of the video's codec I-frames (may be empty).
    clip_frames: (T,) int frame indices of the clip.
    margin: the clip window [min, max] of `clip_frames` is widened by this many frames on each side.
    max_iframes: M, the padded length.
    rng: numpy Generator (subset choice when more than M I-frames fall in the window).
  Returns:
    indices (M,) int32 frame indices (padding slots repeat the first valid one), mask (M,) bool.
  """
  # Python lists: K and T are tens of ints, where each numpy call (unique, min, masks) costs more than the work.
  keys = sorted(set(np.asarray(keyframe_indices, np.int64).reshape(-1).tolist()))
  clip = np.asarray(clip_frames).reshape(-1).tolist()
  lo, hi = iframe_window(min(clip), max(clip), margin)
  inside = [k for k in keys if lo <= k <= hi]
  if len(inside) > max_iframes:
    pick = rng.permutation(len(inside))[:max_iframes].tolist()  # uniform subset (~4x cheaper than choice)
    inside = sorted(inside[j] for j in pick)
  elif not inside:
    if keys:
      centre = 0.5 * (lo + hi)
      inside = [min(keys, key=lambda k: abs(k - centre))]  # the first of equally near ones
    else:
      inside = [clip[0]]
  n = len(inside)
  indices = np.asarray(inside + inside[:1] * (max_iframes - n), np.int32)
  mask = np.arange(max_iframes) < n
  return indices, mask


def pose_window(poses, window):
  """Poses at a window's frames.

  Args:
    poses: (F, J, 3) float (x, y in [0, 1] of the full frame, confidence).
    window: Window with frames (N,).
  Returns:
    xy (N, J, 2) float32, conf (N, J) float32 (0 where the position is invalid or no person was found).
  """
  p = np.asarray(poses)[window.frames].astype(np.float32)  # index first: a video has ~10x the frames
  conf = p[..., 2] * window.valid[:, None]
  return p[..., :2], conf.astype(np.float32)
