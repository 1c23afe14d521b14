"""Annotation and pose files as other projects wrote them (shared/realformats, SOURCES.md there): parsed and
built as shipped. Videos the annotation files list are not in the store: a few tiny ones are written under the
listed names, the rest are reported missing."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

import data_prep_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
from csvr_jax.data import records
from data_prep import annotations
from data_prep import builder
from data_prep import poses


@pytest.fixture(scope='module')
def real():
  return fx.realformats_dir()


def _build(tmp_path, name, **kw):
  spec = builder.BuildSpec(out_dir=str(tmp_path / 'out'), name=name, short_side=32, shard_size=8192, **kw)
  return builder.build(spec)


def _ids_labels(dataset_dir, split):
  src = records.open_split(dataset_dir, split)
  return [(src[i]['video_id'].decode(), int(src[i]['label'])) for i in range(len(src))]


# ------------------------------------------------------------------------------------------------ annotations

def test_ucf101_official_lists(real, tmp_path):
  ann = os.path.join(real, 'ucf101', 'ucfTrainTestlist')
  want = {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}  # SOURCES.md line counts
  for split, (n_train, n_test) in want.items():
    names, splits = annotations.parse('ucf101', ann, '', split)
    assert len(names) == 101 and (len(splits['train']), len(splits['test'])) == (n_train, n_test)
  assert names[36] == 'HandstandPushups'  # classInd "37 HandstandPushups\r\n": CRLF stripped
  # Train lists give the label as a number; it must agree with the class folder for every line.
  for line in open(os.path.join(ann, 'trainlist01.txt'), newline=''):
    assert line.endswith('\r\n')
  labels = dict(annotations.parse('ucf101', ann, '', 1)[1]['train'])
  for line in open(os.path.join(ann, 'trainlist01.txt')).read().split('\n'):
    if line.strip():
      rel, index = line.split()
      assert labels[rel] == int(index) - 1
  test = dict(annotations.parse('ucf101', ann, '', 1)[1]['test'])
  assert test['HandstandPushups/v_HandStandPushups_g01_c01.avi'] == 36


def test_hmdb51_official_splits(real):
  ann = os.path.join(real, 'hmdb51', 'testTrainMulti_7030_splits')
  for split in (1, 2, 3):
    names, splits = annotations.parse('hmdb51', ann, '', split)
    assert len(names) == 51 and names == sorted(names)
    assert (len(splits['train']), len(splits['test'])) == (3570, 1530)
  # The official files end each line with a space and mark unused videos with 0: 1,666 per split.
  path = os.path.join(ann, 'brush_hair_test_split1.txt')
  lines = open(path).read().splitlines()
  assert all(line.endswith(' ') for line in lines)
  marks = [line.split()[1] for line in lines]
  _, splits = annotations.parse('hmdb51', ann, '', 1)
  listed = {rel for entries in splits.values() for rel, _ in entries if rel.startswith('brush_hair/')}
  assert len(listed) == marks.count('1') + marks.count('2') and marks.count('0') > 0
  unused = sum(line.split()[1] == '0' for n in os.listdir(ann) if n.endswith('_split1.txt')
               for line in open(os.path.join(ann, n)).read().splitlines())
  assert unused == 1666


def test_kinetics_csvs(real, tmp_path):
  folder = os.path.join(real, 'kinetics400')
  names, splits = annotations.parse('kinetics', folder, str(tmp_path))  # val CSV + test CSV without labels
  assert set(splits) == {'validation'} and len(splits['validation']) == 19906
  assert names == open(os.path.join(folder, 'label_name.txt')).read().split('\n')[:400]  # ST-GCN's order
  assert 'air drumming' in names  # quoted in the CSV
  names_val, splits_val = annotations.parse('kinetics', os.path.join(folder, 'kinetics-400_val.csv'),
                                            str(tmp_path))
  assert names_val == names and splits_val == splits
  with pytest.raises(annotations.AnnotationError, match='no labelled videos'):
    annotations.parse('kinetics', os.path.join(folder, 'kinetics-400_test.csv'), str(tmp_path))


def _ssv2_current_release(real, folder, train_items=40):
  """The current release's names; its train.json made from validation items (the store has none)."""
  os.makedirs(folder)
  src = os.path.join(real, 'ssv2')
  shutil.copy(os.path.join(src, 'something-something-v2-labels.json'), os.path.join(folder, 'labels.json'))
  shutil.copy(os.path.join(src, 'something-something-v2-validation.json'), os.path.join(folder, 'validation.json'))
  items = json.load(open(os.path.join(src, 'something-something-v2-validation.json')))[-train_items:]
  with open(os.path.join(folder, 'train.json'), 'w') as f:
    json.dump([dict(item, id=str(100000000 + int(item['id']))) for item in items], f)
  return items


def test_ssv2_both_release_namings(real, tmp_path):
  labels = json.load(open(os.path.join(real, 'ssv2', 'something-something-v2-labels.json')))
  items = json.load(open(os.path.join(real, 'ssv2', 'something-something-v2-validation.json')))
  names, splits = annotations.parse('ssv2', os.path.join(real, 'ssv2'), str(tmp_path))  # 20BN names, no train
  assert len(names) == 174 and set(splits) == {'validation'} and len(splits['validation']) == 24777
  want = [(f'{item["id"]}.webm', int(labels[item['template'].replace('[', '').replace(']', '')])) for item in items]
  assert splits['validation'] == want
  current = tmp_path / 'current'
  train_items = _ssv2_current_release(real, str(current))
  names2, splits2 = annotations.parse('ssv2', str(current), str(tmp_path))
  assert names2 == names and splits2['validation'] == want and len(splits2['train']) == len(train_items)
  shutil.copy(current / 'labels.json', current / 'something-something-v2-labels.json')
  with pytest.raises(annotations.AnnotationError, match='both labels.json and something-something-v2-labels'):
    annotations.parse('ssv2', str(current), str(tmp_path))


# ------------------------------------------------------------------------------------------------ poses

def test_openpose_coco18_equals_kinetics_skeleton_numbered_from_0(real):
  # ST-GCN's packer wrote clean_and_jerk.json (frame_index 0..299, pose = pixel / (340, 256)) from these files.
  op = os.path.join(real, 'openpose')
  a, src_a = poses.load_poses('openpose', op, 'coco18_clean_and_jerk.mp4', 300, 340, 256)
  b, src_b = poses.load_poses('kinetics_skeleton', os.path.join(real, 'kinetics_skeleton'), 'clean_and_jerk.mp4',
                              300, 340, 256)
  assert (src_a, src_b) == ('openpose', 'kinetics_skeleton')
  np.testing.assert_array_equal(a, b)
  raw = json.load(open(os.path.join(op, 'coco18_clean_and_jerk', 'clean_and_jerk_000000000123_keypoints.json')))
  kp = np.array(raw['people'][0]['pose_keypoints_2d']).reshape(18, 3)
  seen = kp[:, 2] > 0
  np.testing.assert_allclose(a[123][seen, :2].astype(float), kp[seen, :2] / [340, 256], atol=5e-4)
  np.testing.assert_allclose(a[123][:, 2].astype(float), kp[:, 2], atol=5e-4)


def test_kinetics_skeleton_numbered_from_1_and_empty(real, tmp_path):
  src = os.path.join(real, 'kinetics_skeleton')
  data = json.load(open(os.path.join(src, 'clean_and_jerk.json')))
  assert min(e['frame_index'] for e in data['data']) == 0
  for e in data['data']:  # the released data set's numbering
    e['frame_index'] += 1
  (tmp_path / 'clean_and_jerk.json').write_text(json.dumps(data))
  from_1, _ = poses.load_poses('kinetics_skeleton', str(tmp_path), 'clean_and_jerk.mp4', 300, 340, 256)
  from_0, _ = poses.load_poses('kinetics_skeleton', src, 'clean_and_jerk.mp4', 300, 340, 256)
  np.testing.assert_array_equal(from_1, from_0)
  assert poses.has_person(from_0)
  empty, source = poses.load_poses('kinetics_skeleton', src, 'ta_chi.mp4', 300, 340, 256)  # "data": []
  assert source == 'kinetics_skeleton' and not poses.has_person(empty) and empty.shape == (300, 18, 3)
  assert poses.pose_file_status('kinetics_skeleton', src, 'ta_chi.mp4') == 'empty'
  assert poses.pose_file_status('kinetics_skeleton', src, 'clean_and_jerk.mp4') == 'ok'


def test_openpose_pre_1_2_key(real, tmp_path):
  # No pre-1.2 file is in the store: the real files with the key renamed as OpenPose < 1.2 named it.
  src = os.path.join(real, 'openpose', 'coco18_clean_and_jerk')
  old = tmp_path / 'clean_and_jerk'
  old.mkdir()
  for name in sorted(os.listdir(src)):
    if name.endswith('_keypoints.json'):
      text = open(os.path.join(src, name)).read()
      assert text.count('"pose_keypoints_2d"') == text.count('"person_id"')
      (old / name).write_text(text.replace('"pose_keypoints_2d"', '"pose_keypoints"'))
  got, _ = poses.load_poses('openpose', str(tmp_path), 'clean_and_jerk.mp4', 300, 340, 256)
  want, _ = poses.load_poses('openpose', os.path.dirname(src), 'coco18_clean_and_jerk.mp4', 300, 340, 256)
  np.testing.assert_array_equal(got, want)


def _check_track(frames_people, track):
  """The track starts at the most confident detection and then, frame by frame, keeps the person nearest to
  the previous tracked centre (checked against the raw people of each frame)."""
  centre = lambda p: (p[:, :2] * p[:, 2:]).sum(0) / p[:, 2].sum()
  scored = [(p[:, 2].mean(), t, i) for t, people in enumerate(frames_people) for i, p in enumerate(people)
            if p[:, 2].sum() > 0]
  _, t0, i0 = max(scored, key=lambda s: (s[0], -s[1], -s[2]))
  np.testing.assert_array_equal(track[t0], frames_people[t0][i0])
  for order in (range(t0 + 1, len(track)), range(t0 - 1, -1, -1)):
    last = centre(track[t0])
    for t in order:
      people = [p for p in frames_people[t] if p[:, 2].sum() > 0]
      if not people:
        assert not track[t].any()
        continue
      dists = [np.sum((centre(p) - last) ** 2) for p in people]
      np.testing.assert_array_equal(track[t], people[int(np.argmin(dists))])
      last = centre(track[t])


def test_openpose_multi_person_coco18_and_body25(real, tmp_path):
  op = os.path.join(real, 'openpose')
  swimming = poses.read_openpose_video(op, 'coco18_swimming.mp4')  # 0 to 4 people a frame
  assert len(swimming) == 96 and max(map(len, swimming)) >= 2 and min(map(len, swimming)) == 0
  _check_track(swimming, poses.track_person(swimming))
  # The same frames through ST-GCN's packer (normalised by 960x540; the store has the OpenPose files of its
  # first 96 frames only) track to the same person.
  data = json.load(open(os.path.join(real, 'kinetics_skeleton', 'swimming.json')))
  data['data'] = [e for e in data['data'] if e['frame_index'] < 96]
  (tmp_path / 'swimming.json').write_text(json.dumps(data))
  a, _ = poses.load_poses('openpose', op, 'coco18_swimming.mp4', 96, 960, 540)
  b, _ = poses.load_poses('kinetics_skeleton', str(tmp_path), 'swimming.mp4', 96, 960, 540)
  np.testing.assert_array_equal(a, b)
  badminton = poses.read_openpose_video(op, 'body25_badminton.mp4')  # BODY-25, 9-12 people a frame
  assert len(badminton) == 16 and min(map(len, badminton)) >= 7
  raw = json.load(open(os.path.join(op, 'body25_badminton', 'video_000000000003_keypoints.json')))
  for person, got in zip(raw['people'], badminton[3]):
    body25 = np.array(person['pose_keypoints_2d']).reshape(25, 3)
    np.testing.assert_allclose(got, np.delete(body25, [8, 19, 20, 21, 22, 23, 24], axis=0), atol=1e-4)
  track = poses.track_person(badminton)
  _check_track(badminton, track)
  assert poses.normalise(track, 1920, 1080)[..., :2].max() <= 1


# ------------------------------------------------------------------------------------------------ builds

def test_ssv2_builds_as_shipped_both_namings(real, tmp_path):
  items = json.load(open(os.path.join(real, 'ssv2', 'something-something-v2-validation.json')))
  labels = json.load(open(os.path.join(real, 'ssv2', 'something-something-v2-labels.json')))
  videos = tmp_path / 'videos'
  for k, item in enumerate(items[:2]):
    fx.write_webm(str(videos / f'{item["id"]}.webm'), num_frames=6, seed=k)
  s = _build(tmp_path, 'ssv2_20bn', layout='ssv2', videos_dir=str(videos), annotations=os.path.join(real, 'ssv2'))
  assert s['coverage']['validation']['listed'] == 24777 and s['videos_ok'] == 2
  want = [(f'{it["id"]}.webm', int(labels[it['template'].replace('[', '').replace(']', '')])) for it in items[:2]]
  assert _ids_labels(s['dataset_dir'], 'validation') == want
  current = tmp_path / 'current'
  train_items = _ssv2_current_release(real, str(current), train_items=40)
  fx.write_webm(str(videos / f'{100000000 + int(train_items[0]["id"])}.webm'), num_frames=6, seed=5)
  s2 = _build(tmp_path, 'ssv2_current', layout='ssv2', videos_dir=str(videos), annotations=str(current))
  assert s2['videos_per_split'] == {'train': 1, 'validation': 2} and s2['coverage']['train']['listed'] == 40


def test_kinetics_ucf101_hmdb51_build_as_shipped(real, tmp_path):
  rows = [r for r in csv.reader(open(os.path.join(real, 'kinetics400', 'kinetics-400_val.csv')))
          if r[0] == 'air drumming'][:2]
  for k, (_, yid, start, end, _, _) in enumerate(rows):  # a mirror's layout: <split>/<label>/<id>_<s>_<e>.mp4
    fx.write_video(str(tmp_path / 'k400' / 'val' / 'air drumming' / f'{yid}_{int(start):06d}_{int(end):06d}.mp4'),
                   num_frames=6, seed=k)
  s = _build(tmp_path, 'k400', layout='kinetics', videos_dir=str(tmp_path / 'k400'),
             annotations=os.path.join(real, 'kinetics400'))
  assert s['coverage']['validation']['listed'] == 19906 and s['videos_ok'] == 2 and s['classes'] == 400
  label_names = open(os.path.join(real, 'kinetics400', 'label_name.txt')).read().split('\n')
  assert {label for _, label in _ids_labels(s['dataset_dir'], 'validation')} == {label_names.index('air drumming')}
  ucf = os.path.join(real, 'ucf101', 'ucfTrainTestlist')
  for rel in ('HandstandPushups/v_HandStandPushups_g01_c01.avi', 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi'):
    fx.write_video(str(tmp_path / 'UCF-101' / rel), num_frames=6)
  s = _build(tmp_path, 'ucf', layout='ucf101', videos_dir=str(tmp_path / 'UCF-101'), annotations=ucf)
  assert s['videos_per_split'] == {'test': 1, 'train': 1}
  assert s['coverage']['train']['listed'] == 9537 and s['coverage']['test']['listed'] == 3783
  assert _ids_labels(s['dataset_dir'], 'test') == [('HandstandPushups/v_HandStandPushups_g01_c01.avi', 36)]
  hmdb = os.path.join(real, 'hmdb51', 'testTrainMulti_7030_splits')
  first = open(os.path.join(hmdb, 'wave_test_split1.txt')).read().split('\n')[0].split()
  fx.write_video(str(tmp_path / 'hmdb51' / 'wave' / first[0]), num_frames=6)
  s = _build(tmp_path, 'hmdb', layout='hmdb51', videos_dir=str(tmp_path / 'hmdb51'), annotations=hmdb)
  split = {'1': 'train', '2': 'test'}[first[1]]
  assert s['videos_per_split'] == {split: 1} and s['coverage'][split]['listed'] in (3570, 1530)
  assert _ids_labels(s['dataset_dir'], split) == [(f'wave/{first[0]}', 50)]


def _direct_clip_fraction(keys, num_frames, clip_len=16, future_len=16, stride=4, margin=5):
  """The paper's clip geometry, written out: starts 0..F-125, window [start - 5, start + 60 + 5]."""
  starts = range(num_frames - ((clip_len + future_len - 1) * stride + 1) + 1)
  hits = [any(s - margin <= k <= s + (clip_len - 1) * stride + margin for k in keys) for s in starts]
  return sum(hits) / len(hits)


def test_real_videos_build_with_their_poses_and_coviar_keyframes(real, tmp_path):
  from csvr_jax.data import fingerprint
  from data_prep import video_io
  videos = tmp_path / 'videos'
  for cls, src in (('lifting', os.path.join(real, 'openpose', 'coco18_clean_and_jerk', 'clean_and_jerk.mp4')),
                   ('taichi', os.path.join(real, 'kinetics_skeleton', 'ta_chi.mp4'))):
    (videos / cls).mkdir(parents=True)
    os.symlink(src, videos / cls / os.path.basename(src))
  (tmp_path / 'split.txt').write_text('lifting/clean_and_jerk.mp4 train\ntaichi/ta_chi.mp4 train\n')
  common = dict(layout='folder', videos_dir=str(videos), annotations=str(tmp_path / 'split.txt'),
                poses='kinetics_skeleton:' + os.path.join(real, 'kinetics_skeleton'))
  coviar = _build(tmp_path, 'coviar', **common)  # the default: mpeg4 re-encode at GOP 12
  codec = _build(tmp_path, 'codec', reencode_gop=0, **common)
  for s in (coviar, codec):
    assert s['videos_ok'] == 2 and s['coverage']['train']['missing_poses'] == 1  # ta_chi.json: nobody found
  src = records.open_split(coviar['dataset_dir'], 'train')
  lifting, taichi = src[0], src[1]
  assert lifting['num_frames'] == 300 and list(lifting['keyframe_indices']) == list(range(0, 300, 12))
  want, _ = poses.load_poses('openpose', os.path.join(real, 'openpose'), 'coco18_clean_and_jerk.mp4', 300, 340,
                             256)
  np.testing.assert_array_equal(lifting['poses'], want)  # the Kinetics-skeleton file numbered from 0
  assert taichi['pose_source'] == b'kinetics_skeleton' and not taichi['poses'].any()
  native = video_io.keyframe_indices(videos / 'lifting' / 'clean_and_jerk.mp4')
  assert native == [0, 250]  # x264's own 250-frame GOP
  assert list(records.open_split(codec['dataset_dir'], 'train')[0]['keyframe_indices']) == native
  k_coviar, k_codec = coviar['keyframes']['splits']['train'], codec['keyframes']['splits']['train']
  assert k_coviar['mean_gop'] == 12 and k_coviar['clip_fraction'] == 1.0
  assert k_codec['mean_gop'] == 250 and k_codec['clip_fraction'] == pytest.approx(
      _direct_clip_fraction(native, 300)) and k_codec['clip_fraction'] == pytest.approx(6 / 176)
  fp_coviar = fingerprint.read_fingerprint(coviar['dataset_dir'])
  assert fp_coviar == coviar['fingerprint'] and fp_coviar['counts'] == {'train': 2}
  assert fingerprint.preprocessing_differences(fp_coviar, fingerprint.read_fingerprint(codec['dataset_dir'])) == [
      "GOP policy mpeg4 re-encode, fixed GOP 12 (CoViAR) vs the codec's own key frames"]


def test_multi_person_openpose_folders_build_beside_grey_videos(real, tmp_path):
  # The store has no source video for these two (SOURCES.md): grey ones of the source size stand in.
  from data_prep import video_io
  op = os.path.join(real, 'openpose')
  cases = {'swim/swimming': ('coco18_swimming', 96, 960, 540), 'badminton/video': ('body25_badminton', 16, 1920,
                                                                                    1080)}
  for rel, (folder, frames, width, height) in cases.items():
    (tmp_path / 'videos' / rel).parent.mkdir(parents=True)
    grey = np.full((frames, height, width, 3), 128, np.uint8)
    (tmp_path / 'videos' / f'{rel}.mp4').write_bytes(video_io.encode_video(grey, 25, options={'preset': 'ultrafast'}))
    (tmp_path / 'poses' / rel).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.join(op, folder), tmp_path / 'poses' / rel)
  (tmp_path / 'split.txt').write_text('swim/swimming.mp4 train\nbadminton/video.mp4 train\n')
  s = _build(tmp_path, 'people', layout='folder', videos_dir=str(tmp_path / 'videos'),
             annotations=str(tmp_path / 'split.txt'), poses=f'openpose:{tmp_path}/poses')
  assert s['videos_ok'] == 2 and s['coverage']['train']['missing_poses'] == 0
  src = records.open_split(s['dataset_dir'], 'train')
  got = {src[i]['video_id'].decode(): src[i]['poses'] for i in range(len(src))}
  for rel, (folder, frames, width, height) in cases.items():
    want, _ = poses.load_poses('openpose', op, f'{folder}.mp4', frames, width, height)
    np.testing.assert_array_equal(got[f'{rel}.mp4'], want)
    assert poses.has_person(want)
