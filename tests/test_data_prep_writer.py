"""Round trip: in-memory records -> TFDS ArrayRecord (data_prep.tfds_writer) -> records.open_split."""
import os
import pickle
import sys

import numpy as np
import pytest
import simplejpeg

from csvr_jax.data import records
from data_prep import tfds_writer


def _record(i, num_frames, label):
  rng = np.random.default_rng(i)
  frames = [simplejpeg.encode_jpeg(rng.integers(0, 255, (16, 24, 3), np.uint8), quality=90)
            for _ in range(num_frames)]
  poses = rng.uniform(0, 1, (num_frames, records.NUM_JOINTS, 3)).astype(np.float16)
  return dict(video_id=f'class{label}/v{i:02d}.mp4', label=label, num_frames=num_frames, fps=25.0,
              frames=np.array(frames, dtype=object), keyframe_indices=np.arange(0, num_frames, 3, dtype=np.int32),
              poses=poses, pose_source='openpose', gop=3)


def test_round_trip(tmp_path):
  train = [_record(i, 4 + i, i % 3) for i in range(5)]
  test = [_record(10 + i, 3, i % 3) for i in range(2)]
  d = tfds_writer.write_dataset(str(tmp_path), 'toy', ['a', 'b', 'c'], {'train': iter(train), 'test': test})
  assert records.class_names(d) == ['a', 'b', 'c']
  assert records.split_names(d) == ['test', 'train']
  src = records.open_split(d, 'train')
  assert len(src) == 5 and len(records.open_split(d, 'test')) == 2
  for i, want in enumerate(train):  # written order is kept
    got = src[i]
    assert got['video_id'].decode() == want['video_id']
    assert got['label'] == want['label'] and got['num_frames'] == want['num_frames'] and got['gop'] == 3
    assert got['frames'].dtype == object and list(got['frames']) == list(want['frames'])
    np.testing.assert_array_equal(got['keyframe_indices'], want['keyframe_indices'])
    np.testing.assert_array_equal(got['poses'], want['poses'])
    assert got['poses'].dtype == np.float16 and got['pose_source'] == b'openpose'
    assert simplejpeg.decode_jpeg(got['frames'][0]).shape == (16, 24, 3)
  again = pickle.loads(pickle.dumps(src))  # Grain workers receive the source pickled
  assert again[4]['video_id'] == src[4]['video_id']
  assert 'tensorflow' not in sys.modules


def test_bad_records_and_existing_dataset(tmp_path):
  bad = _record(0, 4, 0)
  bad['poses'] = bad['poses'][:3]
  with pytest.raises(ValueError, match='poses shape'):
    tfds_writer.write_dataset(str(tmp_path), 'bad', ['a'], {'train': [bad]})
  with pytest.raises(ValueError, match='label 5'):
    tfds_writer.write_dataset(str(tmp_path), 'bad', ['a'], {'train': [_record(0, 2, 5)]})
  tfds_writer.write_dataset(str(tmp_path), 'ok', ['a'], {'train': [_record(0, 2, 0)]})
  with pytest.raises(FileExistsError):
    tfds_writer.write_dataset(str(tmp_path), 'ok', ['a'], {'train': [_record(0, 2, 0)]})
  with pytest.raises(FileNotFoundError, match='dataset_info.json'):
    records.open_split(str(tmp_path), 'train')


def test_many_shards_keep_order_and_never_use_the_tf_shuffler(tmp_path, monkeypatch):
  # TFDS's shuffler spills to disk with tf.io.gfile past 1 GB; make "past" 1 byte: writing must not care.
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 1)
  train = [_record(i, 2, i % 2) for i in range(7)]
  d = tfds_writer.write_dataset(str(tmp_path), 'sharded', ['a', 'b'], {'train': train}, records_per_shard=3)
  assert len([f for f in os.listdir(d) if '-train.array_record-' in f]) == 3
  src = records.open_split(d, 'train')
  assert [src[i]['video_id'].decode() for i in range(len(src))] == [r['video_id'] for r in train]
  with pytest.raises(ValueError, match='duplicate video_id'):
    tfds_writer.write_dataset(str(tmp_path), 'dup', ['a', 'b'], {'train': train + train[:1]}, records_per_shard=3)
