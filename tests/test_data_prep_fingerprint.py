"""data_prep.dataset_fingerprint: digests that follow the inputs and nothing else."""
from data_prep import builder
from data_prep import dataset_fingerprint as dfp


def test_annotations_digest_follows_names_and_bytes(tmp_path):
  folder = tmp_path / 'lists'
  folder.mkdir()
  (folder / 'classInd.txt').write_text('1 A\n')
  (folder / 'trainlist01.txt').write_text('A/x.avi 1\n')
  first = dfp.annotations_digest(str(folder))
  assert dfp.annotations_digest(str(folder)) == first and len(first) == 64
  (folder / 'trainlist01.txt').write_text('A/y.avi 1\n')
  assert dfp.annotations_digest(str(folder)) != first
  (folder / 'trainlist01.txt').write_text('A/x.avi 1\n')
  (folder / 'trainlist01.txt').rename(folder / 'trainlist02.txt')
  assert dfp.annotations_digest(str(folder)) != first
  single = dfp.annotations_digest(str(folder / 'classInd.txt'))
  assert single != first and dfp.annotations_digest('') != single


def test_videos_digest_ignores_order_and_fingerprint_is_deterministic():
  assert dfp.videos_digest({'train': ['b', 'a'], 'test': ['c']}) == dfp.videos_digest({'test': ['c'],
                                                                                      'train': ['a', 'b']})
  assert dfp.videos_digest({'train': ['a']}) != dfp.videos_digest({'test': ['a']})
  spec = builder.BuildSpec(layout='folder', videos_dir='/v', annotations='', out_dir='/o', name='n',
                           poses='openpose:/p')
  fp = dfp.make_fingerprint(spec, ['a', 'b'], {'train': 2}, {'train': ['a/1', 'b/2']}, {})
  assert fp == dfp.make_fingerprint(spec, ['a', 'b'], {'train': 2}, {'train': ['b/2', 'a/1']}, {})
  assert fp['preprocessing']['short_side'] == 128 and fp['preprocessing']['pose_source'] == 'openpose'
  assert fp['preprocessing']['gop_policy'] == 'mpeg4 re-encode, fixed GOP 12 (CoViAR)'  # the default
  assert '/v' not in str(fp) and '/p' not in str(fp)  # no paths: another machine gets the same fingerprint
  assert set(fp['software']) >= {'av', 'ffmpeg', 'simplejpeg', 'numpy'}
