"""Shared pieces of the pretraining tests (also imported by their subprocess drivers)."""
import os

import jax
import numpy as np
import simplejpeg

from configs import base
from csvr_jax.data import records
from csvr_jax.train import schedule
import fast_init as fast_init_lib  # tests/ is on sys.path (pytest, and the drivers' own folder)

H, W = 40, 48


def tiny_config(dataset_dir=''):
  """A full CSVR config at toy sizes: 4-frame 32x32 clips, width 1/16, every branch a few channels wide."""
  c = base.get_config()
  c.model.width = 0.0625
  c.model.embed_dim, c.model.head_hidden = 8, 16
  c.model.pose_channels, c.model.pose_noise_dim = 4, 4
  c.model.video_g_channels, c.model.video_d_channels, c.model.video_noise_dim = 4, 2, 4
  c.model.video_gan = 'dense'  # the engine tests' video branch (tests/test_tgan2.py covers 'tgan2')
  # The CPU configs' convolutions (configs/demo.py): XLA:CPU runs this joint step ~3x faster than with base's
  # 'fold' (0.6 vs 2.6 s on the CI machine), for the same parameters (tests/test_backbones.py checks the impls).
  c.model.conv_impl = 'fold_taps'
  c.data.update(dataset_dir=dataset_dir, clip_len=4, future_len=4, stride=1, crop_size=32, short_side=40,
                max_iframes=2, iframe_margin=1, num_workers=0, blur_sigma=(0.1, 0.5))
  c.train.batch_size = 8
  c.train.total_steps = 4
  c.train.stages = schedule.paper_stages(branch_steps=0, joint_steps=-1)  # joint only: one compile
  c.train.fast_compile = True
  c.logging.progress_bar = False
  c.logging.log_every_steps = 1
  c.logging.image_every_steps = 2
  c.checkpoint.every_steps = 2
  return c


def two_stage(c):
  """pose + context for 2 steps, then everything jointly: two compiles, one per stage."""
  c.train.stages = (schedule.stage('branches', 2, ['pose', 'context'], ['vnet', 'inet', 'heads', 'pose_g', 'pose_d']),
                    schedule.stage('joint', -1, ['pose', 'context', 'video'], list(schedule.ALL_NETWORKS)))
  return c


def fast_init(nets, seed=0):
  """Cheap variables of every network: shapes from jax.eval_shape(nets.init), values from numpy.

  (Compiling flax's random initialisers costs ~1-2 s per parameter shape on the CI CPU; the engine tests need
  finite, fan-in-scaled weights, not flax's exact distributions.) Returns a traceable key -> variables.
  """
  host = fast_init_lib.fill_like(jax.eval_shape(nets.init, jax.random.PRNGKey(0)), seed)
  return lambda key: host


def random_batch(c, seed=0):
  """A host batch of the pretraining contract from numpy random numbers."""
  r = np.random.RandomState(seed)
  b, t, tf, s, m = c.train.batch_size, c.data.clip_len, c.data.future_len, c.data.crop_size, c.data.max_iframes
  return dict(clip=r.randint(0, 255, (b, t, s, s, 3), dtype=np.uint8),
              future_clip=r.randint(0, 255, (b, tf, s, s, 3), dtype=np.uint8),
              iframes=r.randint(0, 255, (b, m, s, s, 3), dtype=np.uint8),
              iframe_mask=np.array([[True, i % 2 == 0] for i in range(b)]),
              pose_in=r.rand(b, t, 18, 2).astype(np.float32),
              pose_in_conf=(r.rand(b, t, 18) > 0.2).astype(np.float32),
              pose_gt=r.rand(b, tf, 18, 2).astype(np.float32),
              pose_gt_conf=(r.rand(b, tf, 18) > 0.2).astype(np.float32))


def _record(i, num_frames, label):
  rng = np.random.default_rng(i)
  frames = []
  for t in range(num_frames):
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = (20 * i) % 256
    img[:, (2 * t) % W:(2 * t) % W + 8, 1] = 200  # a moving bar
    frames.append(simplejpeg.encode_jpeg(img, quality=90))
  poses = rng.uniform(0, 1, (num_frames, records.NUM_JOINTS, 3)).astype(np.float16)
  return dict(video_id=f'v{i}', label=label, num_frames=num_frames, fps=25.0, frames=np.array(frames, object),
              keyframe_indices=np.arange(0, num_frames, 4, dtype=np.int32), poses=poses, pose_source='openpose',
              gop=4)


def write_toy_dataset(out_dir, videos=8):
  """A tiny dataset in the data_prep.build format (TFDS ArrayRecord) -> dataset dir."""
  from data_prep import tfds_writer  # pylint: disable=g-import-not-at-top
  train = [_record(i, 12 + 3 * (i % 3), i % 2) for i in range(videos)]
  test = [_record(50 + i, 12, i % 2) for i in range(2)]
  return tfds_writer.write_dataset(os.fspath(out_dir), 'toy', ['a', 'b'], {'train': train, 'test': test})
