"""Finetuning end to end on a tiny SynthActions dataset: learns above chance, resumes, writes the report."""
import json
import os

import numpy as np
import pytest

from configs import base
from csvr_jax import checkpoint
from csvr_jax.train import finetune

NUM_CLASSES = 3


@pytest.fixture(scope='module')
def synth_dir(tmp_path_factory):
  from data_prep import synth_actions
  root = tmp_path_factory.mktemp('synth')
  return synth_actions.generate_and_build(str(root), num_classes=NUM_CLASSES, videos_per_class=8, frames=24,
                                          size=48, context=1.0)


def _config(dataset_dir, steps, lr=0.05):
  c = base.get_config()
  c.mode = 'finetune'
  c.data.dataset_dir = dataset_dir
  c.data.clip_len, c.data.stride, c.data.crop_size, c.data.short_side = 4, 2, 32, 48
  c.data.num_workers = 0
  c.train.fast_compile = True
  c.data.num_eval_clips = 2
  # Easy views so that a few steps suffice: the test is about the machinery, not augmentation robustness.
  c.data.jitter_prob, c.data.blur_prob, c.data.crop_scale = 0.0, 0.0, (0.6, 1.0)
  c.model.vnet, c.model.width, c.model.dropout = 'r3d_18', 0.125, 0.0
  c.model.conv_impl = 'fold_taps'  # the CPU configs' convolutions: XLA:CPU runs them faster than base's 'fold'
  c.finetune.num_classes = NUM_CLASSES
  c.finetune.batch_size = 8
  c.finetune.total_steps = steps
  c.finetune.lr_per_sample = lr / 8
  c.finetune.weight_decay = 0.0
  c.finetune.schedule = 'constant'
  c.eval.batch_size = 8
  c.logging.log_every_steps = 5
  c.logging.progress_bar = False
  c.checkpoint.every_steps = 100  # only the end-of-run saves (orbax saves cost seconds here)
  c.eval.method_name = 'scratch'
  return c


def test_finetune_learns_and_resumes(synth_dir, tmp_path):
  workdir = str(tmp_path)
  first = finetune.run(_config(synth_dir, steps=15), workdir)
  ft_dir = finetune.run_dir(_config(synth_dir, steps=15), workdir)
  assert os.path.basename(ft_dir).startswith('synth_actions_scratch_')
  assert os.path.isdir(os.path.join(ft_dir, 'checkpoints', '15'))
  # Resume in the same workdir and train 20 more steps at a lower rate (a manual step decay, so that the
  # BatchNorm running statistics settle); evaluate on the classes' training videos: "beats chance".
  c = _config(synth_dir, steps=35, lr=0.01)
  c.data.eval_split = 'train'
  out = finetune.run(c, workdir)
  lines = [json.loads(l) for l in open(os.path.join(ft_dir, 'metrics.jsonl'))]
  steps = [l['step'] for l in lines if 'finetune/loss' in l]
  losses = [l['finetune/loss'] for l in lines if 'finetune/loss' in l]
  assert steps == [1, 5, 10, 15, 20, 25, 30, 35]  # (train/loop.py logs step 1) the second run started at 16
  assert np.isfinite(losses).all() and np.mean(losses[-3:]) < np.log(NUM_CLASSES)
  assert out['finetune/top1'] >= 0.55, out  # chance = 1/3; 18 videos x 2 clips, softmax averaged
  assert out['confusion'].sum() == 18 and out['per_class_accuracy'].shape == (NUM_CLASSES,)
  assert 0.0 <= first['finetune/top1'] <= 1.0 and first['confusion'].sum() == 6  # the 6 test videos
  results = json.load(open(os.path.join(workdir, 'results.json')))
  assert results['runs'][0]['method'] == 'scratch' and results['runs'][0]['dataset'] == 'synth_actions'
  assert set(results['runs'][0]['per_class_accuracy']['finetune']) == {'Walk', 'Run', 'Jump'}
  assert results['runs'][0]['metrics']['finetune/top1'] == out['finetune/top1']
  assert os.path.exists(os.path.join(workdir, 'per_class_synth_actions.png'))
  conf = json.load(open(os.path.join(ft_dir, 'confusion.json')))
  assert conf['classes'] == ['Walk', 'Run', 'Jump'] and np.sum(conf['confusion']) == 18


# ------------------------------------------------------------------ the features: vnet | fi | fd

def _tiny_features_config(features):
  from pretrain_fixtures import tiny_config  # tests/ is on sys.path
  c = tiny_config()
  c.finetune.features, c.finetune.num_classes, c.finetune.batch_size = features, NUM_CLASSES, 8
  c.model.dropout = 0.0  # dropout keys are per device: only without dropout do 8 devices equal 1
  return c


def _random_batch(c, seed=0):
  r = np.random.RandomState(seed)
  b, t, s = 8, c.data.clip_len, c.data.crop_size
  return {'clip': r.randint(0, 255, (b, t, s, s, 3), dtype=np.uint8),
          'pose_in': r.rand(b, t, 18, 2).astype(np.float32),
          'pose_in_conf': (r.rand(b, t, 18) > 0.2).astype(np.float32),
          'label': r.randint(0, NUM_CLASSES, b).astype(np.int32)}


def _two_steps(c, devices):
  import jax
  from csvr_jax import parallel
  from csvr_jax.models import downstream, heads
  from csvr_jax.train import backbone_init
  mesh = parallel.make_mesh(c, devices)
  model, variables, _ = backbone_init.load_downstream(c, bn_axis_name=parallel.DATA)
  classifier = heads.Classifier(num_classes=NUM_CLASSES, dropout=c.model.dropout)
  tx = finetune.make_optimizer(c, 10)
  state = finetune.create_state(c, variables, classifier, finetune.feature_dim(c, model, variables), tx, mesh)
  initial = checkpoint.host_copy(state)
  step = finetune.jit_train_step(c, model, classifier, tx, finetune.learning_rate_fn(c, 10), mesh)
  keys = downstream.input_keys(c.finetune.features) + ('label',)
  for seed in (0, 1):
    batch = _random_batch(c, seed)
    state, metrics = step(state, parallel.host_to_global({k: batch[k] for k in keys}, mesh))
  assert step._cache_size() == 1  # the initial state is placed as the step returns it: one compile, not two
  return initial, checkpoint.host_copy(state), jax.device_get(metrics)


def _changed(a, b):
  import jax
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize('features,networks', [('vnet', {'vnet'}), ('fi', {'vnet', 'pose_g', 'integration'}),
                                               ('fd', {'pose_g'})])
def test_feature_steps_train_every_part_and_8_devices_equal_1(features, networks):
  import chex
  import jax
  c = _tiny_features_config(features)
  initial, state8, m8 = _two_steps(c, jax.devices())
  assert len(jax.devices()) == 8 and set(state8.params['backbone']) == networks
  assert set(state8.batch_stats) == networks  # every part has BatchNorm statistics
  for name in networks:  # trained end to end: every part's parameters and statistics moved
    assert _changed(state8.params['backbone'][name], initial.params['backbone'][name]), name
    assert _changed(state8.batch_stats[name], initial.batch_stats[name]), name
  assert _changed(state8.params['classifier'], initial.params['classifier'])
  assert np.isfinite(m8['finetune/loss'])
  _, state1, m1 = _two_steps(c, jax.devices()[:1])
  chex.assert_trees_all_close(state8.params, state1.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(state8.batch_stats, state1.batch_stats, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m8['finetune/loss'], m1['finetune/loss'], rtol=1e-5)


@pytest.mark.parametrize('features,label', [('fi', 'f_i'), ('fd', 'f_d')])
def test_finetune_run_with_features_from_random_init(features, label, tmp_path):
  """--mode=finetune end to end with f_i / f_d (random init of every part): trains, tests, names the row."""
  from pretrain_fixtures import write_toy_dataset
  c = _tiny_features_config(features)
  c.data.dataset_dir = write_toy_dataset(tmp_path / 'toy')
  c.data.num_eval_clips, c.eval.batch_size = 2, 8
  c.finetune.num_classes, c.finetune.total_steps = 2, 2
  c.eval.method_name = 'scratch'
  out = finetune.run(c, str(tmp_path / 'work'))
  assert 0.0 <= out['finetune/top1'] <= 1.0 and out['confusion'].sum() == 2  # the 2 test videos
  ft_dir = finetune.run_dir(c, str(tmp_path / 'work'))
  assert ft_dir.endswith(f'_{features}') and os.path.isdir(os.path.join(ft_dir, 'checkpoints', '2'))
  runs = json.load(open(tmp_path / 'work' / 'results.json'))['runs']
  assert [r['method'] for r in runs] == [f'scratch ({label})']
