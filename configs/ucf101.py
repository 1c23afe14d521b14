"""The paper's UCF101 pretraining recipe (split 1 train videos; same optimisation as k400.py).

Variants: `configs/ucf101.py` (the recipe), `configs/ucf101.py:smoke`.
"""
from configs import base
from csvr_jax import config_variants
from csvr_jax.train import schedule


def get_config(arg=None):
  variants = config_variants.parse(arg, 'configs/ucf101.py', ('smoke',))
  c = base.get_config()
  c.data.dataset_dir = 'data/ucf101'
  c.model.vnet = 'r3d_18'
  c.model.dtype = 'bfloat16'
  c.model.conv_impl = 'fold_s2d'  # channels padded to 8, space-to-depth RGB stem (docs/performance.md)
  c.train.epochs = 200
  # The paper's staged schedule with our stage lengths (the paper gives none): pose GAN, context branch and video
  # GANs 10 epochs each on their own objectives, then the joint stage for the remaining 170 of the 200 epochs.
  # In the paper's Table II most of the pose and context pretext gain comes within the first 10 epochs.
  c.train.stages = schedule.paper_stages(branch_epochs=10)
  # The GPU pretraining step spends minutes autotuning its 3D convolutions: a restart (preemption) reuses them.
  c.train.compilation_cache_dir = 'jax_cache'
  c.data.num_workers = 8
  c.finetune.num_classes = 101
  if 'smoke' in variants:
    c.model.width = 0.125
    c.model.dtype = 'float32'
    c.train.total_steps = 4
    c.train.stages = schedule.paper_stages(branch_steps=1)  # every stage once: 1 + 1 + 1 + joint 1
    c.train.batch_size = 8
    c.data.num_workers = 0
    c.checkpoint.every_steps = 2
  return c
