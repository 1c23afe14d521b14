"""The embedded default: tiny CSVR on SynthActions, on CPU, end to end in minutes (--mode=demo).

Variants: `configs/demo.py` (the full demo, ~10 minutes on 2 cores) and `configs/demo.py:quick` (~2 minutes,
for tests and the Colab notebook). Widths, clip length and resolution are scaled down from the paper's recipe;
the pipeline, losses, schedule shape (branches separately, then jointly) and evaluation protocol are the same.
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
  c.train.batch_size = 8
  c.train.fast_compile = True
  c.data.clip_len = 8
  c.data.future_len = 8
  c.data.stride = 2
  c.data.crop_size = 64
  c.data.max_iframes = 2
  c.data.num_workers = 0
  c.eval.batch_size = 16
  c.data.num_eval_clips = 4
  set_schedule(c, branch_steps=20, joint_steps=100)
  c.finetune.num_classes = 10
  c.finetune.batch_size = 8
  c.finetune.total_steps = 100
  c.finetune.lr_per_sample = 0.001
  c.checkpoint.every_steps = 100
  c.logging.log_every_steps = 20
  c.logging.image_every_steps = 100
  c.demo.classes = 10
  c.demo.videos_per_class = 20
  c.demo.frames = 48
  c.demo.size = 96
  if arg == 'quick':
    c.finetune.num_classes = 5
    c.demo.classes = 5
    c.demo.videos_per_class = 8
    set_schedule(c, branch_steps=0, joint_steps=8)
    c.finetune.total_steps = 6
    c.data.num_eval_clips = 2
  return c
