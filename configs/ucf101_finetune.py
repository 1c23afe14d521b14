"""Finetuning on UCF101 split 1 (paper: B 32, cosine, SGD, lr 1e-4*B, wd 0.003, dropout 0.3, 100 epochs).

Set the backbone with --config.checkpoint.init_from=runs/k400/export (empty = from scratch).
"""
from configs import base
from csvr_jax import config_variants


def get_config(arg=None):
  variants = config_variants.parse(arg, 'configs/ucf101_finetune.py', ('smoke',))
  c = base.get_config()
  c.mode = 'finetune'
  c.data.dataset_dir = 'data/ucf101'
  c.model.dtype = 'bfloat16'
  c.model.conv_impl = 'fold_s2d'  # channels padded to 8, space-to-depth RGB stem (docs/performance.md)
  c.finetune.num_classes = 101
  c.finetune.lr_per_sample = 1e-4
  c.finetune.weight_decay = 0.003
  if 'smoke' in variants:
    c.model.width = 0.125
    c.model.dtype = 'float32'
    c.finetune.total_steps = 4
    c.finetune.batch_size = 8
    c.data.num_workers = 0
  return c
