"""keyframe_indices on known GOPs (libx264, mpeg4), prepare_video resizing / re-encoding, bad files."""
import numpy as np
import pytest
import simplejpeg

from data_prep import video_io
import data_prep_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)


@pytest.mark.parametrize('codec', ['libx264', 'mpeg4'])
@pytest.mark.parametrize('gop', [4, 7])
def test_keyframe_indices_known_gop(tmp_path, codec, gop):
  path = fx.write_video(str(tmp_path / f'v_{codec}.mp4'), num_frames=22, codec=codec, gop=gop)
  assert video_io.keyframe_indices(path) == list(range(0, 22, gop))


def test_prepare_video_resizes_and_keeps_keyframes(tmp_path):
  path = fx.write_video(str(tmp_path / 'v.mp4'), num_frames=12, gop=5, height=32, width=48)
  video = video_io.prepare_video(path, short_side=64, jpeg_quality=80)
  assert video['num_frames'] == 12 and len(video['frames']) == 12
  assert video['keyframe_indices'] == [0, 5, 10] and video['gop'] == 0
  assert (video['width'], video['height']) == (48, 32) and video['fps'] == 25.0
  assert simplejpeg.decode_jpeg(video['frames'][3]).shape == (64, 96, 3)


def test_reencode_sets_fixed_gop(tmp_path):
  path = fx.write_video(str(tmp_path / 'v.mp4'), num_frames=15, gop=100)
  assert video_io.keyframe_indices(path) == [0]
  video = video_io.prepare_video(path, short_side=32, reencode_gop=4)
  assert video['keyframe_indices'] == [0, 4, 8, 12] and video['gop'] == 4 and video['num_frames'] == 15
  # The re-encoded frames stay close to the original ones (mpeg4 at quantiser 3).
  original = video_io.yuv_to_rgb(video_io.decode_video(path, 32)['frames']).astype(float)
  again = np.stack([simplejpeg.decode_jpeg(f) for f in video['frames']]).astype(float)
  assert np.abs(original - again).mean() < 12


def test_bad_files_raise_video_error(tmp_path):
  text = tmp_path / 'notes.mp4'
  text.write_text('this is not a video')
  truncated = tmp_path / 'trunc.mp4'
  good = open(fx.write_video(str(tmp_path / 'good.mp4'), num_frames=10), 'rb').read()
  truncated.write_bytes(good[:len(good) // 3])
  audio = fx.write_audio_only(str(tmp_path / 'audio.mp4'))
  one = fx.write_video(str(tmp_path / 'one.mp4'), num_frames=1)
  for path, reason in ((text, 'cannot decode'), (truncated, 'cannot decode'), (audio, 'no video stream'),
                       (one, '1 frame')):
    with pytest.raises(video_io.VideoError, match=reason):
      video_io.prepare_video(str(path), short_side=32)


def test_scaled_size_even_and_short_side():
  assert video_io.scaled_size(320, 240, 128) == (170, 128)
  assert video_io.scaled_size(240, 320, 128) == (128, 170)
  assert video_io.scaled_size(33, 33, 31) == (32, 32)  # rounded to even
