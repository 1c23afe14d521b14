"""Key-frame statistics: the clips enumerated are the ones the sampler draws, the window is select_iframes'."""
import numpy as np
import pytest

from csvr_jax.data import sampling
from data_prep import keyframe_stats as ks


@pytest.mark.parametrize('num_frames,policy', [(40, 'loop'), (40, 'pad'), (11, 'loop'), (11, 'pad'), (15, 'loop')])
def test_enumerated_clips_are_the_sampler_s(num_frames, policy):
  g = ks.ClipGeometry(clip_len=4, future_len=4, stride=2, iframe_margin=1, short_video_policy=policy)
  rng = np.random.default_rng(0)
  drawn = set()
  for _ in range(3000):
    window = sampling.sample_window(num_frames, g.clip_len + g.future_len, g.stride, policy, rng)
    clip, _ = sampling.split_clip_future(window, g.clip_len)
    drawn.add(tuple(clip.frames.tolist()))
  enumerated = [tuple(row) for row in ks.clip_frames_per_start(num_frames, g).tolist()]
  assert len(set(enumerated)) == len(enumerated) and set(enumerated) == drawn


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_clips_with_keyframe_match_select_iframes(seed):
  rng = np.random.default_rng(seed)
  g = ks.ClipGeometry(clip_len=5, future_len=3, stride=3, iframe_margin=2)
  for num_frames in (9, 30, 97):
    keys = sorted(set(rng.integers(0, num_frames, rng.integers(1, 6)).tolist()))
    with_key = 0
    rows = ks.clip_frames_per_start(num_frames, g)
    for clip in rows:
      chosen, mask = sampling.select_iframes(keys, clip, g.iframe_margin, len(keys) + 1, rng)
      lo, hi = clip.min() - g.iframe_margin, clip.max() + g.iframe_margin  # the definition, written out
      with_key += any(lo <= k <= hi for k in chosen[mask])  # select_iframes' fallback lies outside
    assert ks.clips_with_keyframe(keys, num_frames, g) == (with_key, len(rows))


def test_stats_mean_gop_and_fraction_averaged_over_videos():
  g = ks.ClipGeometry()  # the paper's clip: 16 + 16 frames at stride 4 (a 125-frame window), margin 5
  stats = ks.KeyframeStats(g)
  stats.add('train', list(range(0, 300, 12)), 300)  # CoViAR: every clip has key frames
  stats.add('train', [0, 250], 300)  # x264's 250-frame GOP: starts 0..5 of 0..175 reach frame 0
  stats.add('train', [0], 130)  # one key frame only: starts 0..5, all of them
  stats.add('test', [0], 50)  # shorter than the window: loops over the whole video
  r = stats.result()
  assert r['geometry'] == dict(clip_len=16, future_len=16, stride=4, iframe_margin=5, short_video_policy='loop')
  train = r['splits']['train']
  assert train['videos'] == 3 and train['single_keyframe_videos'] == 1
  assert train['mean_gop'] == pytest.approx((24 * 12 + 250) / 25)
  assert train['clip_fraction'] == pytest.approx((1 + 6 / 176 + 1) / 3)
  assert r['splits']['test'] == dict(videos=1, mean_gop=None, single_keyframe_videos=1, clip_fraction=1.0)
  line = ks.format_stats(r)
  assert 'mean GOP 21.5 frames' in line and '67.8% of clips' in line and '1 of 3 videos' in line
  with pytest.raises(ValueError, match='short_video_policy'):
    ks.KeyframeStats(ks.ClipGeometry(short_video_policy='wrap'))
