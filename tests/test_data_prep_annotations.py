"""Annotation parsers for the five layouts, on small fixtures written in the official formats."""
import json

import pytest

from data_prep import annotations


def _touch(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b'')


def test_ucf101(tmp_path):
  ann = tmp_path / 'ucfTrainTestlist'
  ann.mkdir()
  # Official files use CRLF line ends and spell the folder HandstandPushups, the file HandStandPushups.
  (ann / 'classInd.txt').write_bytes(b'1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n')
  (ann / 'trainlist01.txt').write_bytes(b'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n'
                                        b'HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n')
  (ann / 'testlist01.txt').write_bytes(b'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n'
                                       b'HandStandPushups/v_HandStandPushups_g01_c02.avi\r\n')
  (ann / 'testlist02.txt').write_text('ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi\n')
  names, splits = annotations.parse('ucf101', str(ann), str(tmp_path))
  assert names == ['ApplyEyeMakeup', 'HandstandPushups']
  assert splits['train'] == [('ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi', 0),
                             ('HandstandPushups/v_HandStandPushups_g08_c01.avi', 1)]
  assert splits['test'] == [('ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi', 0),
                            ('HandStandPushups/v_HandStandPushups_g01_c02.avi', 1)]
  with pytest.raises(annotations.AnnotationError, match='trainlist02.txt'):
    annotations.parse('ucf101', str(ann), str(tmp_path), split=2)


def test_hmdb51(tmp_path):
  ann = tmp_path / 'splits'
  ann.mkdir()
  (ann / 'brush_hair_test_split1.txt').write_text(
      'April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \n'
      'Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \n')
  (ann / 'cartwheel_test_split1.txt').write_text('Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 2 \n')
  (ann / 'cartwheel_test_split2.txt').write_text('Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 1 \n')
  names, splits = annotations.parse('hmdb51', str(ann), str(tmp_path))
  assert names == ['brush_hair', 'cartwheel']
  assert splits['train'] == [('brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi', 0)]
  assert splits['test'] == [('brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi', 0),
                            ('cartwheel/Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi', 1)]
  _, splits2 = annotations.parse('hmdb51', str(ann), str(tmp_path), split=2)
  assert splits2['train'] == [('cartwheel/Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi', 0)]


def test_kinetics(tmp_path):
  videos = tmp_path / 'videos'
  _touch(videos / 'train' / 'abseiling' / '--33Lscn6sk_000004_000014.mp4')
  _touch(videos / 'val' / 'air drumming' / '-VtLx-mcPds.mp4')  # mirrors that name files by id only
  ann = tmp_path / 'kinetics400'
  ann.mkdir()
  (ann / 'train.csv').write_text('label,youtube_id,time_start,time_end,split\n'
                                 'abseiling,--33Lscn6sk,4,14,train\n'
                                 '"air drumming",---QUuC4vJs,3,13,train\n')
  (ann / 'validate.csv').write_text('label,youtube_id,time_start,time_end,split,is_cc\n'
                                    '"air drumming",-VtLx-mcPds,14,24,validate,0\n')
  (ann / 'test.csv').write_text('youtube_id,time_start,time_end,split\n--0cE3hXnKw,0,10,test\n')
  names, splits = annotations.parse('kinetics', str(ann), str(videos))
  assert names == ['abseiling', 'air drumming']
  assert splits['train'] == [('train/abseiling/--33Lscn6sk_000004_000014.mp4', 0),
                             ('---QUuC4vJs_000003_000013.mp4', 1)]  # not on disk: mirror name, reported later
  assert splits['validation'] == [('val/air drumming/-VtLx-mcPds.mp4', 1)]
  assert 'test' not in splits  # unlabelled rows are left out
  names1, _ = annotations.parse('kinetics', str(ann / 'train.csv'), str(videos))
  assert names1 == names


def test_ssv2(tmp_path):
  ann = tmp_path / 'labels'
  ann.mkdir()
  (ann / 'labels.json').write_text(json.dumps({'Approaching something with your camera': '0',
                                               'Putting something on a surface': '1'}))
  (ann / 'something-something-v2-train.json').write_text(json.dumps([
      {'id': '78687', 'label': 'putting a pen on a table', 'template': 'Putting [something] on a surface',
       'placeholders': ['a pen']},
      {'id': '42326', 'label': 'approaching door with your camera',
       'template': 'Approaching [something] with your camera', 'placeholders': ['door']}]))
  (ann / 'something-something-v2-validation.json').write_text(json.dumps([
      {'id': '1', 'label': 'x', 'template': 'Putting [something] on a surface', 'placeholders': ['x']}]))
  _touch(tmp_path / 'videos' / '78687.webm')
  names, splits = annotations.parse('ssv2', str(ann), str(tmp_path / 'videos'))
  assert names == ['Approaching something with your camera', 'Putting something on a surface']
  assert splits['train'] == [('78687.webm', 1), ('42326.webm', 0)]
  assert splits['validation'] == [('1.webm', 1)]
  (ann / 'something-something-v2-validation.json').write_text('[{"id": "1"}]')
  with pytest.raises(annotations.AnnotationError, match='validation.json'):
    annotations.parse('ssv2', str(ann), str(tmp_path / 'videos'))


def test_folder_ratio_and_list(tmp_path):
  videos = tmp_path / 'videos'
  for cls in ('b_cls', 'a_cls'):
    for i in range(10):
      _touch(videos / cls / f'{i}.mp4')
  names, splits = annotations.parse('folder', '', str(videos), test_ratio=0.3, seed=1)
  assert names == ['a_cls', 'b_cls']
  assert len(splits['test']) == 6 and len(splits['train']) == 14
  assert sum(label == 1 for _, label in splits['test']) == 3
  assert annotations.parse('folder', '', str(videos), test_ratio=0.3, seed=1) == (names, splits)  # seeded
  assert annotations.parse('folder', '', str(videos), test_ratio=0.3, seed=2)[1] != splits
  split_list = tmp_path / 'split.txt'
  split_list.write_text('a_cls/0.mp4 train\nb_cls/3.mp4 test\nb_cls/4.mp4 val\n')
  _, listed = annotations.parse('folder', str(split_list), str(videos))
  assert listed == {'train': [('a_cls/0.mp4', 0)], 'test': [('b_cls/3.mp4', 1)], 'val': [('b_cls/4.mp4', 1)]}
  split_list.write_text('c_cls/0.mp4 train\n')
  with pytest.raises(annotations.AnnotationError, match='split.txt'):
    annotations.parse('folder', str(split_list), str(videos))


def test_unknown_layout():
  with pytest.raises(annotations.AnnotationError, match='--layout'):
    annotations.parse('youtube8m', '', '')
