"""The embedded default: tiny CSVR on SynthActions, on CPU, end to end in minutes (--mode=demo).

Variants: `configs/demo.py` (the full demo), `:quick` (joint stage only, 2 steps at batch 4, V-Network features
only: the pipeline check of the tests and the Colab notebook). The research evidence comes from the study
(configs/study.py, docs/study.md). Widths, clip length (4 frames at stride 4) and resolution (32x32 crops of 40x40 frames) are
scaled down from the paper's recipe; the pipeline, losses, schedule shape (branches separately, then jointly)
and evaluation protocol are the paper's. Timings: docs/performance.md ("The CPU demo, the study and the tests").
"""
from configs import base
from csvr_jax import config_variants
from csvr_jax.train import schedule


def set_schedule(c, branch_steps, joint_steps):
  """The paper's staged schedule (three branch stages, then joint) with an explicit step budget; with
  branch_steps=0 only the joint stage runs (one compile instead of four: the quick variant)."""
  c.train.stages = schedule.paper_stages(branch_steps=branch_steps, joint_steps=joint_steps)
  c.train.total_steps = 3 * branch_steps + joint_steps


def get_config(arg=None):
  variants = config_variants.parse(arg, 'configs/demo.py', ('quick',))
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
  c.model.video_gan_levels = 3  # 4-frame clips: levels of 4, 2, 1 frames
  # XLA:CPU's native 3D convolutions are slow: every conv with temporal taps runs as 2D convs over them
  # (docs/design.md; 3.5-5.4x faster study steps, docs/performance.md).
  c.model.conv_impl = 'fold_taps'
  c.train.batch_size = 8
  c.train.fast_compile = False  # optimised XLA code: slower compiles, faster steps (docs/performance.md)
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
  if 'quick' in variants:
    c.train.fast_compile = True  # a handful of steps: compilation is nearly all of the time
    c.finetune.num_classes = 5
    c.demo.classes = 5
    c.demo.videos_per_class = 8
    set_schedule(c, branch_steps=0, joint_steps=2)
    c.train.batch_size = 4  # the steps run unoptimised code (fast_compile): half the batch, half the step time
    c.finetune.batch_size = 4
    c.finetune.total_steps = 2
    c.data.num_eval_clips = 2
    c.demo.features = ('vnet',)  # the pipeline check: the V-Network's features only
  return c
