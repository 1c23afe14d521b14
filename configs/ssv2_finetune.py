"""Finetuning on Something-Something v2 (174 classes; UCF101's optimisation recipe, validation as test)."""
from configs import base
from csvr_jax import config_variants


def get_config(arg=None):
  variants = config_variants.parse(arg, 'configs/ssv2_finetune.py', ('smoke',))
  c = base.get_config()
  c.mode = 'finetune'
  c.data.dataset_dir = 'data/ssv2'
  c.data.eval_split = 'validation'
  c.data.flip_prob = 0.0  # left/right matters in SSv2 ("pushing something from left to right")
  c.model.dtype = 'bfloat16'
  c.model.conv_impl = 'fold_s2d'  # channels padded to 8, space-to-depth RGB stem (docs/performance.md)
  c.finetune.num_classes = 174
  c.finetune.lr_per_sample = 1e-4
  c.finetune.weight_decay = 0.003
  if 'smoke' in variants:
    c.model.width = 0.125
    c.model.dtype = 'float32'
    c.finetune.total_steps = 4
    c.finetune.batch_size = 8
    c.data.num_workers = 0
  return c
