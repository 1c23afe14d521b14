"""Tiny generated media shared by the data_prep tests (no binary fixtures in the repository)."""
import fractions
import os

import av
import numpy as np

from data_prep import video_io


def moving_frames(num_frames, height=32, width=48, seed=0):
  """(F, H, W, 3) uint8: a textured background with a bright square moving across it."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 255, (height, width, 3), np.uint8)
  frames = np.repeat(base[None], num_frames, axis=0)
  for t in range(num_frames):
    x = (2 * t) % (width - 8)
    frames[t, 8:16, x:x + 8] = 255
  return frames


def write_video(path, num_frames=20, codec='libx264', gop=5, height=32, width=48, seed=0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = video_io.encode_video(moving_frames(num_frames, height, width, seed), 25, codec=codec, gop=gop)
  with open(path, 'wb') as f:
    f.write(data)
  return path


def write_audio_only(path):
  """An mp4 with an AAC audio stream and no video stream."""
  with av.open(path, mode='w') as container:
    stream = container.add_stream('aac', rate=16000)
    stream.layout = 'mono'
    samples = np.zeros((1, 1024), np.float32)
    for i in range(8):
      frame = av.AudioFrame.from_ndarray(samples, format='fltp', layout='mono')
      frame.sample_rate, frame.pts, frame.time_base = 16000, i * 1024, fractions.Fraction(1, 16000)
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def realformats_dir():
  """The folder of real annotation and pose files written by other projects: $REALFORMATS_DIR, by default
  `<repo>/../shared/realformats` (CI clones the repository next to shared/). Skips the test when it is absent."""
  import pytest  # pylint: disable=g-import-not-at-top - only the tests that read real files need it
  path = os.environ.get('REALFORMATS_DIR') or os.path.join(REPO, '..', 'shared', 'realformats')
  if not os.path.isdir(path):
    pytest.skip(f'no real-format files at {path} (set REALFORMATS_DIR to the shared/realformats folder)')
  return os.path.abspath(path)


def write_webm(path, num_frames=8, height=32, width=48, seed=0):
  """A VP9 WebM (the Something-Something v2 format)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, mode='w', format='webm') as container:
    stream = container.add_stream('libvpx-vp9', rate=12)
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    for image in moving_frames(num_frames, height, width, seed):
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def ucf_tree(root, bad=True):
  """Two classes of tiny videos; with bad=True also corrupt entries and a malformed pose file."""
  videos, ann, pose_dir = root / 'videos', root / 'lists', root / 'poses'
  ann.mkdir(parents=True)
  train, test = [], []
  for c, cls in enumerate(('Alpha', 'Beta')):
    for g in range(3):
      rel = f'{cls}/v_{cls}_g{g:02d}_c01.avi'
      write_video(str(videos / rel), num_frames=8 + 2 * g + c, gop=3 + g, seed=10 * c + g)
      (test if g == 0 else train).append((rel, c))
  if bad:
    (videos / 'Alpha').joinpath('v_Alpha_g10_c01.avi').write_text('not a video')
    (videos / 'Alpha').joinpath('v_Alpha_g11_c01.avi').write_bytes(b'')
    good = (videos / 'Beta' / 'v_Beta_g01_c01.avi').read_bytes()
    (videos / 'Beta').joinpath('v_Beta_g12_c01.avi').write_bytes(good[:len(good) // 3])
    write_audio_only(str(videos / 'Beta' / 'v_Beta_g13_c01.avi'))
    write_video(str(videos / 'Beta' / 'v_Beta_g14_c01.avi'), num_frames=1)
    train += [('Alpha/v_Alpha_g10_c01.avi', 0), ('Alpha/v_Alpha_g11_c01.avi', 0), ('Beta/v_Beta_g12_c01.avi', 1),
              ('Beta/v_Beta_g13_c01.avi', 1), ('Beta/v_Beta_g14_c01.avi', 1), ('Alpha/v_Alpha_g15_c01.avi', 0)]
    bad_pose = pose_dir / 'Alpha' / 'v_Alpha_g02_c01'
    bad_pose.mkdir(parents=True)
    (bad_pose / 'v_Alpha_g02_c01_000000000000_keypoints.json').write_text('{"people": [{"pose_')
  pose_dir.mkdir(exist_ok=True)
  (ann / 'classInd.txt').write_text('1 Alpha\n2 Beta\n')
  (ann / 'trainlist01.txt').write_text(''.join(f'{rel} {c + 1}\n' for rel, c in train))
  (ann / 'testlist01.txt').write_text(''.join(f'{rel}\n' for rel, _ in test))
  return ['--layout=ucf101', f'--videos_dir={videos}', f'--annotations={ann}', f'--poses=openpose:{pose_dir}']


def write_faststart_mp4(path, num_frames=40, gop=8, height=32, width=48):
  """An H.264 mp4 with its index (moov) before the data, as web videos are: cut short, it still opens."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, mode='w', format='mp4', options={'movflags': 'faststart'}) as container:
    stream = container.add_stream('libx264', rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    stream.codec_context.gop_size = gop
    for image in moving_frames(num_frames, height, width):
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path
