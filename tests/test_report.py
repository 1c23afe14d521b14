"""Report generation: results.json -> report.md table in the paper's format + per-class and Table II PNGs."""
import json
import os

import numpy as np
from PIL import Image

from configs import base
from csvr_jax import report


def _run(method, step, epochs=None, init_from='x', dataset='ucf101'):
  return {'method': method, 'backbone': 'r3d_18', 'pretrain_data': 'UCF101', 'epochs': epochs,
          'pretrain_step': step, 'resolution': 112, 'clip_len': 16, 'dataset': dataset, 'init_from': init_from,
          'pretext': {}}


def _pretext(i):
  return {'context/top1': 0.3 + 0.1 * i, 'context/chance': 0.0625, 'pose/mse_x100': 0.3 / (i + 1),
          'pose/repeat_last_mse_x100': 0.5, 'pose/other': 1.5, 'video_rec/inception_score': None,
          'video_rec/real_inception_score': None}


def _fill(workdir):
  classes = [f'class_{i}' for i in range(7)]
  for i, epoch in enumerate((1, 5, 10)):
    run = _run('CSVR', step=100 * epoch, epochs=epoch, init_from=f'runs/ep{epoch}')
    # An export of step s carries the pretext metrics of the steps <= s (here only its own step).
    run['pretext'] = {str(100 * epoch): _pretext(i)}
    run['pretext_notes'] = {'video_rec/inception_score': 'absent: no IS classifier'}
    report.update_results(workdir, run, {'finetune/top1': 0.6 + 0.1 * i, 'finetune/top5': 0.9})
  run = _run('CSVR', step=1000, epochs=10, init_from='runs/ep10')
  report.update_results(workdir, run, {'retrieval/R@1': 0.5, 'retrieval/R@5': 0.7},
                        per_class={'finetune': {c: (i + 1) / 8 for i, c in enumerate(classes)}})
  scratch = _run('Random init', step=None, init_from='')
  report.update_results(workdir, scratch, {'finetune/top1': 0.4, 'linear_probe/top1': float('nan')},
                        per_class={'finetune': {c: 0.3 if i % 2 else None for i, c in enumerate(classes)}})


def _assert_real_plot(path, min_size=(300, 200)):
  img = np.asarray(Image.open(path).convert('RGB'), np.float32)
  assert img.shape[1] >= min_size[0] and img.shape[0] >= min_size[1]
  # Not blank: many distinct colours and a non-trivial share of non-white pixels.
  assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20
  assert np.mean(img.min(axis=2) < 200) > 0.01


def test_results_merge_by_identity(tmp_path):
  workdir = str(tmp_path)
  _fill(workdir)
  runs = report.load_results(workdir)['runs']
  assert len(runs) == 4  # three CSVR checkpoints + random init; the second ep10 call merged
  ep10 = [r for r in runs if r['init_from'] == 'runs/ep10'][0]
  assert ep10['metrics']['finetune/top1'] == 0.8 and ep10['metrics']['retrieval/R@1'] == 0.5
  assert ep10['pretext']['1000']['context/top1'] == 0.5  # kept from the first call
  # 'pretext' merges per step: new steps are added, a step's metrics update.
  run = dict(_run('CSVR', step=1000, epochs=10, init_from='runs/ep10'), pretext={'1000': {'pose/other': 2.0},
                                                                               '1200': {'pose/other': 3.0}})
  ep10 = report.update_results(workdir, run)
  assert ep10['pretext']['1000']['context/top1'] == 0.5 and ep10['pretext']['1000']['pose/other'] == 2.0
  assert ep10['pretext']['1200'] == {'pose/other': 3.0}
  scratch = [r for r in runs if r['method'] == 'Random init'][0]
  assert scratch['metrics']['linear_probe/top1'] is None  # NaN stored as JSON null
  json.load(open(os.path.join(workdir, 'results.json')))


def test_write_report_table_and_pngs(tmp_path):
  workdir = str(tmp_path)
  _fill(workdir)
  paths = report.write_report(workdir)
  md = open(os.path.join(workdir, 'report.md')).read()
  assert ('| Method | Backbone | Pretrain data | Epochs | Resolution | Clip length | Top-1 | Top-5 | '
          'R@1 | R@5 |') in md
  assert '| CSVR | R3D-18 | UCF101 | 10 | 112×112 | 16 | 80.0 | 90.0 | 50.0 | 70.0 |' in md
  assert '| Random init | R3D-18 | UCF101 | - | 112×112 | 16 | 40.0 | - | - | - |' in md
  # Table II layout: metrics as rows with their baseline, pretraining steps (epochs) as columns.
  assert '| Pretraining step (epoch) | Baseline | 100 (1) | 500 (5) | 1000 (10) |' in md
  assert '| Context matching top-1 (%) | 6.2 (chance, 1/batch) | 30.0 | 40.0 | 50.0 |' in md
  assert '| Pose prediction MSE ×100 | 0.5 (last observed pose repeated) | 0.3 | 0.15 | 0.1 |' in md
  assert '| Reconstruction Inception Score | - (real clips) | - | - | - |' in md
  assert '| pose/other |  | 1.5 | 1.5 | 1.5 |' in md  # a metric without a known baseline
  assert '| finetune/top1 (%), ucf101 |  | 60.0 | 70.0 | 80.0 |' in md
  assert '* video_rec/inception_score: absent: no IS classifier' in md
  pngs = [p for p in paths if p.endswith('.png')]
  assert sorted(os.path.basename(p) for p in pngs) == ['per_class_ucf101.png', 'pretext_vs_downstream_csvr_r3d_18.png']
  for p in pngs:
    assert os.path.basename(p) in md
    _assert_real_plot(p)


def test_no_curve_with_a_single_checkpoint(tmp_path):
  workdir = str(tmp_path)
  report.update_results(workdir, _run('CSVR', step=5), {'linear_probe/top1': 0.5})
  paths = report.write_report(workdir)
  assert [os.path.basename(p) for p in paths] == ['report.md']  # no per-class data, no curve
  assert '| CSVR | R3D-18 | UCF101 | step 5 |' in open(paths[0]).read()


def test_describe_run_from_config_and_meta():
  c = base.get_config()
  c.data.dataset_dir = 'data/hmdb51/'
  assert report.describe_run(c, None)['method'] == 'Random init'
  meta = {'arch': 'r2plus1d_18', 'source': 'csvr', 'step': 7, 'epochs': 3, 'dataset': 'K400'}
  run = report.describe_run(c, meta)
  assert (run['dataset'], run['backbone'], run['epochs'], run['pretrain_data']) == ('hmdb51', 'r2plus1d_18', 3,
                                                                                      'K400')
  c.eval.method_name = 'CSVR (context only)'
  assert report.describe_run(c, meta)['method'] == 'CSVR (context only)'


def test_dataset_name():
  assert report.dataset_name('data/ucf101/') == 'ucf101'
  assert report.dataset_name('/tmp/x/synth_actions/1.0.0') == 'synth_actions'
  assert report.dataset_name('') == '-'


def test_pretraining_run_and_pretext_meta(tmp_path):
  """A pretraining workdir's own entry: pretext only, kept out of the downstream table; an export of step s gets
  the steps <= s."""
  c = base.get_config()
  c.data.dataset_dir = 'data/ucf101'
  run = report.pretraining_run(c)
  assert (run['method'], run['dataset'], run['pretrain_step'], run['init_from']) == ('CSVR', 'ucf101', None, '')
  c.loss.branches = ('context',)
  assert report.pretraining_run(c)['method'] == 'CSVR (context)'
  c.eval.method_name = 'Context only'
  assert report.pretraining_run(c)['method'] == 'Context only'
  workdir = str(tmp_path)
  assert report.pretext_meta(workdir, 10) == {}
  for step in (5, 10, 15):
    run = dict(report.pretraining_run(c), pretext={str(step): {'context/top1': step / 100, 'context/chance': 0.1}},
               pretext_notes={'video_rec/inception_score': 'absent'})
    report.update_results(workdir, run)
  meta = report.pretext_meta(workdir, 10)
  assert meta == {'pretext': {'5': {'context/top1': 0.05, 'context/chance': 0.1},
                              '10': {'context/top1': 0.1, 'context/chance': 0.1}},
                  'pretext_notes': {'video_rec/inception_score': 'absent'}}
  paths = report.write_report(workdir)
  md = open(paths[0]).read()
  assert '| Method |' not in md  # no downstream results: no downstream table
  assert '## Context only R3D-18: pretext tasks and downstream (Table II)' in md
  assert '| Context matching top-1 (%) | 10.0 (chance, 1/batch) | 5.0 | 10.0 | 15.0 |' in md
  _assert_real_plot(paths[1])
