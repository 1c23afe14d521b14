"""Key-frame statistics of a built dataset: what the context branch (MI-InfoNCE over a clip's I-frames) will see.

* mean GOP: the mean distance, in frames, between consecutive key frames of a split's videos (videos with a
  single key frame have no complete GOP: they are counted apart, as `single_keyframe_videos`).
* clip fraction: the probability that a training clip has at least one key frame inside its widened clip window
  (csvr_jax/data/sampling.py iframe_window); a clip without one gets its only positive from the nearest key frame
  outside the window. Exact, not sampled: every clip start that sampling.sample_window can draw is enumerated
  (all equally likely) and the per-video fractions are averaged over videos (the loader draws videos uniformly).
"""
import dataclasses

import numpy as np

from csvr_jax.data import sampling


@dataclasses.dataclass(frozen=True)
class ClipGeometry:
  """The pretraining clip the statistics are for (configs/base.py data.* defaults: the paper's clip)."""
  clip_len: int = 16
  future_len: int = 16
  stride: int = 4
  iframe_margin: int = 5
  short_video_policy: str = 'loop'

  def validate(self):
    if min(self.clip_len, self.stride) < 1 or self.future_len < 0 or self.iframe_margin < 0:
      raise ValueError(f'clip geometry {self}: want clip_len, stride >= 1 and future_len, iframe_margin >= 0')
    if self.short_video_policy not in sampling.POLICIES:
      raise ValueError(f'--stats_short_video_policy={self.short_video_policy!r}: choose from {sampling.POLICIES}')


def clip_frames_per_start(num_frames, geometry):
  """(S, clip_len) frame indices of every clip sample_window can draw (one row per start), in start order.

  Starts as sampling.sample_window draws them: 0..num_frames - span for videos that hold the clip + future
  window; shorter ones start anywhere and wrap ('loop') or start at 0 and repeat the last frame ('pad').
  """
  g = geometry
  span = sampling.window_span(g.clip_len + g.future_len, g.stride)
  if num_frames >= span:
    starts = np.arange(num_frames - span + 1)
  elif g.short_video_policy == 'loop':
    starts = np.arange(num_frames)
  else:
    starts = np.zeros(1, np.int64)
  positions = starts[:, None] + g.stride * np.arange(g.clip_len)
  if g.short_video_policy == 'loop':
    return positions % num_frames
  return np.minimum(positions, num_frames - 1)


def clips_with_keyframe(keyframe_indices, num_frames, geometry):
  """-> (clips whose widened window holds a key frame, all clips) over every start of one video."""
  frames = clip_frames_per_start(num_frames, geometry)
  lo, hi = sampling.iframe_window(frames.min(axis=1), frames.max(axis=1), geometry.iframe_margin)
  keys = np.unique(np.asarray(keyframe_indices, np.int64))
  inside = np.searchsorted(keys, hi, side='right') > np.searchsorted(keys, lo, side='left')
  return int(inside.sum()), len(inside)


class KeyframeStats:
  """Accumulates videos per split; `result()` -> {geometry, splits: {split: {videos, mean_gop (None without any
  complete GOP), single_keyframe_videos, clip_fraction}}}."""

  def __init__(self, geometry):
    geometry.validate()
    self.geometry = geometry
    self.splits = {}

  def add(self, split, keyframe_indices, num_frames):
    s = self.splits.setdefault(split, dict(videos=0, gop_sum=0, gops=0, single=0, fraction_sum=0.0))
    with_key, clips = clips_with_keyframe(keyframe_indices, num_frames, self.geometry)
    keys = np.unique(np.asarray(keyframe_indices, np.int64))
    s['videos'] += 1
    s['gop_sum'] += int(keys[-1] - keys[0]) if len(keys) > 1 else 0  # the sum of the gaps between them
    s['gops'] += max(len(keys) - 1, 0)
    s['single'] += len(keys) <= 1
    s['fraction_sum'] += with_key / clips

  def result(self):
    out = {}
    for split, s in sorted(self.splits.items()):
      out[split] = dict(videos=s['videos'], mean_gop=s['gop_sum'] / s['gops'] if s['gops'] else None,
                        single_keyframe_videos=s['single'], clip_fraction=s['fraction_sum'] / s['videos'])
    return dict(geometry=dataclasses.asdict(self.geometry), splits=out)


def format_stats(stats, split='train'):
  """One line for the build summary: the training split's figures (the first split if there is no 'train')."""
  splits = stats['splits']
  if not splits:
    return 'key frames: no videos'
  name = split if split in splits else sorted(splits)[0]
  s, g = splits[name], stats['geometry']
  gop = f'{s["mean_gop"]:.1f} frames' if s['mean_gop'] is not None else 'n/a'
  single = f' ({s["single_keyframe_videos"]} of {s["videos"]} videos have one key frame only)' \
      if s['single_keyframe_videos'] else ''
  return (f'key frames ({name}): mean GOP {gop}{single}; {100 * s["clip_fraction"]:.1f}% of clips '
          f'({g["clip_len"]} frames at stride {g["stride"]}, {g["future_len"]} future) have a key frame within '
          f'{g["iframe_margin"]} frames of the clip')
