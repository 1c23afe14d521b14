"""The paper's UCF101 pretraining recipe (split 1 train videos; same optimisation as k400.py).

Variants: `configs/ucf101.py` (the recipe), `configs/ucf101.py:smoke`.
"""
from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.data.dataset_dir = 'data/ucf101'
  c.model.vnet = 'r3d_18'
  c.model.dtype = 'bfloat16'
  c.model.conv_impl = 'fold_s2d'  # channels padded to 8, space-to-depth RGB stem: finetune 1.12-1.18x torch.compile (H200)
  c.train.epochs = 200
  c.model.video_gan = 'tgan2'  # TGAN v2 as the paper's video branch is: sparse training, dense rendering
  # The GPU pretraining step spends minutes autotuning its 3D convolutions: a restart (preemption) reuses them.
  c.train.compilation_cache_dir = 'jax_cache'
  c.data.num_workers = 8
  c.finetune.num_classes = 101
  if arg == 'smoke':
    c.model.width = 0.125
    c.model.dtype = 'float32'
    c.train.total_steps = 4
    c.train.batch_size = 8
    c.data.num_workers = 0
    c.checkpoint.every_steps = 2
  return c
