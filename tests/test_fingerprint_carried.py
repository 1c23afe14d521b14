"""The training dataset's fingerprint travels with the networks: checkpoint -> export meta -> report.md, and a
downstream run on data prepared otherwise warns in one line; datasets and exports without one stay silent."""
import json
import os

import numpy as np
from ml_collections import ConfigDict

import pretrain_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
from csvr_jax import checkpoint
from csvr_jax import parallel
from csvr_jax import report
from csvr_jax.train import backbone_init
from csvr_jax.train import networks
from data_prep import builder
from data_prep import dataset_fingerprint as dfp


def _fingerprinted(root, name, **options):
  """A dataset version folder <root>/<name>/1.0.0 holding the fingerprint data_prep.build would write for a build
  with `options` (the records themselves play no part here)."""
  spec = builder.BuildSpec(layout='folder', videos_dir='/v', annotations='', out_dir=str(root), name=name,
                           poses='openpose:/p', **options)
  folder = os.path.join(root, name, '1.0.0')
  os.makedirs(folder)
  fp = dfp.make_fingerprint(spec, ['a', 'b'], {'train': 2}, {'train': ['a/1', 'b/2']}, {})
  dfp.write_fingerprint(folder, fp)
  return folder, fp


def _state(mesh):
  tree = {'params': {'vnet': {'w': np.ones((2, 3), np.float32)}, 'pose_g': {'b': np.ones(2, np.float32)},
                     'integration': {'c': np.zeros(2, np.float32)}},
          'batch_stats': {'vnet': {'mean': np.zeros(3, np.float32)}}, 'step': np.int32(4)}
  return parallel.replicate(tree, mesh)


def test_checkpoints_and_exports_carry_the_training_datasets_fingerprint(tmp_path):
  k400, fp = _fingerprinted(tmp_path, 'k400')
  mesh = parallel.make_mesh(ConfigDict(dict(mesh=(('data', -1),))))
  c = fx.tiny_config(k400)
  ckpt = checkpoint.TrainCheckpointer(str(tmp_path / 'run'), keep=2)
  ckpt.save(4, _state(mesh), config=c)
  ckpt.close()
  saved = checkpoint.read_checkpoint_dataset(str(tmp_path / 'run'), 4)
  assert saved == {'name': 'k400', 'dir': os.path.abspath(k400), 'fingerprint': fp}
  assert json.load(open(tmp_path / 'run' / 'checkpoints' / '4' / 'dataset' / 'metadata'))['fingerprint'] == fp

  # --mode=export takes the dataset from the checkpoint, not from the config it is given.
  c.data.dataset_dir = str(tmp_path / 'elsewhere')
  meta = checkpoint.read_export_meta(checkpoint.export_mode(c, str(tmp_path / 'run')))
  assert meta['dataset'] == 'k400' and meta['dataset_fingerprint'] == fp and meta['step'] == 4

  # A checkpoint saved without its dataset (as before dataset records existed): the config's name, fingerprint
  # unknown.
  ckpt = checkpoint.TrainCheckpointer(str(tmp_path / 'old'), keep=1)
  ckpt.save(2, _state(mesh))
  ckpt.close()
  assert checkpoint.read_checkpoint_dataset(str(tmp_path / 'old'), 2) is None
  meta = checkpoint.read_export_meta(checkpoint.export_mode(c, str(tmp_path / 'old')))
  assert meta['dataset'] == 'elsewhere' and meta['dataset_fingerprint'] is None


def _export(tmp_path, c, step):
  """An export of the tiny networks (numpy-filled variables) written from memory, as the demo does."""
  variables = fx.fast_init(networks.Networks(c))(None)
  export_dir = str(tmp_path / f'export_{step}')
  checkpoint.write_export(export_dir, c, {n: v['params'] for n, v in variables.items()},
                          {n: v.get('batch_stats', {}) for n, v in variables.items()}, step, 'test')
  return export_dir


def test_downstream_warns_in_one_line_when_the_preprocessing_differs(tmp_path, capsys):
  k400, fp = _fingerprinted(tmp_path, 'k400', short_side=128, jpeg_quality=90)
  c = fx.tiny_config(k400)
  pretrained, scratch = _export(tmp_path, c, 4), _export(tmp_path, c, None)
  assert checkpoint.read_export_meta(pretrained)['dataset_fingerprint'] == fp
  assert 'dataset' not in checkpoint.read_export_meta(scratch)  # a random initialisation saw no data
  ucf, _ = _fingerprinted(tmp_path, 'ucf101', short_side=160, jpeg_quality=75)
  same, _ = _fingerprinted(tmp_path, 'hmdb51', short_side=128, jpeg_quality=90)
  without = str(tmp_path / 'no_fingerprint')
  os.makedirs(without)
  capsys.readouterr()

  def printed(init_from, dataset_dir, features='vnet'):
    c.checkpoint.init_from, c.data.dataset_dir, c.finetune.features = init_from, dataset_dir, features
    backbone_init.load_downstream(c)
    return capsys.readouterr().out.splitlines()

  want = ['warning: the backbone was pretrained on k400 under other preprocessing than ucf101 (pretraining vs '
          'now): short side 128 vs 160; JPEG quality 90 vs 75']
  assert printed(pretrained, ucf) == want
  assert printed(pretrained, ucf, features='fd') == want  # the pose branch alone reads the meta too
  assert printed(pretrained, same) == []
  assert printed(pretrained, without) == []  # an evaluation dataset without a fingerprint: nothing to compare
  assert printed(scratch, ucf) == []
  old_meta = {k: v for k, v in checkpoint.read_export_meta(pretrained).items() if not k.startswith('dataset')}
  assert checkpoint.preprocessing_warning(old_meta, ucf) is None  # an export from before fingerprints
  assert checkpoint.preprocessing_warning({'source': 'torchvision', 'step': None}, ucf) is None


def test_report_shows_each_runs_pretraining_preprocessing(tmp_path):
  k400, fp = _fingerprinted(tmp_path, 'k400')
  ucf, _ = _fingerprinted(tmp_path, 'ucf101', short_side=160)
  c = fx.tiny_config(ucf)
  meta = {'arch': 'r3d_18', 'source': 'CSVR', 'step': 4, 'dataset': 'k400', 'dataset_fingerprint': fp}
  workdir = str(tmp_path / 'eval')
  report.update_results(workdir, report.describe_run(c, meta), {'finetune/top1': 0.5})
  report.update_results(workdir, report.describe_run(c, None), {'finetune/top1': 0.3})
  old = {k: v for k, v in meta.items() if k != 'dataset_fingerprint'}  # exported before fingerprints
  c.eval.method_name = 'Old CSVR'
  report.update_results(workdir, report.describe_run(c, old), {'finetune/top1': 0.4})
  runs = report.load_results(workdir)['runs']
  assert runs[0]['pretrain_preprocessing'] == {'short_side': 128, 'jpeg_quality': 90,
                                               'gop_policy': 'mpeg4 re-encode, fixed GOP 12 (CoViAR)',
                                               'pose_source': 'openpose'}
  assert runs[0]['preprocessing_differences'] == ['short side 128 vs 160']
  md = open(report.write_report(workdir)[0]).read()
  assert ('- CSVR (R3D-18, step 4): pretrained on k400, short side 128, JPEG quality 90, GOP policy mpeg4 '
          're-encode, fixed GOP 12 (CoViAR), pose source openpose; differs from ucf101: short side 128 vs 160'
          in md.splitlines())
  assert '- Random init (R3D-18): not pretrained' in md.splitlines()
  assert '- Old CSVR (R3D-18, step 4): pretrained on k400, preprocessing unknown' in md.splitlines()
  # results.json from before these keys still merges and reports.
  report.update_results(str(tmp_path / 'older'), {k: runs[0][k] for k in report.DESCRIPTION_KEYS},
                        {'finetune/top1': 0.5})
  assert 'preprocessing unknown' in open(report.write_report(str(tmp_path / 'older'))[0]).read()
