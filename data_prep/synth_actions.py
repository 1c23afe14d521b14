r"""SynthActions: a small embedded action dataset laid out like UCF101.

  python -m data_prep.synth_actions --out_dir=data/synth_raw --classes=10 --videos_per_class=20 \
      --frames=64 --size=112 --seed=0
  python -m data_prep.build --layout=ucf101 --videos_dir=data/synth_raw/videos \
      --annotations=data/synth_raw/ucfTrainTestlist --poses=openpose:data/synth_raw/poses \
      --out_dir=data --name=synth_actions

Each video: one articulated COCO-18 figure (data_prep/synth_figure.py) with its own clothing colours, size,
position, facing, speed and phase performs its class's motion over a textured scene. The scene type equals the
class's own scene with probability `--context` and is drawn at random otherwise, so the background carries
partial class signal (as context does in real action data) and motion is needed for the rest. Written as H.264
mp4 (real codec I-frames, `--gop`), ground-truth poses as OpenPose JSON in pixels (Gaussian noise, dropped
joints, missed frames, occasional faint distractor detections), and ucfTrainTestlist split files.
"""
import functools
import json
import os
import shutil
import sys
import time

from absl import app
from absl import flags
import av
import numpy as np
from PIL import Image

from data_prep import synth_figure

FLAGS = flags.FLAGS


def define_flags():
  """Command-line flags, defined only when run as a program (the module is also a library)."""
  flags.DEFINE_string('out_dir', None, 'Output folder (videos/, poses/, ucfTrainTestlist/).')
  flags.DEFINE_integer('classes', 10, f'Number of classes (at most {len(synth_figure.MOTIONS)}).')
  flags.DEFINE_integer('videos_per_class', 20, 'Videos per class.')
  flags.DEFINE_integer('frames', 64, 'Frames per video.')
  flags.DEFINE_integer('size', 112, 'Frame width and height (even).')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  flags.DEFINE_float('context', 0.5, 'Probability that a video shows its class\'s own scene type.')
  flags.DEFINE_integer('fps', 25, 'Frame rate.')
  flags.DEFINE_integer('gop', 16, 'Largest distance between I-frames (libx264 keyint).')
  flags.DEFINE_integer('test_videos_per_class', None, 'Test videos per class (the last ones of each class, in every '
                       'split); default: a quarter of each class, a different quarter per split (UCF101-like).')


NUM_SCENES = 10
POSE_NOISE = 0.006     # Gaussian noise on pose coordinates, in units of the frame size
JOINT_DROPOUT = 0.05   # probability that a joint is missing (confidence 0)
FRAME_DROPOUT = 0.02   # probability that a frame has no detection at all
DISTRACTOR = 0.05      # probability of an extra faint detection elsewhere (exercises person tracking)


def _palette(rng, hue):
  """Two RGB colours near a hue (0-1) with random value/saturation."""
  def hsv(h, s, v):
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]) * 255
  h = (hue + rng.uniform(-0.05, 0.05)) % 1
  return hsv(h, rng.uniform(0.3, 0.7), rng.uniform(0.55, 0.9)), hsv(h, rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5))


def scene(kind, rng, size):
  """(size, size, 3) uint8 textured background of scene type `kind` in [0, NUM_SCENES)."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
  period = rng.uniform(0.08, 0.2)
  phase = rng.uniform(0, 1)
  patterns = [
      lambda: np.sin(2 * np.pi * (y / period + phase)) > 0,                                  # horizontal stripes
      lambda: np.sin(2 * np.pi * (x / period + phase)) > 0,                                  # vertical stripes
      lambda: (np.floor(x / period) + np.floor(y / period)) % 2 == 0,                        # checkerboard
      lambda: (((x / period + phase) % 1 - 0.5) ** 2 + ((y / period) % 1 - 0.5) ** 2) < 0.08,  # dots
      lambda: np.sin(2 * np.pi * ((x + y) / period + phase)) > 0,                            # diagonal stripes
      lambda: y < 0.55 + 0.1 * phase,                                                         # sky over ground
      lambda: np.sin(9 * x + 7 * phase) * np.cos(7 * y) + np.sin(13 * y * x + phase) > 0.2,  # blobs
      lambda: ((x / period) % 1 < 0.15) | ((y / period) % 1 < 0.15),                        # grid
      lambda: np.sin(2 * np.pi * np.hypot(x - 0.5, y - phase) / period) > 0,                 # rings
      lambda: np.sin(2 * np.pi * (y / period + 0.15 * np.sin(2 * np.pi * x / 0.3 + phase))) > 0,  # waves
  ]
  light, dark = _palette(rng, kind / NUM_SCENES)
  mask = patterns[kind]()[..., None]
  image = np.where(mask, light, dark) + rng.normal(0, 6, (size, size, 1))
  return np.clip(image, 0, 255).astype(np.uint8)


def choose_scene(label, context, rng):
  """The class's own scene type with probability `context`, else a uniformly random one (may coincide)."""
  return label % NUM_SCENES if rng.random() < context else int(rng.integers(NUM_SCENES))


def video_params(rng, size, frames, fps):
  """Per-video appearance and motion parameters."""
  height = size * rng.uniform(0.5, 0.7)
  colour = lambda: tuple(int(c) for c in rng.integers(20, 236, 3))
  skin = tuple(int(c) for c in np.array([224, 172, 128]) * rng.uniform(0.45, 1.05))
  return dict(height=height, base_x=size * rng.uniform(0.3, 0.7), ground_y=size * rng.uniform(0.82, 0.95),
              facing=float(rng.choice([-1.0, 1.0])), width_factor=rng.uniform(0.5, 1.0),
              speed=rng.uniform(0.8, 1.25), phase=rng.uniform(0, 2 * np.pi), side=float(rng.choice([-1.0, 1.0])),
              colours=dict(shirt=colour(), pants=colour(), skin=skin, hair=colour()), frames=frames, fps=fps)


def motion_angles(name, params, t):
  """Joint angles of class `name` at time t (s)."""
  motion, cycles = synth_figure.MOTIONS[name]
  if name == 'WaveOneHand':
    motion = functools.partial(motion, hand=params['side'])
  elif name == 'Kick':
    motion = functools.partial(motion, leg=params['side'])
  p = 2 * np.pi * cycles * params['speed'] * t + params['phase']
  return motion(p, params['facing'], t, params['speed'])


def render(name, params, background):
  """-> frames (F, S, S, 3) uint8 and joints (F, 18, 2) in pixels."""
  size = background.shape[0]
  frames, joints = [], []
  travel = name in ('Walk', 'Run')
  for i in range(params['frames']):
    angles = motion_angles(name, params, i / params['fps'])
    base_x = params['base_x']
    if travel:  # walkers start near one side and wrap around the frame
      base_x = (params['base_x'] - params['facing'] * 0.3 * size + angles['dx'] * params['height']) % size
      angles = dict(angles, dx=0.0)
    j = synth_figure.skeleton(angles, params['height'], base_x, params['ground_y'], params['width_factor'],
                              params['facing'])
    image = Image.fromarray(background)
    synth_figure.draw_figure(image, j, params['height'], params['colours'])
    frames.append(np.asarray(image))
    joints.append(j)
  return np.stack(frames), np.stack(joints)


def openpose_frames(joints, size, rng):
  """(F, 18, 2) true pixel joints -> list of OpenPose JSON dicts with noise, dropouts and distractors."""
  out = []
  for j in joints:
    people = []
    if rng.random() >= FRAME_DROPOUT:
      xy = j + rng.normal(0, POSE_NOISE * size, j.shape)
      conf = rng.uniform(0.5, 0.95, 18)
      lost = (rng.random(18) < JOINT_DROPOUT) | np.any((xy < 0) | (xy >= size), axis=1)
      kp = np.concatenate([xy, conf[:, None]], axis=1)
      kp[lost] = 0.0
      people.append(kp)
    if rng.random() < DISTRACTOR:
      kp = np.concatenate([rng.uniform(0, size, (18, 2)), rng.uniform(0.05, 0.2, (18, 1))], axis=1)
      people.insert(int(rng.integers(0, len(people) + 1)), kp)
    out.append({'version': 1.3, 'people': [
        {'person_id': [-1], 'pose_keypoints_2d': np.round(kp.reshape(-1), 3).tolist(),
         'face_keypoints_2d': [], 'hand_left_keypoints_2d': [], 'hand_right_keypoints_2d': []} for kp in people]})
  return out


def write_mp4(path, frames, fps, gop):
  """H.264 (libx264) mp4; I-frames at most `gop` apart (the encoder may place them earlier)."""
  tmp = path + '.tmp.mp4'
  with av.open(tmp, mode='w') as container:
    stream = container.add_stream('libx264', rate=fps)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = 'yuv420p'
    stream.codec_context.gop_size = gop
    stream.codec_context.thread_count = 1
    stream.options = {'preset': 'ultrafast', 'crf': '20'}
    for image in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  os.replace(tmp, path)


def class_names(num_classes):
  names = list(synth_figure.MOTIONS)
  if not 1 <= num_classes <= len(names):
    raise ValueError(f'--classes={num_classes}: choose 1..{len(names)}')
  return names[:num_classes]


def video_name(cls, index):
  return f'{cls}/v_{cls}_g{index + 1:02d}_c01'


def is_test_video(k, split, videos_per_class, test_videos_per_class=None):
  """Whether video k of a class is in the test list of split `split` (1-3): k % 4 == split - 1 (a quarter of
  each class, UCF101-like); with `test_videos_per_class` = n, the last n videos of each class in every split (a
  test set of any size, e.g. several hundred videos for a study's few-point resolution)."""
  if test_videos_per_class is None:
    return k % 4 == split - 1
  return k >= videos_per_class - test_videos_per_class


def generate(out_dir, num_classes=10, videos_per_class=20, frames=64, size=112, seed=0, context=0.5, fps=25,
             gop=16, test_videos_per_class=None):
  """Writes videos/, poses/ and ucfTrainTestlist/ under out_dir; returns the number of videos.

  Split lists: `is_test_video`. Each video is drawn from its own generator ([seed, label, k]), so a different
  `seed` is an independent draw of the same classes (e.g. a validation draw beside a test draw).
  """
  if size % 2 or size < 32:
    raise ValueError(f'--size={size}: want an even size >= 32')
  if frames < 2 or videos_per_class < 1 or not 0 <= context <= 1:
    raise ValueError('want --frames >= 2, --videos_per_class >= 1 and 0 <= --context <= 1')
  if test_videos_per_class is not None and not 1 <= test_videos_per_class < videos_per_class:
    raise ValueError(f'--test_videos_per_class={test_videos_per_class}: want 1..{videos_per_class - 1} (the rest '
                     'of --videos_per_class train)')
  names = class_names(num_classes)
  lists = os.path.join(out_dir, 'ucfTrainTestlist')
  os.makedirs(lists, exist_ok=True)
  for label, cls in enumerate(names):
    os.makedirs(os.path.join(out_dir, 'videos', cls), exist_ok=True)
    for k in range(videos_per_class):
      rng = np.random.default_rng([seed, label, k])  # each video reproducible on its own
      scene_kind = choose_scene(label, context, rng)
      params = video_params(rng, size, frames, fps)
      video, joints = render(cls, params, scene(scene_kind, rng, size))
      name = video_name(cls, k)
      pose_dir = os.path.join(out_dir, 'poses', name)
      os.makedirs(pose_dir, exist_ok=True)
      stem = os.path.basename(name)
      for t, data in enumerate(openpose_frames(joints, size, rng)):
        with open(os.path.join(pose_dir, f'{stem}_{t:012d}_keypoints.json'), 'w') as f:
          f.write(json.dumps(data))  # dumps uses the C encoder, dump does not
      write_mp4(os.path.join(out_dir, 'videos', name + '.mp4'), video, fps, gop)
  with open(os.path.join(lists, 'classInd.txt'), 'w') as f:
    f.writelines(f'{i + 1} {cls}\n' for i, cls in enumerate(names))
  for s in (1, 2, 3):
    with open(os.path.join(lists, f'trainlist{s:02d}.txt'), 'w') as train, \
         open(os.path.join(lists, f'testlist{s:02d}.txt'), 'w') as test:
      for label, cls in enumerate(names):
        for k in range(videos_per_class):
          if is_test_video(k, s, videos_per_class, test_videos_per_class):
            test.write(f'{video_name(cls, k)}.mp4\n')
          else:
            train.write(f'{video_name(cls, k)}.mp4 {label + 1}\n')
  with open(os.path.join(out_dir, 'synth_actions.json'), 'w') as f:
    json.dump(dict(classes=names, videos_per_class=videos_per_class, frames=frames, size=size, seed=seed,
                   context=context, fps=fps, gop=gop, test_videos_per_class=test_videos_per_class), f, indent=1)
  return num_classes * videos_per_class


def generate_and_build(data_dir, num_classes=10, videos_per_class=20, frames=64, size=128, seed=0, context=0.5,
                       workers=1, name='synth_actions', short_side=128, reencode_gop=None, test_videos_per_class=None):
  """SynthActions end to end, for the demo: raw files in <data_dir>/raw, then data_prep.build's ucf101 layout
  with the OpenPose ground truth, frames stored at `short_side`, key frames as the build's default (CoViAR's
  mpeg4 re-encode at GOP 12; reencode_gop=0: the generated H.264's own). Returns the dataset dir
  (<data_dir>/<name>/<version>).

  Idempotent: raw files and dataset made earlier with the same arguments are reused; other arguments
  regenerate both.
  """
  from data_prep import builder  # pylint: disable=g-import-not-at-top - keeps the generator light to import
  raw = os.path.join(data_dir, 'raw')
  if reencode_gop is None:
    reencode_gop = builder.COVIAR_GOP
  wanted = dict(classes=class_names(num_classes), videos_per_class=videos_per_class, frames=frames, size=size,
                seed=seed, context=context, fps=25, gop=16, short_side=short_side, reencode_gop=reencode_gop)
  if test_videos_per_class is not None:  # only when given: datasets built before the option stay valid
    wanted['test_videos_per_class'] = test_videos_per_class
  meta_path = os.path.join(raw, 'synth_actions.json')
  spec = builder.BuildSpec(layout='ucf101', videos_dir=os.path.join(raw, 'videos'),
                           annotations=os.path.join(raw, 'ucfTrainTestlist'),
                           poses='openpose:' + os.path.join(raw, 'poses'), out_dir=data_dir, name=name,
                           short_side=short_side, reencode_gop=reencode_gop)
  have = None
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      have = json.load(f)
  if have != wanted:
    for stale in (raw, os.path.join(data_dir, name), builder.work_dir(spec)):
      shutil.rmtree(stale, ignore_errors=True)
    generate(raw, num_classes, videos_per_class, frames, size, seed, context,
             test_videos_per_class=test_videos_per_class)
    with open(meta_path, 'w') as f:  # generate's record plus the build option: both decide what is reused
      json.dump(wanted, f, indent=1)
  return builder.build(spec, workers=workers)['dataset_dir']


def main(argv):
  del argv
  if not FLAGS.out_dir:
    print('error: --out_dir is required', file=sys.stderr)
    sys.exit(2)
  start = time.time()
  try:
    n = generate(FLAGS.out_dir, FLAGS.classes, FLAGS.videos_per_class, FLAGS.frames, FLAGS.size, FLAGS.seed,
                 FLAGS.context, FLAGS.fps, FLAGS.gop, FLAGS.test_videos_per_class)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(f'wrote {n} videos to {FLAGS.out_dir} in {time.time() - start:.1f} s')


if __name__ == '__main__':
  define_flags()
  app.run(main)
