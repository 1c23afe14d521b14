"""The embedded default: tiny CSVR on SynthActions, on CPU, end to end in minutes (--mode=demo).

Variants (cold runs: new data dir and compile cache, 2-core CPU shared with other jobs, 2026-11-26, two demo
processes): `configs/demo.py`, the full demo (6m00s-6m07s); `configs/demo.py:quick` (1m29s; 1m17s with the dataset
cached; for tests and the Colab notebook; joint stage only, 2 steps at batch 4); `configs/demo.py:research` (the README's
research check, 18x the full schedule's steps; 24m30s, sharing the CPU with other jobs). Widths, clip length (4 frames at stride 4) and
resolution (32x32 crops of 40x40 frames) are scaled down from the paper's recipe; the pipeline, losses, schedule
shape (branches separately, then jointly) and evaluation protocol are the same. On CPU, XLA compilation and the
video GANs' full-resolution 3D convolutions dominate the time: a 32x32x4 clip costs ~1/16 of a 64x64x8 one.
"""
from configs import base


def set_schedule(c, branch_steps, joint_steps):
  """The paper's staged schedule (three branch stages, then joint) with an explicit step budget; with
  branch_steps=0 only the joint stage remains (one compile instead of four: the quick variant)."""
  stages = base.paper_stages(branch_steps=branch_steps, joint_steps=joint_steps)
  c.train.stages = tuple(s for s in stages if s.steps != 0)
  c.train.total_steps = 3 * branch_steps + joint_steps


def get_config(arg=None):
  c = base.get_config()
  c.mode = 'demo'
  c.model.vnet = 'r3d_18'
  c.model.width = 0.125
  c.model.embed_dim = 32
  c.model.head_hidden = 64
  c.model.pose_channels = 16
  c.model.pose_noise_dim = 8
  c.model.video_g_channels = 8
  c.model.video_d_channels = 8
  c.model.video_noise_dim = 8
  c.model.video_gan_levels = 3  # 4-frame clips: 4, 2, 1 frames, if run with --config.model.video_gan=tgan2
  c.train.batch_size = 8
  # Optimised XLA code: compiles ~2x slower than config.train.fast_compile but runs ~2.5x (pretraining) to ~4x
  # (finetuning, feature extraction) faster on CPU; measured faster end to end for every variant but quick.
  c.train.fast_compile = False
  c.data.clip_len = 4
  c.data.future_len = 4
  c.data.stride = 4
  c.data.crop_size = 32
  c.data.short_side = 40
  c.data.max_iframes = 2
  c.data.num_workers = 0
  c.eval.batch_size = 16
  c.data.num_eval_clips = 4
  set_schedule(c, branch_steps=10, joint_steps=30)
  c.finetune.num_classes = 10
  c.finetune.batch_size = 8
  c.finetune.total_steps = 30
  c.finetune.lr_per_sample = 0.001
  c.checkpoint.every_steps = 50
  c.logging.log_every_steps = 10
  c.logging.image_every_steps = 50
  c.demo.classes = 10
  c.demo.videos_per_class = 20
  c.demo.frames = 48
  c.demo.size = 40
  if arg == 'quick':
    c.train.fast_compile = True  # a handful of steps: compilation is nearly all of the time
    c.finetune.num_classes = 5
    c.demo.classes = 5
    c.demo.videos_per_class = 8
    set_schedule(c, branch_steps=0, joint_steps=2)
    c.train.batch_size = 4  # the steps run unoptimised code (fast_compile): half the batch, half the step time
    c.finetune.batch_size = 4
    c.finetune.total_steps = 2
    c.data.num_eval_clips = 2
  elif arg == 'research':
    # The research check (README): the full demo's shapes and data with an 18x longer schedule (1,080 steps,
    # ~58 epochs of the 150 training videos): the shortest of the measured schedules (60, 210, 540, 1,080 steps)
    # at which CSVR's linear probe is 20 points above random init (seed 0).
    set_schedule(c, branch_steps=120, joint_steps=720)
    c.finetune.total_steps = 60
    c.checkpoint.every_steps = 100
  elif arg is not None:
    raise ValueError(f'configs/demo.py:{arg}: unknown variant; choose quick | research (or none)')
  return c
