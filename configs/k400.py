"""The paper's Kinetics-400 pretraining recipe (16 frames, stride 4, 112x112, batch 16, lr 0.0005*B, 200 epochs).

Variants: `configs/k400.py` (the recipe), `configs/k400.py:smoke` (a few steps at tiny widths, any machine).
"""
from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.data.dataset_dir = 'data/kinetics400'
  c.data.eval_split = 'validation'
  c.model.vnet = 'r3d_18'
  c.model.dtype = 'bfloat16'
  c.model.conv_impl = 'fold_s2d'  # channels padded to 8, space-to-depth RGB stem: finetune 1.12-1.18x torch.compile (H200)
  c.train.epochs = 200
  c.model.video_gan = 'tgan2'  # TGAN v2 as the paper's video branch is: sparse training, dense rendering
  # The GPU pretraining step spends minutes autotuning its 3D convolutions: a restart (preemption) reuses them.
  c.train.compilation_cache_dir = 'jax_cache'
  c.data.num_workers = 8
  c.finetune.num_classes = 400
  if arg == 'smoke':
    c.model.width = 0.125
    c.model.dtype = 'float32'
    c.train.total_steps = 4
    c.train.batch_size = 8
    c.data.num_workers = 0
    c.checkpoint.every_steps = 2
  return c
