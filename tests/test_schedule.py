"""The staged pretraining schedule (csvr_jax/train/schedule.py) and the stages every recipe resolves to."""
import importlib

import pytest

from configs import base
from csvr_jax.train import schedule

PRETRAINING_RECIPES = ('k400', 'ucf101')  # configs that carry the paper's name: the paper's staged schedule


def _spans(stages):
  return [(s.name, s.start, s.end) for s in stages]


def test_resolve_stages_paper_schedule_and_ablations():
  c = base.get_config()
  c.train.stages = schedule.paper_stages(branch_steps=10, joint_steps=-1)
  stages = schedule.resolve_stages(c, 100)
  assert [(s.name, s.start, s.end) for s in stages] == [('pose', 0, 10), ('context', 10, 20),
                                                         ('video_warmup', 20, 30), ('joint', 30, 100)]
  assert stages[2].losses == {'video': ('rec', 'pred')}
  assert 'vnet' not in stages[2].trainable and 'video_d_rec' in stages[2].d_names
  c.loss.branches = ('context', 'video')
  c.loss.video_targets = 'prediction'
  stages = schedule.resolve_stages(c, 100)
  assert [s.name for s in stages] == ['context', 'video_warmup', 'joint']
  assert stages[-1].losses == {'context': (), 'video': ('pred',)}
  assert 'pose_d' not in stages[-1].trainable and 'video_g_rec' not in stages[-1].trainable
  assert 'pose_g' in stages[-1].trainable  # f_d still comes from the pose encoder
  c.loss.branches = ('pose', 'context', 'video')
  c.train.stages = (schedule.stage('a', 10, ['pose'], ['pose_g']),)
  with pytest.raises(ValueError, match='cover 10 steps but the run has 100'):
    schedule.resolve_stages(c, 100)
  c.train.stages = (schedule.stage('a', -1, ['posture'], ['pose_g']),)
  with pytest.raises(ValueError, match=r"stages\[0\] \(a\): unknown loss 'posture'"):
    schedule.resolve_stages(c, 100)


def test_stage_lengths_in_epochs_resolve_with_the_dataset_size():
  c = base.get_config()
  c.train.stages = schedule.paper_stages(branch_epochs=2.5)
  stages = schedule.resolve_stages(c, 1000, steps_per_epoch=12)
  assert _spans(stages) == [('pose', 0, 30), ('context', 30, 60), ('video_warmup', 60, 90), ('joint', 90, 1000)]
  with pytest.raises(ValueError, match=r'stages\[0\] \(pose\): a length in epochs needs the dataset size'):
    schedule.resolve_stages(c, 1000)
  c.train.stages = (schedule.stage('a', 5, ['pose'], ['pose_g'], epochs=1.0),)
  with pytest.raises(ValueError, match=r'stages\[0\] \(a\): give steps .* or epochs .*, not both'):
    schedule.resolve_stages(c, 100, steps_per_epoch=10)


def test_ablations_keep_the_budget_and_merge_equal_stages():
  c = base.get_config()
  c.train.stages = schedule.paper_stages(branch_steps=10, joint_steps=70)
  c.loss.branches = ('context',)  # Table I f_s: the context stage and the joint stage compute the same loss
  assert _spans(schedule.resolve_stages(c, 100)) == [('context', 0, 100)]
  c.loss.branches = ('pose',)  # Table I f_d
  stages = schedule.resolve_stages(c, 100)
  assert _spans(stages) == [('pose', 0, 100)] and stages[0].trainable == ('pose_g', 'pose_d')
  c.loss.branches = ('pose', 'context')  # Table I f_i without the video branch: the warm-up's steps go to joint
  stages = schedule.resolve_stages(c, 100)
  assert _spans(stages) == [('pose', 0, 10), ('context', 10, 20), ('joint', 20, 100)]
  assert set(stages[-1].trainable) == {'vnet', 'inet', 'heads', 'pose_g', 'pose_d'}


@pytest.mark.parametrize('recipe', PRETRAINING_RECIPES)
def test_paper_recipes_pretrain_each_branch_before_the_joint_stage(recipe):
  c = importlib.import_module(f'configs.{recipe}').get_config()
  steps_per_epoch = 9537 // c.train.batch_size  # e.g. UCF101 split 1's training videos
  total = c.train.epochs * steps_per_epoch
  stages = schedule.resolve_stages(c, total, steps_per_epoch)
  branch = 10 * steps_per_epoch
  assert _spans(stages) == [('pose', 0, branch), ('context', branch, 2 * branch),
                            ('video_warmup', 2 * branch, 3 * branch), ('joint', 3 * branch, total)]
  assert [set(s.losses) for s in stages] == [{'pose'}, {'context'}, {'video'}, {'pose', 'context', 'video'}]
  assert set(stages[0].trainable) == {'pose_g', 'pose_d'}
  assert set(stages[1].trainable) == {'vnet', 'inet', 'heads'}
  assert set(stages[2].trainable) == {'integration', 'video_g_rec', 'video_d_rec', 'video_g_pred', 'video_d_pred'}
  assert set(stages[3].trainable) == set(schedule.ALL_NETWORKS)
  smoke = importlib.import_module(f'configs.{recipe}').get_config('smoke')
  assert [s.name for s in schedule.resolve_stages(smoke, smoke.train.total_steps)] == [
      'pose', 'context', 'video_warmup', 'joint']


TABLE1_STAGES = {  # row -> the stages (and active losses) its pretraining resolves to, 10 branch epochs each
    'fd': [('pose', 0, 200, {'pose'})],
    'fs': [('context', 0, 200, {'context'})],
    'fi_adain': [('pose', 0, 10, {'pose'}), ('context', 10, 20, {'context'}), ('joint', 20, 200, {'pose', 'context'})],
    'fi_concat': [('pose', 0, 10, {'pose'}), ('context', 10, 20, {'context'}),
                  ('joint', 20, 200, {'pose', 'context'})],
    'fi_full': [('pose', 0, 10, {'pose'}), ('context', 10, 20, {'context'}), ('video_warmup', 20, 30, {'video'}),
                ('joint', 30, 200, {'pose', 'context', 'video'})],
}


@pytest.mark.parametrize('row', sorted(TABLE1_STAGES))
def test_table1_rows_resolve_to_their_branches(row):
  c = importlib.import_module('configs.table1').get_config(row)
  stages = schedule.resolve_stages(c, 200, steps_per_epoch=1)  # 200 epochs of one step: epochs read as steps
  assert [(s.name, s.start, s.end, set(s.losses)) for s in stages] == TABLE1_STAGES[row]
  assert c.experiment.pretrain
  assert importlib.import_module('configs.table1').get_config('scratch').experiment.pretrain is False
