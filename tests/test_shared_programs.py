"""Programs shared between the runs of one process (csvr_jax/train/shared_programs.py): the key leaves out exactly
the host-only settings, and those settings never reach a shared program (each traces to the same jaxpr when every
one of them is changed)."""
import functools

import jax
import numpy as np
import pytest

import pretrain_fixtures as fx  # tests/ is on sys.path
from csvr_jax import parallel
from csvr_jax.models import downstream
from csvr_jax.models import heads
from csvr_jax.train import backbone_init
from csvr_jax.train import finetune
from csvr_jax.train import pretext
from csvr_jax.train import pretrain
from csvr_jax.train import schedule
from csvr_jax.train import shared_programs


def _leaves(tree, prefix=''):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _leaves(v, f'{prefix}{k}.')
    else:
      yield f'{prefix}{k}', v


def _changed(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1
  if isinstance(value, str):
    return value + '_changed'
  return None  # (tuples, None: left as they are)


def with_host_only_settings_changed(config):
  """A copy of `config` with every host-only setting that is a bool, number or string changed -> (copy, names)."""
  c = config.copy_and_resolve_references()
  names = []
  for key, value in _leaves(config.to_dict()):
    new = _changed(value)
    if shared_programs.is_host_only(key) and new is not None:
      *path, last = key.split('.')
      node = c
      for p in path:
        node = node[p]
      node[last] = new
      names.append(key)
  return c, names


def test_the_key_leaves_out_the_host_only_settings_and_nothing_else():
  c = fx.tiny_config('/data/a')
  changed, names = with_host_only_settings_changed(c)
  assert {'seed', 'data.dataset_dir', 'checkpoint.every_steps', 'logging.log_every_steps', 'study.classes',
          'demo.videos_per_class', 'eval.method_name'} <= set(names)
  assert shared_programs.settings_key(changed) == shared_programs.settings_key(c)
  for key, value in (('train.total_steps', 5), ('model.width', 0.125), ('data.crop_size', 48),
                     ('eval.pretext_seed', 1), ('finetune.features', 'fi'), ('loss.branches', ('pose',))):
    other = c.copy_and_resolve_references()
    section, name = key.split('.')
    other[section][name] = value
    assert shared_programs.settings_key(other) != shared_programs.settings_key(c), key


def test_one_object_per_key_the_least_recently_used_dropped_first(monkeypatch):
  monkeypatch.setattr(shared_programs, 'MAX_PROGRAMS', 2)
  monkeypatch.setattr(shared_programs, '_programs', type(shared_programs._programs)())
  c = fx.tiny_config()
  other_seed = c.copy_and_resolve_references()
  other_seed.seed = 7
  a = shared_programs.shared('kind', c, 1, build=object)
  assert shared_programs.shared('kind', other_seed, 1, build=object) is a
  b = shared_programs.shared('kind', c, 2, build=object)  # another extra key: another object
  assert b is not a
  shared_programs.shared('kind', c, 1, build=object)  # a used again: b is now the least recently used
  shared_programs.shared('other kind', c, 1, build=object)
  assert shared_programs.shared('kind', c, 1, build=object) is a
  assert shared_programs.shared('kind', c, 2, build=object) is not b


def _abstract_batch(c, mesh):
  batch = parallel.host_to_global(fx.random_batch(c), mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), batch)


def _pretraining_jaxprs(c, mesh):
  """The jaxprs of a pretraining run's shared programs: the initial state, the joint step, the pretext statistics."""
  programs = pretrain.RunPrograms(c, mesh, c.train.total_steps)
  init, abstract = programs.init(jax.random.PRNGKey(c.seed))
  stage = schedule.resolve_stages(c, c.train.total_steps)[-1]
  batch = _abstract_batch(c, mesh)
  held_out = c.copy_and_resolve_references()
  held_out.data = pretext.held_out_data_config(c.data)
  statistics = pretext.jit_statistics(held_out, pretext.eval_stage(c), None, mesh)
  key = jax.ShapeDtypeStruct((2,), np.uint32)
  return [str(init.trace(key).jaxpr),
          str(programs.step_fns(stage).one_stage_step.trace(abstract, batch).jaxpr),
          str(statistics.trace(abstract.params, abstract.batch_stats, {}, batch, key).jaxpr)]


def _finetune_jaxpr(c, mesh):
  bn_axis = parallel.DATA if c.model.sync_bn else None  # as finetune.train builds it
  model = downstream.DownstreamFeatures('vnet', vnet=backbone_init.build_backbone(c, c.model.vnet, c.model.width,
                                                                                  bn_axis))
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                             *backbone_init.example_inputs(c))
  classifier = heads.Classifier(num_classes=5, dropout=c.model.dropout)
  tx, lr = finetune.make_optimizer(c, 10), finetune.learning_rate_fn(c, 10)
  dim = finetune.feature_dim(c, model, variables)
  state = jax.eval_shape(lambda v: finetune.init_state(c, v, classifier, dim, tx), variables)
  state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)), state)
  batch = {k: v for k, v in _abstract_batch(c, mesh).items() if k in downstream.input_keys('vnet')}
  batch['label'] = jax.ShapeDtypeStruct((c.train.batch_size,), np.int32, sharding=parallel.batch_sharding(mesh))
  return str(finetune.jit_train_step(c, model, classifier, tx, lr, mesh).trace(state, batch).jaxpr)


@pytest.mark.parametrize('programs', ['pretraining', 'finetune'])
def test_host_only_settings_do_not_reach_the_shared_programs(programs):
  c = fx.tiny_config('/data/a')
  changed, _ = with_host_only_settings_changed(c)
  mesh = parallel.make_mesh(c, jax.devices()[:1])
  jaxprs = _pretraining_jaxprs if programs == 'pretraining' else _finetune_jaxpr
  assert jaxprs(changed, mesh) == jaxprs(c, mesh)
