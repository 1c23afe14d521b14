"""The `--mode=finetune` train step, timed on a synthetic batch (`python -m csvr_jax.bench --what=finetune_step`).

The step is the library's, built as csvr_jax/train/finetune.py `train` builds it: the config of
configs/ucf101_finetune.py (the paper's UCF101 recipe: SGD momentum 0.9, weight decay 0.003 on every parameter,
lr 1e-4 x batch on a cosine schedule, dropout 0.3, bf16 compute, conv_impl fold_s2d) with the benchmark's shapes;
the downstream model of backbone_init.load_downstream (features vnet | fi | fd, random init), heads.Classifier,
finetune.make_optimizer / learning_rate_fn / create_state, and finetune.jit_train_step: shard_map over a mesh of
every device, the state donated, the global-batch mean loss, dropout on. `augment`:
  'device'  the step's per-clip colour jitter + Gaussian blur + normalisation (csvr_jax/data/augment.py), exactly
            what training runs;
  'none'    normalisation only (finetune.train_step's device_augment=False): the model's own cost.
The batch follows the finetune contract (csvr_jax/data/pipeline.py finetune_loader: uint8 'clip' (B,T,S,S,3),
'pose_in' / 'pose_in_conf' for fi / fd, int32 'label'), random, put on the devices once: the host pipeline (random
resized crop + flip, JPEG decode) is not part of the number.

MFU counts the useful FLOPs: 3 x the forward FLOPs of the features' networks per clip (vnet: the analytic
convolution count of csvr_jax/benchmarks/flops.py, torchvision's convention; fi / fd: XLA's cost analysis of the
model's forward on the CPU); the augmentation and the optimizer are overhead, not counted.
"""
import gzip
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax import parallel
from csvr_jax.benchmarks import common
from csvr_jax.benchmarks import flops as flops_lib
from csvr_jax.benchmarks import xla_report
from csvr_jax.models import downstream
from csvr_jax.models import heads
from csvr_jax.train import backbone_init
from csvr_jax.train import finetune

AUGMENT = {'device': True, 'none': False}
# Length of the cosine schedule the lr follows: it sets the lr of each step, not the step's cost.
SCHEDULE_STEPS = 1000


def finetune_config(sizes, *, num_classes, features):
  """configs/ucf101_finetune.py with the benchmark's shapes, classes and features; random init."""
  c = common.apply_sizes(common.recipe_config('ucf101_finetune'), sizes)
  c.finetune.batch_size, c.finetune.num_classes = sizes.batch, num_classes
  c.finetune.features = downstream.check_features(features)
  c.finetune.total_steps = SCHEDULE_STEPS
  c.checkpoint.init_from = ''
  return c


def check_augment(name):
  if name not in AUGMENT:
    raise ValueError(f'--augment={name!r}: choose from {sorted(AUGMENT)}')
  return AUGMENT[name]


def synthetic_batch(config, seed=0):
  """Host numpy batch of the finetune contract for config.finetune.features: random uint8 clips, poses, labels."""
  rng = np.random.default_rng(seed)
  b, t, s, n = config.finetune.batch_size, config.data.clip_len, config.data.crop_size, config.model.num_joints
  full = {'clip': rng.integers(0, 256, size=(b, t, s, s, 3), dtype=np.uint8),
          'pose_in': rng.uniform(size=(b, t, n, 2)).astype(np.float32),
          'pose_in_conf': (rng.uniform(size=(b, t, n)) > 0.2).astype(np.float32),
          'label': rng.integers(0, config.finetune.num_classes, size=(b,), dtype=np.int32)}
  return {k: full[k] for k in downstream.input_keys(config.finetune.features) + ('label',)}


def build(config, mesh, device_augment):
  """(initial FinetuneState on `mesh`, the jitted library step, number of parameters), as finetune.train builds
  them."""
  parallel.check_global_batch(config.finetune.batch_size, mesh, 'config.finetune.batch_size')
  steps = finetune.total_steps(config, num_train=0)
  bn_axis = parallel.DATA if config.model.sync_bn else None
  model, model_vars, _ = backbone_init.load_downstream(config, bn_axis_name=bn_axis)
  classifier = heads.Classifier(num_classes=config.finetune.num_classes, dropout=config.model.dropout)
  lr_fn = finetune.learning_rate_fn(config, steps)
  tx = finetune.make_optimizer(config, steps)
  state = finetune.create_state(config, model_vars, classifier, finetune.feature_dim(config, model, model_vars),
                                tx, mesh)
  step = finetune.jit_train_step(config, model, classifier, tx, lr_fn, mesh, device_augment=device_augment)
  return state, step, int(sum(x.size for x in jax.tree.leaves(state.params)))


def forward_flops_per_clip(config):
  """Useful forward FLOPs of one clip through the features' networks (see the module docstring)."""
  if config.finetune.features == 'vnet':
    return float(flops_lib.backbone_flops(config.model.vnet, config.data.clip_len, config.data.crop_size,
                                          config.model.width)[1])
  model, variables, _ = backbone_init.load_downstream(config)
  args = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), backbone_init.example_inputs(config))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), variables)
  fn = lambda v, a: model.apply(v, *a, train=False)
  with jax.default_device(jax.local_devices(backend='cpu')[0]):  # a GPU lowering leaves cuDNN convolutions out
    cost = jax.jit(fn).lower(abstract, args).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def bench(config, augment, timing, *, mesh=None, label='', hlo_dir=None, profile=False, peak=None):
  """Compiles and times the finetune step of `config` with `augment` ('device' | 'none') -> one result row."""
  mesh = mesh or parallel.make_mesh(config)
  m = config.model
  row = dict(what='finetune_step', impl='jax', arch=m.vnet, features=config.finetune.features, augment=augment,
             label=label, batch=config.finetune.batch_size, width=m.width, conv_impl=m.conv_impl, dtype=m.dtype,
             devices=int(mesh.devices.size))
  t0 = time.perf_counter()
  state, step, row['params'] = build(config, mesh, check_augment(augment))
  batch = parallel.host_to_global(synthetic_batch(config), mesh)
  row['init_s'] = time.perf_counter() - t0
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()  # the very program `--mode=finetune` runs
  row['compile_s'] = time.perf_counter() - t0
  row.update(common.compile_report(compiled))
  hlo = compiled.as_text()
  row['hlo'] = xla_report.hlo_summary(hlo)
  if hlo_dir:
    os.makedirs(hlo_dir, exist_ok=True)
    tag = '_'.join(x for x in ('finetune', m.vnet, config.finetune.features, augment, label, m.conv_impl) if x)
    with gzip.open(os.path.join(hlo_dir, f'{tag}.hlo.txt.gz'), 'wt') as f:
      f.write(hlo)
  holder = {'state': state}

  def run_one():
    holder['state'], metrics = compiled(holder['state'], batch)
    return metrics

  sec, windows = common.time_windows(run_one, timing)
  metrics = jax.device_get(run_one())
  row.update(ms_per_step=1e3 * sec, ms_per_step_windows=[1e3 * w for w in windows],
             loss=float(metrics['finetune/loss']), peak_bytes=common.device_peak_bytes())
  common.add_throughput(row, forward_flops_per_clip(config), peak)
  if profile:  # after the timed numbers: the profiler's overhead stays out of them
    def run_steps(n=3):
      jax.block_until_ready([run_one() for _ in range(n)])
    row['profile'] = xla_report.profile_kernels(run_steps, 3)
    if 'top' in row['profile']:
      row['profile']['groups'] = xla_report.kernel_groups(row['profile']['top'])
  return row
