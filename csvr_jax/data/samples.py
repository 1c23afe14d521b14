"""One sample from one record (pure: numpy, augment and sampling, no I/O beyond the record's bytes).

The loaders of csvr_jax/data/pipeline.py map these over Grain; their docstring gives the batch contract.
`pretrain_sample` is the one-row reference of the pretraining batch (pipeline._PretrainBatch renders the same
draws straight into the batch arrays); `finetune_sample`, `eval_sample` and `eval_padding` are what the finetune
and evaluation loaders batch.
"""
import numpy as np

from csvr_jax.data import augment
from csvr_jax.data import records
from csvr_jax.data import sampling


def pretrain_draws(record, video_index, c, rng):
  """The random draws of one pretraining sample -> (fields, jpegs, views), nothing decoded yet.

  fields: the batch contract's fields except the pixels ('iframe_mask', poses, 'video_index', 'label',
  'looped'). jpegs: {frame index: JPEG bytes} of the frames the views use. views: for augment.render_views,
  the window's T + T' frames (one box and flip), then the valid I-frames (own box and flip each).
  """
  n, t = int(record['num_frames']), c.clip_len
  window = sampling.sample_window(n, t + c.future_len, c.stride, c.short_video_policy, rng)
  clip_w, _ = sampling.split_clip_future(window, t)
  iframe_idx, iframe_mask = sampling.select_iframes(record['keyframe_indices'], clip_w.frames, c.iframe_margin,
                                                    c.max_iframes, rng)
  jpegs = record['frames']
  hw = augment.jpeg_size(jpegs[int(window.frames[0])])
  box = augment.random_crop_box(*hw, c.crop_scale, c.crop_ratio, rng)
  flip = bool(rng.random() < c.flip_prob)
  num_iframes = int(iframe_mask.sum())  # valid slots come first
  iframe_boxes = [augment.random_crop_box(*hw, c.crop_scale, c.crop_ratio, rng) for _ in range(num_iframes)]
  iframe_flips = (rng.random(num_iframes) < c.flip_prob).tolist()
  # Clip and future clip share the box and flip: one pose transform of the whole window; each I-frame has its
  # own box and flip. All views in one pass, so a frame in both the window and the I-frames is decoded once.
  views = ([(i, box, flip) for i in window.frames.tolist()]
           + list(zip(iframe_idx[:num_iframes].tolist(), iframe_boxes, iframe_flips)))
  # Only the ~35 JPEGs the views use travel on to the batch step (~0.2 MB of a ~1 MB record): the parsed record
  # is freed here instead of a batch's worth of them staying alive until rendering.
  jpegs = {i: jpegs[i] for i, _, _ in views}
  pose_xy, pose_conf = augment.transform_poses(*sampling.pose_window(record['poses'], window), box, hw, flip)
  fields = {
      'iframe_mask': iframe_mask,
      'pose_in': pose_xy[:t], 'pose_in_conf': pose_conf[:t],
      'pose_gt': pose_xy[t:], 'pose_gt_conf': pose_conf[t:],
      'video_index': np.int32(video_index),
      'label': np.int32(record['label']),
      'looped': np.bool_(window.looped),
  }
  return fields, jpegs, views


def render_pretrain(jpegs, views, size, clip, future_clip, iframes):
  """Renders `views` into clip (T, S, S, 3), future_clip (T', S, S, 3) and iframes (M, S, S, 3) uint8 arrays
  (C-contiguous, e.g. rows of batch arrays); I-frame slots without a view are zeroed."""
  num_iframes = len(views) - len(clip) - len(future_clip)
  augment.render_views(jpegs, views, size, out=[clip, future_clip, iframes[:num_iframes]])
  iframes[num_iframes:] = 0


def pretrain_sample(record, video_index, c, rng):
  """One pretraining sample (the per-row fields of the pretrain batch contract) from a video record.

  The pretrain loader makes the same draws and renders them straight into its batch (`_PretrainBatch`).
  """
  fields, jpegs, views = pretrain_draws(record, video_index, c, rng)
  t, tf, m, s = c.clip_len, c.future_len, c.max_iframes, c.crop_size
  pixels = np.empty((t + tf + m, s, s, 3), np.uint8)
  sample = {'clip': pixels[:t], 'future_clip': pixels[t:t + tf], 'iframes': pixels[t + tf:]}
  render_pretrain(jpegs, views, s, **sample)
  sample.update(fields)
  return sample


def _clip_views(jpegs, frames, box, size, flip):
  """One box and flip for all frames of a clip -> (T, size, size, 3) uint8."""
  return augment.render_views(jpegs, [(i, box, flip) for i in frames.tolist()], size)


def _clip_poses(record, window, box, hw, flip):
  """'pose_in' (T, N, 2), 'pose_in_conf' (T, N) of a clip's frames, through the clip's box and flip (the
  pretraining sample's transform; no random draw)."""
  xy, conf = augment.transform_poses(*sampling.pose_window(record['poses'], window), box, hw, flip)
  return {'pose_in': xy, 'pose_in_conf': conf}


def finetune_sample(record, c, rng):
  """A random clip (random resized crop + flip), its poses (same box and flip) and its label."""
  window = sampling.sample_window(int(record['num_frames']), c.clip_len, c.stride, c.short_video_policy, rng)
  jpegs = record['frames']
  hw = augment.jpeg_size(jpegs[int(window.frames[0])])
  box = augment.random_crop_box(*hw, c.crop_scale, c.crop_ratio, rng)
  flip = bool(rng.random() < c.flip_prob)
  return {'clip': _clip_views(jpegs, window.frames, box, c.crop_size, flip),
          **_clip_poses(record, window, box, hw, flip), 'label': np.int32(record['label'])}


def eval_sample(record, video_index, clip_index, c):
  """Clip `clip_index` of `num_eval_clips` uniformly spaced clips, centre crop (deterministic), its poses."""
  windows = sampling.eval_windows(int(record['num_frames']), c.clip_len, c.stride, c.num_eval_clips,
                                  c.short_video_policy)
  jpegs = record['frames']
  window = windows[clip_index]
  hw = augment.jpeg_size(jpegs[int(window.frames[0])])
  box = augment.center_crop_box(*hw, c.short_side, c.crop_size)
  return {'clip': _clip_views(jpegs, window.frames, box, c.crop_size, False),
          **_clip_poses(record, window, box, hw, False), 'label': np.int32(record['label']),
          'video_index': np.int32(video_index), 'clip_index': np.int32(clip_index), 'valid': np.bool_(True)}


def eval_padding(c):
  """A padding row of the evaluation batch (valid=False)."""
  t, s, n = c.clip_len, c.crop_size, records.NUM_JOINTS
  return {'clip': np.zeros((t, s, s, 3), np.uint8), 'pose_in': np.zeros((t, n, 2), np.float32),
          'pose_in_conf': np.zeros((t, n), np.float32), 'label': np.int32(-1), 'video_index': np.int32(-1),
          'clip_index': np.int32(-1), 'valid': np.bool_(False)}


# ------------------------------------------------------------------------------------------ grain sources
