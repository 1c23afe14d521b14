"""Grain pipelines on a small generated TFDS dataset: fields, evaluation coverage, state restore, sharding."""
import pickle

import jax
import ml_collections
import numpy as np
import pytest
import simplejpeg

from configs import base
from csvr_jax.data import pipeline
from csvr_jax.data import records
from csvr_jax.data import samples
from data_prep import tfds_writer

NUM_TRAIN, NUM_TEST = 8, 5
H, W = 24, 32


def _config():
  c = ml_collections.ConfigDict(base.get_config().data.to_dict())
  c.update(clip_len=4, stride=2, future_len=3, crop_size=16, short_side=24, max_iframes=3, iframe_margin=2,
           num_eval_clips=3, num_workers=0, prefetch=2)
  return c


def _record(i, num_frames, label):
  frames = []
  for t in range(num_frames):
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 10 * i  # video identity in red, frame index in green: checkable after decoding
    img[..., 1] = 4 * t
    frames.append(simplejpeg.encode_jpeg(img, quality=95))
  poses = np.random.default_rng(i).uniform(0, 1, (num_frames, records.NUM_JOINTS, 3)).astype(np.float16)
  return dict(video_id=f'v{i}', label=label, num_frames=num_frames, fps=25.0, frames=np.array(frames, object),
              keyframe_indices=np.arange(0, num_frames, 5, dtype=np.int32), poses=poses, pose_source='openpose',
              gop=5)


@pytest.fixture(scope='module')
def dataset_dir(tmp_path_factory):
  # Lengths straddle the clip + future span ((4 + 3 - 1) * 2 + 1 = 13 frames): short videos are looped.
  train = [_record(i, [9, 13, 20, 31][i % 4], i % 3) for i in range(NUM_TRAIN)]
  test = [_record(20 + i, [6, 17][i % 2], i % 3) for i in range(NUM_TEST)]
  return tfds_writer.write_dataset(str(tmp_path_factory.mktemp('ds')), 'toy', ['a', 'b', 'c'],
                                   {'train': train, 'test': test})


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_pretrain_fields(dataset_dir):
  c = _config()
  batch = next(iter(pipeline.pretrain_loader(c, dataset_dir, 'train', 4, seed=0, shard_index=0, shard_count=1)))
  want = {
      'clip': ((4, 4, 16, 16, 3), np.uint8), 'future_clip': ((4, 3, 16, 16, 3), np.uint8),
      'iframes': ((4, 3, 16, 16, 3), np.uint8), 'iframe_mask': ((4, 3), np.bool_),
      'pose_in': ((4, 4, 18, 2), np.float32), 'pose_in_conf': ((4, 4, 18), np.float32),
      'pose_gt': ((4, 3, 18, 2), np.float32), 'pose_gt_conf': ((4, 3, 18), np.float32),
      'video_index': ((4,), np.int32), 'label': ((4,), np.int32), 'looped': ((4,), np.bool_)}
  assert set(batch) == set(want)
  for k, (shape, dtype) in want.items():
    assert batch[k].shape == shape and batch[k].dtype == dtype, (k, batch[k].shape, batch[k].dtype)
  assert batch['iframe_mask'][:, 0].all()
  assert (batch['iframes'][~batch['iframe_mask']] == 0).all()
  for b, v in enumerate(batch['video_index']):
    assert abs(int(np.median(batch['clip'][b, ..., 0])) - 10 * v) <= 3  # the clip comes from that video
    assert batch['label'][b] == v % 3
    assert batch['looped'][b] == ([9, 13, 20, 31][v % 4] < 13)
    green = np.median(batch['clip'][b, ..., 1].reshape(4, -1), axis=1) / 4  # frame index of each clip frame
    future = np.median(batch['future_clip'][b, ..., 1].reshape(3, -1), axis=1) / 4
    if not batch['looped'][b]:
      np.testing.assert_allclose(np.diff(np.concatenate([green, future])), 2, atol=0.5)
  valid = batch['pose_in_conf'] > 0
  assert (batch['pose_in'][valid] >= 0).all() and (batch['pose_in'][valid] <= 1).all()


def test_serialized_records_give_the_batches_of_decoded_records(dataset_dir):
  # The loaders read a folder's records serialized and parse them lazily; in-memory decoded records (TFDS's
  # full decode) must give identical batches.
  c = _config()
  for split, make in [('train', lambda d: pipeline.pretrain_loader(c, d, 'train', 3, seed=2, shard_index=0,
                                                                    shard_count=1)),
                      ('test', lambda d: pipeline.eval_loader(c, d, 'test', 4, shard_index=0, shard_count=1))]:
    src = records.open_split(dataset_dir, split)
    decoded = [src[i] for i in range(len(src))]
    _assert_batches_equal(_take(iter(make(dataset_dir)), 3), _take(iter(make(decoded)), 3))


def test_pretrain_batch_renders_the_samples_of_pretrain_sample(dataset_dir):
  # The loader renders straight into its batch (and into shared memory in worker processes): the same rows as
  # pretrain_sample with the same generators.
  c = _config()
  src = records.open_split(dataset_dir, 'train')
  recs = [src[i] for i in range(len(src))]
  rows = [samples.pretrain_sample(r, i, c, np.random.default_rng(i)) for i, r in enumerate(recs)]
  for shared in (False, True):
    batch_fn = pipeline._PretrainBatch(c)
    if shared:
      batch_fn.enable_shared_memory_output()
    pending = [pipeline._PendingSample(*samples.pretrain_draws(r, i, c, np.random.default_rng(i)))
               for i, r in enumerate(recs)]
    batch = batch_fn(pending)
    assert set(batch) == set(rows[0])
    for k in batch:
      np.testing.assert_array_equal(batch[k], np.stack([s[k] for s in rows]), err_msg=k)
      assert batch[k].flags.c_contiguous
    assert (type(batch['clip']).__name__ == 'SharedMemoryArray') == shared
    assert batch['iframes'][~batch['iframe_mask']].size and not batch['iframes'][~batch['iframe_mask']].any()
    for k in ('clip', 'future_clip', 'iframes'):
      if shared:
        batch[k].unlink_on_del()  # as grain's consumer does: the segments go away with the arrays
    del batch


def test_finetune_fields(dataset_dir):
  batch = next(iter(pipeline.finetune_loader(_config(), dataset_dir, 'train', 3, seed=1, shard_index=0,
                                             shard_count=1)))
  assert set(batch) == {'clip', 'pose_in', 'pose_in_conf', 'label'}
  assert batch['clip'].shape == (3, 4, 16, 16, 3) and batch['clip'].dtype == np.uint8
  assert batch['pose_in'].shape == (3, 4, 18, 2) and batch['pose_in_conf'].shape == (3, 4, 18)
  assert batch['label'].shape == (3,) and batch['label'].dtype == np.int32


@pytest.mark.parametrize('batch_size,shards', [(1, 1), (4, 1), (7, 2), (2, 3)])
def test_eval_covers_every_video_exactly_once(dataset_dir, batch_size, shards):
  c = _config()
  seen, counts = [], []
  for i in range(shards):
    batches = list(pipeline.eval_loader(c, dataset_dir, 'test', batch_size, shard_index=i, shard_count=shards))
    counts.append(len(batches))
    for b in batches:
      assert b['clip'].shape == (batch_size, 4, 16, 16, 3) and b['clip'].dtype == np.uint8
      assert b['valid'].dtype == np.bool_ and b['clip_index'].dtype == np.int32
      assert (b['video_index'][~b['valid']] == -1).all()
      assert (b['clip'][~b['valid']] == 0).all()
      for v, k, lab, clip in zip(b['video_index'][b['valid']], b['clip_index'][b['valid']],
                                 b['label'][b['valid']], b['clip'][b['valid']]):
        seen.append((int(v), int(k)))
        assert lab == v % 3 and abs(int(np.median(clip[..., 0])) - 10 * (20 + v)) <= 3
  assert counts == [pipeline.eval_batches_per_host(NUM_TEST, 3, batch_size, shards)] * shards
  assert sorted(seen) == [(v, k) for v in range(NUM_TEST) for k in range(3)]


def test_eval_is_deterministic(dataset_dir):
  c = _config()
  runs = [list(pipeline.eval_loader(c, dataset_dir, 'test', 4, shard_index=0, shard_count=1)) for _ in range(2)]
  _assert_batches_equal(*runs)


def test_seed_determinism(dataset_dir):
  c = _config()
  make = lambda seed: _take(iter(pipeline.pretrain_loader(c, dataset_dir, 'train', 2, seed=seed, shard_index=0,
                                                          shard_count=1)), 2)
  _assert_batches_equal(make(3), make(3))
  assert not np.array_equal(make(3)[0]['clip'], make(4)[0]['clip'])


@pytest.mark.parametrize('workers', [0, 2])
def test_iterator_state_restore(dataset_dir, workers):
  c = _config()
  make = lambda: pipeline.pretrain_loader(c, dataset_dir, 'train', 2, seed=5, shard_index=0, shard_count=1,
                                          num_workers=workers)
  it = iter(make())
  _take(it, 3)  # past the first epoch boundary (8 videos / batch 2 = 4 batches) soon after
  state = it.get_state()
  expected = _take(it, 4)
  it2 = iter(make())
  it2.set_state(state)
  _assert_batches_equal(_take(it2, 4), expected)


def test_two_processes_see_disjoint_complete_shards(dataset_dir):
  c = _config()
  shards = []
  for i in range(2):
    loader = pipeline.pretrain_loader(c, dataset_dir, 'train', 1, seed=0, shard_index=i, shard_count=2,
                                      num_epochs=1)
    shards.append([int(b['video_index'][0]) for b in loader])
  assert len(shards[0]) == len(shards[1]) == NUM_TRAIN // 2
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == list(range(NUM_TRAIN))


def test_shard_by_jax_process_default(dataset_dir):
  loader = pipeline.pretrain_loader(_config(), dataset_dir, 'train', 2, seed=0, num_epochs=1)
  assert len(list(loader)) == NUM_TRAIN // 2  # one process: the whole split


def test_to_global_batch_over_mesh():
  mesh = jax.make_mesh((8,), ('data',))
  batch = {'clip': np.arange(16 * 3, dtype=np.uint8).reshape(16, 3), 'valid': np.ones(16, bool)}
  out = pipeline.to_global_batch(batch, mesh)
  assert out['clip'].shape == (16, 3) and out['valid'].dtype == np.bool_
  assert len(out['clip'].sharding.device_set) == 8
  assert out['clip'].addressable_shards[1].data.shape == (2, 3)
  np.testing.assert_array_equal(np.asarray(out['clip']), batch['clip'])


def test_split_size(dataset_dir):
  assert pipeline.split_size(dataset_dir, 'train') == NUM_TRAIN
  assert pipeline.split_size(dataset_dir, 'test') == NUM_TEST


class _CountingSource:

  def __init__(self, src):
    self.src, self.reads = src, 0

  def __len__(self):
    return len(self.src)

  def __getitem__(self, i):
    self.reads += 1
    return self.src[i]


def test_eval_source_reads_each_video_about_once(dataset_dir):
  src = _CountingSource(records.open_split(dataset_dir, 'test'))
  rows = pipeline.EvalClipSource(src, 'test', 3, 16)
  out = [rows[i] for i in range(16)]
  assert src.reads == NUM_TEST
  assert [(v, k) for v, k, _ in out] == [(v, k) for v in range(NUM_TEST) for k in range(3)] + [(-1, -1)]
  again = pickle.loads(pickle.dumps(rows))  # worker processes receive it pickled, without the cache
  assert again[4][:2] == (1, 1)
