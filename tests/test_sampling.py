"""Temporal sampling: windows, strides, future clip, I-frames, short videos, determinism."""
import numpy as np
import pytest

from csvr_jax.data import sampling


@pytest.mark.parametrize('num_frames', [125, 126, 300])
def test_window_in_range_strided_and_future_follows(num_frames):
  rng = np.random.default_rng(0)
  for _ in range(50):
    w = sampling.sample_window(num_frames, 32, 4, 'loop', rng)
    assert not w.looped and w.valid.all()
    assert w.frames.min() >= 0 and w.frames.max() < num_frames
    np.testing.assert_array_equal(np.diff(w.frames), 4)
    clip, future = sampling.split_clip_future(w, 16)
    assert clip.frames.shape == (16,) and future.frames.shape == (16,)
    assert future.frames[0] == clip.frames[-1] + 4  # the future clip starts one stride after the clip


def test_window_starts_cover_the_video():
  rng = np.random.default_rng(1)
  starts = {int(sampling.sample_window(130, 32, 4, 'loop', rng).frames[0]) for _ in range(400)}
  assert starts == set(range(130 - 125 + 1))


def test_short_video_loop_and_pad():
  rng = np.random.default_rng(0)
  loop = sampling.sample_window(50, 32, 4, 'loop', rng)
  assert loop.looped and loop.valid.all()
  assert loop.frames.max() < 50
  np.testing.assert_array_equal((loop.frames[0] + 4 * np.arange(32)) % 50, loop.frames)
  pad = sampling.sample_window(50, 32, 4, 'pad', rng)
  assert pad.looped
  np.testing.assert_array_equal(pad.frames[:13], 4 * np.arange(13))
  assert (pad.frames[13:] == 49).all()
  np.testing.assert_array_equal(pad.valid, np.arange(32) < 13)
  with pytest.raises(ValueError, match='short_video_policy'):
    sampling.sample_window(50, 32, 4, 'stretch', rng)


def test_determinism_under_seed():
  a = [sampling.sample_window(400, 32, 4, 'loop', np.random.default_rng(7)).frames for _ in range(3)]
  np.testing.assert_array_equal(a[0], a[1])
  b = sampling.sample_window(400, 32, 4, 'loop', np.random.default_rng(8)).frames
  assert not np.array_equal(a[0], b)


def test_iframes_in_widened_window_with_mask():
  rng = np.random.default_rng(0)
  clip = 20 + 4 * np.arange(16)  # frames 20 .. 80, widened by 5: 15 .. 85
  keys = [0, 14, 16, 30, 60, 85, 86, 120]
  idx, mask = sampling.select_iframes(keys, clip, 5, 6, rng)
  np.testing.assert_array_equal(mask, [True] * 4 + [False] * 2)
  np.testing.assert_array_equal(idx[:4], [16, 30, 60, 85])
  assert idx.dtype == np.int32 and idx.shape == (6,)


def test_iframes_subset_when_too_many_and_nearest_when_none():
  rng = np.random.default_rng(0)
  clip = 4 * np.arange(16)
  keys = np.arange(0, 70, 2)
  idx, mask = sampling.select_iframes(keys, clip, 5, 4, rng)
  assert mask.all() and len(set(idx.tolist())) == 4
  assert (np.diff(idx) > 0).all() and set(idx.tolist()) <= set(keys.tolist())
  idx, mask = sampling.select_iframes([0, 250], 100 + 4 * np.arange(16), 5, 4, rng)
  np.testing.assert_array_equal(mask, [True, False, False, False])
  assert idx[0] == 250  # nearest to the clip centre (130)
  idx, mask = sampling.select_iframes([], 100 + 4 * np.arange(16), 5, 4, rng)
  assert idx[0] == 100 and mask.sum() == 1


def test_eval_windows_uniform_and_deterministic():
  ws = sampling.eval_windows(300, 16, 4, 10, 'loop')
  starts = [int(w.frames[0]) for w in ws]
  assert starts[0] == 0 and starts[-1] == 300 - 61
  assert all(np.diff(starts) > 0)
  assert all(w.frames.max() < 300 and not w.looped for w in ws)
  again = sampling.eval_windows(300, 16, 4, 10, 'loop')
  assert all(np.array_equal(a.frames, b.frames) for a, b in zip(ws, again))
  short = sampling.eval_windows(20, 16, 4, 10, 'pad')
  assert all(w.looped and w.frames.max() == 19 for w in short)


def test_pose_window_masks_invalid_positions():
  poses = np.zeros((50, 18, 3), np.float16)
  poses[:, :, 0] = np.arange(50)[:, None] / 50
  poses[:, :, 2] = 1
  w = sampling.sample_window(50, 32, 4, 'pad', np.random.default_rng(0))
  xy, conf = sampling.pose_window(poses, w)
  assert xy.shape == (32, 18, 2) and conf.shape == (32, 18) and xy.dtype == np.float32
  np.testing.assert_array_equal(conf[:, 0], w.valid.astype(np.float32))
  np.testing.assert_allclose(xy[:13, 0, 0], 4 * np.arange(13) / 50, atol=1e-3)
