"""The embedded default: tiny CSVR on SynthActions, on CPU (variants: '' full demo, 'quick')."""
from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.model.width = 0.125
  c.train.batch_size = 8
  c.data.clip_len = 8
  c.data.future_len = 8
  c.data.stride = 2
  c.data.crop_size = 64
  c.data.short_side = 72
  c.data.num_workers = 0
  c.demo.size = 96
  if arg == 'quick':
    c.demo.videos_per_class = 6
  return c
