"""--mode=experiment: one Table I row end to end at demo scale (pretrain -> export -> finetune from the row's
features), and the config checks of its downstream entries."""
import json
import os

import pytest

from configs import table1
from csvr_jax import experiment
import pretrain_fixtures as fx  # tests/ is on sys.path


@pytest.fixture(scope='module')
def toy_dir(tmp_path_factory):
  return fx.write_toy_dataset(tmp_path_factory.mktemp('toy'))


def _row(row, dataset_dir):
  c = table1.get_config(f'{row},smoke')
  c.data.dataset_dir = dataset_dir
  c.experiment.downstream = {'ucf101': c.experiment.downstream.ucf101}  # one downstream run is enough here
  c.logging.progress_bar = False
  c.evals.pretext.every_steps = 0
  return c


def test_table1_pose_row_pretrains_the_pose_branch_and_finetunes_f_d(toy_dir, tmp_path):
  workdir = str(tmp_path)
  experiment.run(_row('fd', toy_dir), workdir)
  runs = json.load(open(os.path.join(workdir, 'results.json')))['runs']
  assert [r['method'] for r in runs] == ['Pose branch (f_d)']
  assert 0.0 <= runs[0]['metrics']['finetune/top1'] <= 1.0 and runs[0]['pretrain_step'] == 4
  meta = json.load(open(os.path.join(workdir, 'pretrain_pose_branch', 'export', 'meta.json')))
  assert meta['branches']['pose_g']['encoder_layers'] == 6
  cfg = json.load(open(os.path.join(workdir, 'pretrain_pose_branch', 'checkpoints', '4', 'config', 'metadata')))
  assert tuple(cfg['loss']['branches']) == ('pose',)
  assert os.path.isdir(os.path.join(workdir, 'eval_pose_branch_ucf101_fd'))


def test_scratch_row_evaluates_a_random_initialisation(toy_dir, tmp_path):
  workdir = str(tmp_path)
  experiment.run(_row('scratch', toy_dir), workdir)
  runs = json.load(open(os.path.join(workdir, 'results.json')))['runs']
  assert [r['method'] for r in runs] == ['Training from scratch'] and runs[0]['pretrain_step'] is None
  assert not os.path.exists(os.path.join(workdir, 'pretrain_training_from_scratch'))


def test_downstream_entries_are_checked():
  c = table1.get_config('fd,smoke')
  with pytest.raises(ValueError, match="config.experiment.downstream: unknown key 'lr'"):
    experiment.downstream_config(c, 'x', 'm', 'fd', {'lr': 0.1})
