"""Write video records (csvr_jax/data/records.py) as a TFDS ArrayRecord dataset, without TensorFlow.

`write_dataset(out_dir, name, class_names, {'train': records, 'test': records})` -> dataset_dir, which
`csvr_jax.data.records.open_split(dataset_dir, split)` reads back with random access.

The builder is a TFDS `ShardBasedBuilder` defined here (an importable module: TFDS needs that) whose name is
set per instance, so one class serves every dataset (`--name` of data_prep.build). Records keep the order in
which they are given: the Grain pipeline shuffles, and the build stays reproducible.

ArrayRecord files are written uncompressed (`ARRAY_RECORD_OPTIONS`; TFDS's default is zstd): a record is a
video's JPEGs, which zstd shrinks by only ~12% (the repeated JPEG headers), while decompressing the ~1 MB
record on every pretraining sample cost ~0.25-0.3 ms of the pipeline's ~8 ms per sample (0.82 -> 0.57 ms per
record read on the dev VM). Readers need no option: ArrayRecord records each chunk's compression, so datasets
written compressed by earlier versions read the same.
"""
import functools
import os
import shutil
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from csvr_jax.data import records

DATASET_VERSION = '1.0.0'
ARRAY_RECORD_OPTIONS = 'group_size:1,uncompressed'  # group_size:1 = one record per chunk (as TFDS writes)


def check_record(record, num_classes):
  """Raises ValueError (one line, naming the video) if a record does not follow the schema."""
  vid = record.get('video_id', '?')
  missing = set(records.FIELDS) - set(record)
  if missing:
    raise ValueError(f'record {vid}: missing fields {sorted(missing)}')
  n = int(record['num_frames'])
  if len(record['frames']) != n:
    raise ValueError(f'record {vid}: {len(record["frames"])} frames but num_frames={n}')
  if np.shape(record['poses']) != (n, records.NUM_JOINTS, 3):
    raise ValueError(f'record {vid}: poses shape {np.shape(record["poses"])} != ({n}, {records.NUM_JOINTS}, 3)')
  if not 0 <= int(record['label']) < num_classes:
    raise ValueError(f'record {vid}: label {record["label"]} outside [0, {num_classes})')
  k = np.asarray(record['keyframe_indices'])
  if k.size and (k.min() < 0 or k.max() >= n):
    raise ValueError(f'record {vid}: keyframe_indices outside [0, {n})')


def _as_example(record):
  """Record dict -> the numpy types the TFDS features expect."""
  return {
      'video_id': str(record['video_id']),
      'label': int(record['label']),
      'num_frames': np.int32(record['num_frames']),
      'fps': np.float32(record['fps']),
      'frames': np.asarray(list(record['frames']), dtype=object).reshape(-1),
      'keyframe_indices': np.asarray(record['keyframe_indices'], np.int32).reshape(-1),
      'poses': np.asarray(record['poses'], np.float16),
      'pose_source': str(record['pose_source']),
      'gop': np.int32(record['gop']),
  }


class _UncompressedArrayRecordWriter(tfds.core.writer.ExampleWriter):
  """TFDS's ArrayRecord example writer (file_adapters.ArrayRecordFileAdapter.write_examples), uncompressed."""

  def write(self, path, examples):
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    writer = array_record_module.ArrayRecordWriter(os.fspath(path), ARRAY_RECORD_OPTIONS)
    for _, serialized in examples:
      writer.write(serialized)
    writer.close()


class VideoRecordsBuilder(tfds.core.ShardBasedBuilder, skip_registration=True):
  """One dataset of video records; `shards` maps split name -> list of callables, each returning an iterator
  of the record dicts of one output shard (in order).

  ShardBasedBuilder, not GeneratorBasedBuilder: the latter sends every example through TFDS's shuffler,
  which spills to disk with `tf.io.gfile` past 1 GB per split - it fails without TensorFlow on real datasets.
  This one writes each shard straight to its ArrayRecord file and keeps only one shard in memory.
  """

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: 'Videos as per-frame JPEG, codec I-frame indices and COCO-18 poses.'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # No checksums file to find next to the code. TFDS 4.9.10's lookup reaches for `importlib_resources`
    # (not installed on Python >= 3.9) for builders defined in a regular package; skipping it avoids that.
    return None

  def __init__(self, *, name, class_names, shards=None, description='', **kwargs):
    self.name = name  # per instance: one builder class serves every dataset name
    self._class_names = list(class_names)
    self._shards = shards or {}
    self._description = description
    super().__init__(**kwargs)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, description=self._description,
                                 features=records.features(self._class_names), disable_shuffling=True)

  def _example_writer(self):  # the hook TFDS provides for a custom writer
    return _UncompressedArrayRecordWriter(file_format=self.info.file_format)

  def _shard_iterators_per_split(self, dl_manager):
    del dl_manager
    out = {}
    for split, shard_fns in self._shards.items():
      seen = set()  # video ids of this split so far (shards are written one after the other, in order)
      out[split] = [functools.partial(self._examples, fn, seen) for fn in shard_fns]
    return out

  def _examples(self, shard_fn, seen):
    for record in shard_fn():
      check_record(record, len(self._class_names))
      key = str(record['video_id'])
      if key in seen:
        raise ValueError(f'record {key}: duplicate video_id in one split')
      seen.add(key)
      yield key, _as_example(record)


def dataset_dir_for(out_dir, name):
  """The folder holding dataset_info.json for dataset `name` written under `out_dir`."""
  return os.path.join(out_dir, name, DATASET_VERSION)


def write_sharded(out_dir, name, class_names, shards, description='', overwrite=False):
  """Writes {split: [shard_fn, ...]} (each shard_fn() -> iterator of record dicts) as one ArrayRecord file per
  shard; returns the dataset dir. Splits without shards are left out.

  TFDS writes into a temporary folder and renames it when done, so a dataset dir that exists is complete.
  """
  if not name.isidentifier() or name != name.lower():
    raise ValueError(f'dataset name {name!r}: use lower_case letters, digits and underscores')
  shards = {split: list(fns) for split, fns in shards.items() if fns}
  if not shards:
    raise ValueError(f'dataset {name}: no splits given')
  dataset_dir = dataset_dir_for(out_dir, name)
  if os.path.exists(dataset_dir):
    if not overwrite:
      raise FileExistsError(f'{dataset_dir}: dataset exists (pass overwrite=True to replace it)')
    shutil.rmtree(dataset_dir)
  os.makedirs(out_dir, exist_ok=True)
  builder = VideoRecordsBuilder(name=name, class_names=class_names, shards=shards, description=description,
                                data_dir=out_dir, file_format='array_record')
  with tempfile.TemporaryDirectory(dir=out_dir, prefix='.tfds_downloads_') as download_dir:
    builder.download_and_prepare(download_dir=download_dir)
  return dataset_dir


def write_dataset(out_dir, name, class_names, splits, description='', overwrite=False, records_per_shard=64):
  """Writes `splits` ({split: iterable of record dicts}) as ArrayRecord files; returns the dataset dir.

  The records of each split are held in memory (for in-memory data; data_prep.build streams with
  write_sharded) and cut into files of `records_per_shard`.
  """
  shards = {}
  for split, examples in splits.items():
    examples = list(examples)
    chunks = [examples[i:i + records_per_shard] for i in range(0, len(examples), records_per_shard)]
    shards[split] = [functools.partial(iter, chunk) for chunk in chunks]
  return write_sharded(out_dir, name, class_names, shards, description, overwrite)
