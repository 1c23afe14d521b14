"""Checkpoints (orbax) and the exported V-Network.

Export format (read by the finetune / retrieval / linear-probe modes and by torch_interop's CLI):
  EXPORT_DIR/variables/   orbax StandardCheckpointer pytree {'params': ..., 'batch_stats': ...} (numpy float32)
  EXPORT_DIR/meta.json    {'arch', 'width', 'clip_len', 'crop_size', 'mean', 'std', 'step', 'source'}
"""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

META_FILE = 'meta.json'
VARIABLES_DIR = 'variables'
META_KEYS = ('arch', 'width', 'clip_len', 'crop_size', 'mean', 'std', 'step', 'source')


def save_backbone_export(export_dir, variables, meta):
  """Writes backbone `variables` ({'params', 'batch_stats'}) and `meta` (keys META_KEYS) to export_dir."""
  missing = [k for k in META_KEYS if k not in meta]
  if missing:
    raise ValueError(f'export meta lacks keys {missing}')
  export_dir = os.path.abspath(export_dir)
  os.makedirs(export_dir, exist_ok=True)
  host_vars = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), dict(variables))
  path = os.path.join(export_dir, VARIABLES_DIR)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, host_vars, force=True)
  tmp = os.path.join(export_dir, META_FILE + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(dict(meta), f, indent=2)
  os.replace(tmp, os.path.join(export_dir, META_FILE))  # meta.json last: its presence marks a complete export


def load_backbone_export(export_dir):
  """Returns (variables, meta) of an export written by save_backbone_export."""
  export_dir = os.path.abspath(export_dir)
  meta_path = os.path.join(export_dir, META_FILE)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f'{meta_path} not found: not a csvr_jax export (run --mode=export first)')
  with open(meta_path) as f:
    meta = json.load(f)
  with ocp.StandardCheckpointer() as ckptr:
    variables = ckptr.restore(os.path.join(export_dir, VARIABLES_DIR))
  return variables, meta
