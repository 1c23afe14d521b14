"""`--mode=finetune`: action recognition from a pretrained (or random) network.

The paper's recipe (configs/ucf101_finetune.py, hmdb51_finetune.py, ssv2_finetune.py): the features of
`config.finetune.features` (models/downstream.py: 'vnet' the V-Network, 'fi' the integrated feature f_i of the
V-Network, pose encoder and integration layer on the clip and its poses, 'fd' the pose encoder alone), every part
trained end to end, from `config.checkpoint.init_from` (export dir | torchvision .pth/.npz for 'vnet' | '' =
random init, the from-scratch baseline; see backbone_init.py), fresh classifier with dropout `model.dropout`
(0.3) before it; SGD momentum `finetune.momentum`, weight decay `finetune.weight_decay` added to the gradient
(PyTorch semantics, on every parameter), lr = `finetune.lr_per_sample` x `finetune.batch_size` with the
`finetune.schedule` (cosine) over the run; the four augmentations (random resized crop + flip on the host, colour
jitter + blur on the device; the clip's poses follow its crop and flip).
Data parallel over the mesh axis 'data' with shard_map as in pretraining (BN statistics over the global batch
when `model.sync_bn`). Checkpoints (state + data iterator + config) in `run_dir(config, workdir)`/checkpoints every
`checkpoint.every_steps`, at the end and on SIGTERM; rerunning the command resumes.

Test protocol: `data.num_eval_clips` (10) clips x centre crop per test video, softmax averaged per video,
video-level top-1 / top-5, per-class accuracy and confusion matrix (run_dir/confusion.json); the
numbers merge into workdir/results.json and report.md.

Choices: steps = `finetune.total_steps` if > 0, else `finetune.epochs` x (train videos // batch) (one random
clip per video per epoch); colour augmentation keys are per sample (fold_in of the global row index), dropout
keys per device (so with dropout > 0 the masks depend on the device count).
"""
import functools
import hashlib
import json
import os
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from csvr_jax import checkpoint
from csvr_jax import metrics as metrics_lib
from csvr_jax import parallel
from csvr_jax import report
from csvr_jax.data import augment
from csvr_jax.models import downstream
from csvr_jax.models import heads
from csvr_jax.train import backbone_init
from csvr_jax.train import evaluate
from csvr_jax.train import loop
from csvr_jax.train import shared_programs
from csvr_jax.train import state as state_lib

FINETUNE_DIR = 'finetune'


@flax.struct.dataclass
class FinetuneState:
  step: jax.Array     # int32 ()
  params: dict        # {'backbone': {network name: ...}, 'classifier': ...}
  batch_stats: dict   # network name -> its BatchNorm statistics
  opt_state: optax.OptState
  rng: jax.Array      # uint32 raw key data; per step: fold_in(rng, step)


def learning_rate_fn(config, total_steps):
  """step -> lr: finetune.lr_per_sample x finetune.batch_size, optional warmup, then finetune.schedule."""
  f = config.finetune
  return state_lib.lr_schedule(f.schedule, f.warmup_steps, f.lr_per_sample * f.batch_size, total_steps,
                               key='config.finetune.schedule')


def make_optimizer(config, total_steps):
  """SGD with momentum; weight decay added to the gradient before momentum (torch.optim.SGD)."""
  return optax.chain(optax.add_decayed_weights(config.finetune.weight_decay),
                     optax.sgd(learning_rate_fn(config, total_steps), momentum=config.finetune.momentum))


def init_state(config, backbone_vars, classifier, feature_dim, tx):
  """FinetuneState from the downstream model's variables and a fresh classifier (seed config.seed + 1);
  jittable."""
  clf = classifier.init(backbone_init.init_key(config.seed + 1), jnp.zeros((1, feature_dim)))['params']
  params = {'backbone': backbone_vars['params'], 'classifier': clf}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  return FinetuneState(step=jnp.zeros((), jnp.int32), params=params,
                       batch_stats=jax.tree.map(jnp.asarray, backbone_vars['batch_stats']),
                       opt_state=tx.init(params),
                       rng=jax.random.key_data(jax.random.key(config.seed)))


def feature_dim(config, model, variables):
  """C of the model's pooled features (abstract evaluation)."""
  out = jax.eval_shape(lambda v, inputs: model.apply(v, *inputs, train=False), variables,
                       backbone_init.example_inputs(config))
  return out['pooled'].shape[-1]


def create_state(config, backbone_vars, classifier, feature_dim, tx, mesh):
  """`init_state` as one jitted computation placed replicated on the mesh (eager init would compile one
  small program per parameter shape)."""
  init = functools.partial(init_state, config, classifier=classifier, feature_dim=feature_dim, tx=tx)
  host_vars = jax.device_get(backbone_vars)
  shardings = parallel.replicated_like(jax.eval_shape(init, host_vars), mesh)
  return jax.jit(init, out_shardings=shardings, compiler_options=parallel.compiler_options(config))(host_vars)


def _augment_per_sample(clips, key, data_config):
  """device_augment with one key per row (fold_in of the global row index): independent of the device count."""
  keys = parallel.sample_keys(key, clips.shape[0])
  return jax.vmap(lambda c, k: augment.device_augment(c[None], k, data_config)[0])(clips, keys)


def train_step(state, batch, *, model, classifier, tx, lr_fn, config, device_augment=True):
  """One SGD step inside shard_map: batch {input_keys of the features (uint8 'clip', poses), 'label'} is this
  device's rows -> (state, metrics). device_augment=False only normalises the clip (no colour jitter / blur):
  the model's own cost, for the benchmarks (csvr_jax/benchmarks/finetune_bench.py)."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  k_aug, k_drop = jax.random.split(key)
  k_drop = jax.random.fold_in(k_drop, jax.lax.axis_index(parallel.DATA))
  prepare = ((lambda clips: _augment_per_sample(clips, k_aug, config.data)) if device_augment
             else (lambda clips: augment.normalize(clips, config.data.mean, config.data.std)))
  x, poses = downstream.call_args(batch, prepare)

  def loss_fn(params):
    out, upd = model.apply({'params': params['backbone'], 'batch_stats': state.batch_stats}, x, **poses,
                           train=True, mutable=['batch_stats'])
    logits = classifier.apply({'params': params['classifier']}, out['pooled'], train=True,
                              rngs={'dropout': k_drop})
    # A global-batch mean, as every pretraining loss: the gradient of replicated params is then exact inside
    # shard_map (parallel.py).
    loss = parallel.global_mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean())
    return loss, (upd['batch_stats'], logits)

  (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  if not config.model.sync_bn:
    batch_stats = parallel.global_mean(batch_stats)  # per-device statistics, averaged to stay replicated
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  top1 = jnp.mean((jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32))
  metrics = {'finetune/loss': loss, 'finetune/train_top1': parallel.global_mean(top1)}
  metrics['finetune/lr'] = lr_fn(state.step)
  return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state), metrics


def jit_train_step(config, model, classifier, tx, lr_fn, mesh, device_augment=True):
  """`train_step` data parallel over `mesh`, jitted with the state donated: (state, global batch) -> ..."""
  step_fn = functools.partial(train_step, model=model, classifier=classifier, tx=tx, lr_fn=lr_fn, config=config,
                              device_augment=device_augment)
  return jax.jit(parallel.data_parallel(step_fn, mesh, (parallel.REPLICATED, parallel.BATCH),
                                        (parallel.REPLICATED, parallel.REPLICATED)), donate_argnums=(0,),
                 compiler_options=parallel.compiler_options(config))


@functools.lru_cache(maxsize=4)
def _probs_step(model, classifier, mesh, mean, std, fast_compile):
  """jitted (variables, {input key: array} split on 'data') -> (B, num_classes) softmax probabilities."""
  def local(variables, inputs):
    x, poses = downstream.call_args(inputs, lambda clips: augment.normalize(clips, mean, std))
    out = model.apply({'params': variables['params']['backbone'], 'batch_stats': variables['batch_stats']},
                      x, **poses, train=False)
    logits = classifier.apply({'params': variables['params']['classifier']}, out['pooled'], train=False)
    return jax.nn.softmax(logits, axis=-1)

  return jax.jit(parallel.data_parallel(local, mesh, (parallel.REPLICATED, parallel.BATCH), parallel.BATCH),
                 compiler_options=parallel.fast_compile_options() if fast_compile else None)


def evaluate_classifier(config, state, model, classifier, mesh, batches, num_videos, num_classes):
  """Test protocol: softmax averaged over each video's clips -> downstream_metrics.classification_metrics, plus
  the per-video 'probs' (num_videos, num_classes) and 'labels' (for per-video analyses, e.g. csvr_jax/study)."""
  step = _probs_step(model, classifier, mesh, tuple(map(float, config.data.mean)),
                     tuple(map(float, config.data.std)), bool(config.train.fast_compile))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  probs, labels = evaluate.per_video_outputs(step, variables, batches, num_videos, mesh,
                                             downstream.input_keys(config.finetune.features))
  return {**evaluate.classification_metrics(probs, labels, num_classes), 'probs': probs, 'labels': labels}


def _dataset(config):
  from csvr_jax.data import pipeline, records  # pylint: disable=g-import-not-at-top  (heavy, mode-only)
  d = config.data
  names = records.class_names(d.dataset_dir) if isinstance(d.dataset_dir, str) else None
  if names is not None and len(names) != config.finetune.num_classes:
    raise ValueError(f'config.finetune.num_classes={config.finetune.num_classes} but {d.dataset_dir} has '
                     f'{len(names)} classes')
  num_train = pipeline.split_size(d.dataset_dir, d.train_split)
  return pipeline, names, num_train


def run_dir(config, workdir):
  """workdir/finetune/<dataset>_<method>_<hash of init_from>[_<features>]: runs from different backbones (or
  features, or on different datasets) sharing a workdir keep separate checkpoints; rerunning the same command
  resumes its own. ('vnet' adds no suffix: its runs keep the directories they had before features existed.)"""
  init = config.checkpoint.init_from
  digest = hashlib.sha1((os.path.abspath(init) if init else 'random_init').encode()).hexdigest()[:8]
  features = downstream.check_features(config.finetune.features)
  name = f'{report.dataset_name(config.data.dataset_dir)}_{config.eval.method_name or "run"}_{digest}'
  name += '' if features == 'vnet' else f'_{features}'
  return os.path.join(workdir, FINETUNE_DIR, re.sub(r'[^A-Za-z0-9_.-]+', '_', name))


def total_steps(config, num_train):
  if config.finetune.total_steps > 0:
    return config.finetune.total_steps
  return config.finetune.epochs * max(num_train // config.finetune.batch_size, 1)


def train(config, workdir):
  """The training part of `run` -> (state, model, classifier, mesh, meta, class names); loop.Preempted on SIGTERM."""
  # ---------------------------------------------------------------- mesh, data
  parallel.initialize(config)
  mesh = parallel.make_mesh(config)
  batch = config.finetune.batch_size
  parallel.check_global_batch(batch, mesh, 'config.finetune.batch_size')
  pipeline, names, num_train = _dataset(config)
  steps = total_steps(config, num_train)
  loader = pipeline.finetune_loader(config.data, config.data.dataset_dir, config.data.train_split,
                                    parallel.local_batch_size(batch), seed=config.data.shuffle_seed)
  data_iter = iter(loader)
  keys = downstream.input_keys(config.finetune.features) + ('label',)

  # ---------------------------------------------------------------- model, optimizer, state
  bn_axis = parallel.DATA if config.model.sync_bn else None
  model, model_vars, meta = backbone_init.load_downstream(config, bn_axis_name=bn_axis)
  classifier = heads.Classifier(num_classes=config.finetune.num_classes, dropout=config.model.dropout)
  lr_fn = learning_rate_fn(config, steps)
  tx = make_optimizer(config, steps)
  state = create_state(config, model_vars, classifier, feature_dim(config, model, model_vars), tx, mesh)

  # ---------------------------------------------------------------- step
  p_step = shared_programs.shared('finetune_step', config, steps, model, classifier, mesh,
                                  build=lambda: jit_train_step(config, model, classifier, tx, lr_fn, mesh))

  # ---------------------------------------------------------------- restore
  ft_dir = run_dir(config, workdir)
  ckpt = checkpoint.TrainCheckpointer(ft_dir, config.checkpoint.keep)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(checkpoint.abstract_like(state), data_iter,
                         resume_data_order=config.checkpoint.resume_data_order, config=config)
    print(f'finetune: resumed from step {int(state.step)} in {ckpt.directory}')
  writer = metrics_lib.MetricWriter(ft_dir, steps, batch, config.logging.progress_bar,
                                    main_keys=['finetune/loss', 'finetune/train_top1'])

  # ---------------------------------------------------------------- loop
  step_fn = lambda state, host_batch, step: p_step(state, parallel.host_to_global(
      {k: host_batch[k] for k in keys}, mesh))
  state = loop.run(state, data_iter, step_fn, total_steps=steps, config=config, ckpt=ckpt, writer=writer,
                   name='finetune')
  return state, model, classifier, mesh, meta, names


def run(config, workdir):
  """Finetunes, evaluates with the 10-clip protocol, writes results.json / report.md; returns the metrics."""
  state, model, classifier, mesh, meta, names = train(config, workdir)
  ft_dir = run_dir(config, workdir)
  test_batches, num_test = evaluate.eval_batches(config, config.data.dataset_dir, config.data.eval_split, mesh)
  m = evaluate_classifier(config, state, model, classifier, mesh, test_batches, num_test,
                          config.finetune.num_classes)
  results = {'finetune/top1': m['top1'], 'finetune/top5': m['top5'],
             'finetune/mean_class_accuracy': m['mean_class_accuracy']}
  if jax.process_index() == 0:
    with open(os.path.join(ft_dir, 'metrics.jsonl'), 'a') as f:
      f.write(json.dumps({'step': int(state.step), **{f'test/{k.split("/")[1]}': v for k, v in results.items()}})
              + '\n')
    names = names or [str(i) for i in range(config.finetune.num_classes)]
    with open(os.path.join(ft_dir, 'confusion.json'), 'w') as f:
      json.dump({'classes': names, 'confusion': m['confusion'].tolist()}, f)
    per_class = {'finetune': dict(zip(names, m['per_class_accuracy'].tolist()))}
    report.update_results(workdir, report.describe_run(config, meta), results, per_class)
    report.write_report(workdir)
    print('finetune: ' + ' '.join(f'{k} {100 * v:.1f}' for k, v in results.items()))
  return {**results, 'per_class_accuracy': m['per_class_accuracy'], 'confusion': m['confusion']}
