"""The finetune and evaluation loaders carry the clip's poses: same draws as before, poses follow crop and flip."""
import ml_collections
import numpy as np
import pytest
import simplejpeg

from configs import base
from csvr_jax.data import augment
from csvr_jax.data import pipeline
from csvr_jax.data import records
from csvr_jax.data import sampling
from csvr_jax.data import samples

H, W = 60, 80
MARKED, MIRROR = 2, 5  # r_shoulder carries the red marker; l_shoulder is its mirror image (left/right swap)


def _config():
  c = ml_collections.ConfigDict(base.get_config().data.to_dict())
  c.update(clip_len=4, stride=2, crop_size=32, short_side=60, num_eval_clips=3, num_workers=0,
           crop_scale=(0.5, 1.0))
  return c


def _marked_record(i, num_frames=20):
  """A black video with a red 6x6 block at joint MARKED's position (random per frame); other joints absent."""
  rng = np.random.default_rng(100 + i)
  poses = np.zeros((num_frames, records.NUM_JOINTS, 3), np.float16)
  frames = []
  for t in range(num_frames):
    px, py = int(rng.integers(12, W - 12)), int(rng.integers(12, H - 12))
    img = np.zeros((H, W, 3), np.uint8)
    img[py - 3:py + 3, px - 3:px + 3, 0] = 255
    frames.append(simplejpeg.encode_jpeg(img, quality=95))
    poses[t, MARKED] = (px / W, py / H, 0.9)  # the block's centre, as a fraction of the frame
  return dict(video_id=f'm{i}', label=i % 2, num_frames=num_frames, fps=25.0, frames=np.array(frames, object),
              keyframe_indices=np.arange(0, num_frames, 5, dtype=np.int32), poses=poses, pose_source='test', gop=5)


def _red_centroid(image):
  """(x, y) as fractions of the image of the red block, or None when it is not in the view."""
  red = np.where(image[..., 0] > 60, image[..., 0].astype(np.float64), 0.0)
  if red.sum() < 255 * 4:
    return None
  ys, xs = np.mgrid[:image.shape[0], :image.shape[1]] + 0.5  # pixel centres
  return np.array([(red * xs).sum(), (red * ys).sum()]) / red.sum() / np.array([image.shape[1], image.shape[0]])


def _check_poses_follow_pixels(clip, pose_in, conf):
  """Per frame: the marker is where the poses say (the mirror joint after a flip); returns the flips seen."""
  flipped = bool(conf[:, MIRROR].any())
  joint, other = (MIRROR, MARKED) if flipped else (MARKED, MIRROR)
  assert not conf[:, other].any()
  assert not np.delete(conf, [MARKED, MIRROR], axis=1).any()
  for t in range(len(clip)):
    seen = _red_centroid(clip[t])
    if conf[t, joint] == 0:  # the crop left the joint out
      assert seen is None or np.min(np.minimum(seen, 1 - seen)) < 0.1  # at most a sliver at the edge
      continue
    np.testing.assert_allclose(seen, pose_in[t, joint], atol=0.04, err_msg=f'frame {t}, flipped={flipped}')
  return flipped


def test_finetune_batches_poses_follow_the_crop_and_flip():
  c = _config()
  recs = [_marked_record(i) for i in range(8)]
  flips = []
  for seed in (0, 1):
    for batch in pipeline.finetune_loader(c, recs, 'train', 4, seed=seed, shard_index=0, shard_count=1,
                                          num_epochs=1):
      assert batch['pose_in'].shape == (4, 4, 18, 2) and batch['pose_in'].dtype == np.float32
      assert batch['pose_in_conf'].shape == (4, 4, 18) and batch['pose_in_conf'].dtype == np.float32
      flips += [_check_poses_follow_pixels(*row) for row in zip(batch['clip'], batch['pose_in'],
                                                                  batch['pose_in_conf'])]
  assert len(flips) == 16 and 0 < sum(flips) < 16  # both cases were checked


def test_eval_batches_poses_follow_the_centre_crop():
  c = _config()
  recs = [_marked_record(i, num_frames=12 + 5 * i) for i in range(3)]
  rows = 0
  for batch in pipeline.eval_loader(c, recs, 'test', 4, shard_index=0, shard_count=1):
    valid = batch['valid']
    assert not batch['pose_in'][~valid].any() and not batch['pose_in_conf'][~valid].any()  # padding rows
    for clip, pose_in, conf in zip(batch['clip'][valid], batch['pose_in'][valid], batch['pose_in_conf'][valid]):
      assert not _check_poses_follow_pixels(clip, pose_in, conf)  # never flipped
      rows += 1
  assert rows == 3 * c.num_eval_clips


# The sampling functions as they were before the poses were added: the clips, labels and random draws must not
# change (for the same seed, a finetune run sees bitwise the same clips).
def _finetune_sample_before(record, c, rng):
  window = sampling.sample_window(int(record['num_frames']), c.clip_len, c.stride, c.short_video_policy, rng)
  jpegs = record['frames']
  hw = augment.jpeg_size(jpegs[int(window.frames[0])])
  box = augment.random_crop_box(*hw, c.crop_scale, c.crop_ratio, rng)
  flip = bool(rng.random() < c.flip_prob)
  clip = augment.render_views(jpegs, [(i, box, flip) for i in window.frames.tolist()], c.crop_size)
  return {'clip': clip, 'label': np.int32(record['label'])}


def _eval_sample_before(record, video_index, clip_index, c):
  windows = sampling.eval_windows(int(record['num_frames']), c.clip_len, c.stride, c.num_eval_clips,
                                  c.short_video_policy)
  jpegs = record['frames']
  frames = windows[clip_index].frames
  hw = augment.jpeg_size(jpegs[int(frames[0])])
  box = augment.center_crop_box(*hw, c.short_side, c.crop_size)
  clip = augment.render_views(jpegs, [(i, box, False) for i in frames.tolist()], c.crop_size)
  return {'clip': clip, 'label': np.int32(record['label']), 'video_index': np.int32(video_index),
          'clip_index': np.int32(clip_index), 'valid': np.bool_(True)}


@pytest.mark.parametrize('policy', ['loop', 'pad'])
def test_clips_labels_and_draws_unchanged(policy):
  c = _config()
  c.short_video_policy = policy
  for i, num_frames in enumerate((5, 9, 20, 31)):
    record = _marked_record(i, num_frames)
    for seed in range(4):
      new_rng, old_rng = np.random.default_rng(seed), np.random.default_rng(seed)
      new, old = samples.finetune_sample(record, c, new_rng), _finetune_sample_before(record, c, old_rng)
      assert set(new) == set(old) | {'pose_in', 'pose_in_conf'}
      for k in old:
        np.testing.assert_array_equal(new[k], old[k], err_msg=k)
        assert new[k].dtype == old[k].dtype
      assert new_rng.random() == old_rng.random()  # the generator is where it was: the next draws are too
    for clip_index in range(c.num_eval_clips):
      new, old = samples.eval_sample(record, i, clip_index, c), _eval_sample_before(record, i, clip_index, c)
      for k in old:
        np.testing.assert_array_equal(new[k], old[k], err_msg=k)
      if policy == 'pad' and num_frames < sampling.window_span(c.clip_len, c.stride):
        assert not new['pose_in_conf'][-1].any()  # padded positions have no pose
  padding = samples.eval_padding(c)
  assert padding['pose_in'].shape == (4, 18, 2) and padding['pose_in_conf'].shape == (4, 18)
