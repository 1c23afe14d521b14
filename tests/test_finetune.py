"""Finetuning end to end on a tiny SynthActions dataset: learns above chance, resumes, writes the report."""
import json
import os

import numpy as np
import pytest

from configs import base
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
  c.finetune.num_classes = NUM_CLASSES
  c.finetune.batch_size = 8
  c.finetune.total_steps = steps
  c.finetune.lr_per_sample = lr / 8
  c.finetune.weight_decay = 0.0
  c.optim.schedule = 'constant'
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
  assert steps == [5, 10, 15, 20, 25, 30, 35]  # the second run started at step 16
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
