"""Serialized record reading (records.parse_serialized) against TFDS's full decode, and the on-disk codec."""
import glob
import os

import numpy as np
import pytest
import simplejpeg

from csvr_jax.data import records
from data_prep import tfds_writer


def _record(i, num_frames):
  rng = np.random.default_rng(i)
  frames = [simplejpeg.encode_jpeg(rng.integers(0, 255, (8, 12, 3), np.uint8), quality=90)
            for _ in range(num_frames)]
  poses = rng.uniform(0, 1, (num_frames, records.NUM_JOINTS, 3)).astype(np.float16)
  return dict(video_id=f'c/v{i}.mp4', label=i % 2, num_frames=num_frames, fps=29.97,
              frames=np.array(frames, object), keyframe_indices=np.arange(0, num_frames, 4, dtype=np.int32),
              poses=poses, pose_source='openpose', gop=4 * (i % 2))


@pytest.fixture(scope='module')
def dataset_dir(tmp_path_factory):
  train = [_record(i, 3 + 2 * i) for i in range(4)]
  return tfds_writer.write_dataset(str(tmp_path_factory.mktemp('ds')), 'rec', ['a', 'b'], {'train': train})


def _assert_same_record(got, want):
  assert set(got.keys()) == set(want.keys()) == set(records.FIELDS)
  for k in records.FIELDS:
    g, w = got[k], want[k]
    if k == 'frames':
      assert len(g) == len(w) and [g[i] for i in range(len(g))] == list(w)
    else:
      assert type(g) == type(w), k  # pylint: disable=unidiomatic-typecheck
      np.testing.assert_array_equal(g, w, err_msg=k)


def test_parse_serialized_equals_the_tfds_decode(dataset_dir):
  full, raw = records.open_split(dataset_dir, 'train'), records.open_split_serialized(dataset_dir, 'train')
  assert len(full) == len(raw) == 4
  for i in range(4):
    assert isinstance(raw[i], bytes)
    got = records.parse_serialized(raw[i])
    _assert_same_record(got, full[i])
    assert got['poses'].dtype == np.float16 and got['poses'].shape == (3 + 2 * i, records.NUM_JOINTS, 3)
    assert got['keyframe_indices'].dtype == np.int32 and got['num_frames'] == 3 + 2 * i
  with pytest.raises(KeyError):
    records.parse_serialized(raw[0])['no_such_field']


def test_parse_serialized_rejects_other_records(dataset_dir):
  from tensorflow_datasets.core import example_parser  # pylint: disable=g-import-not-at-top
  other = example_parser.tf_example_pb2.Example()
  other.features.feature['image'].bytes_list.value.append(b'x')
  with pytest.raises(ValueError, match='without fields'):
    records.parse_serialized(other.SerializeToString())


def test_written_uncompressed_and_compressed_files_read_the_same(dataset_dir, tmp_path):
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  paths = sorted(glob.glob(os.path.join(dataset_dir, '*.array_record-*')))
  reader = array_record_module.ArrayRecordReader(paths[0])
  assert 'uncompressed' in reader.writer_options_string()
  # A dataset written by the earlier writer (TFDS's default zstd) reads back unchanged.
  stored = [reader.read([i])[0] for i in range(reader.num_records())]
  reader.close()
  copy = str(tmp_path / 'copy')
  os.makedirs(copy)
  for name in os.listdir(dataset_dir):
    src, dst = os.path.join(dataset_dir, name), os.path.join(copy, name)
    if src == paths[0]:
      writer = array_record_module.ArrayRecordWriter(dst, 'group_size:1,zstd:3')
      for data in stored:
        writer.write(data)
      writer.close()
    else:
      os.symlink(src, dst)
  assert 'zstd' in array_record_module.ArrayRecordReader(os.path.join(copy, os.path.basename(paths[0]))
                                                         ).writer_options_string()
  old, new = records.open_split_serialized(copy, 'train'), records.open_split_serialized(dataset_dir, 'train')
  assert [old[i] for i in range(4)] == [new[i] for i in range(4)]
