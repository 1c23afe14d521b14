"""The record schema shared by data_prep (writer) and the Grain pipelines (reader).

One record per video. Stored with TFDS in ArrayRecord files and read with `tfds.data_source`-style random
access, without TensorFlow: only TFDS features that work without TF are used (docs/design.md, "Data").

Two ways to read a split: `open_split` decodes every field of a record (TFDS `deserialize_example_np`: all
frames' JPEG bytes become Python objects, all poses are converted); the input pipelines instead read the
serialized bytes (`open_split_serialized`) and `parse_serialized` them into a `SerializedRecord`, which converts
a field only when asked and hands out single frames - a sample needs ~34 of a video's ~180-300 frames. That
cut record parsing from ~0.7 to ~0.2 ms per video on the dev VM.
"""
import os

import numpy as np

NUM_JOINTS = 18  # COCO-18 / OpenPose order
FIELDS = ('video_id', 'label', 'num_frames', 'fps', 'frames', 'keyframe_indices', 'poses', 'pose_source', 'gop')

# COCO-18 joint order (OpenPose): used for the left/right swap on horizontal flips.
COCO18_JOINTS = ('nose', 'neck', 'r_shoulder', 'r_elbow', 'r_wrist', 'l_shoulder', 'l_elbow', 'l_wrist',
                 'r_hip', 'r_knee', 'r_ankle', 'l_hip', 'l_knee', 'l_ankle', 'r_eye', 'l_eye', 'r_ear', 'l_ear')
# Index permutation that maps each joint to its mirror image (left <-> right).
COCO18_FLIP_PERMUTATION = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)


def features(class_names):
  """The TFDS FeaturesDict of one video record.

  video_id: str; label: class index; num_frames: int32; fps: float32;
  frames: (num_frames,) JPEG bytes, each frame at short side 128 (object ndarray when read);
  keyframe_indices: (K,) int32 display-order indices of the codec's I-frames;
  poses: (num_frames, 18, 3) float16 = (x, y) in [0, 1] and confidence (0 where no person);
  pose_source: str ('openpose', 'kinetics_skeleton', 'none', ...); gop: int32 (0 = original encoding,
  else the fixed GOP the video was re-encoded with).
  """
  import tensorflow_datasets as tfds  # deferred: importing TFDS is slow and not needed by pure helpers
  f = tfds.features
  return f.FeaturesDict({
      'video_id': f.Tensor(shape=(), dtype=np.object_),
      'label': f.ClassLabel(names=list(class_names)),
      'num_frames': f.Tensor(shape=(), dtype=np.int32),
      'fps': f.Tensor(shape=(), dtype=np.float32),
      'frames': f.Tensor(shape=(None,), dtype=np.object_),
      'keyframe_indices': f.Tensor(shape=(None,), dtype=np.int32),
      'poses': f.Tensor(shape=(None, NUM_JOINTS, 3), dtype=np.float16),
      'pose_source': f.Tensor(shape=(), dtype=np.object_),
      'gop': f.Tensor(shape=(), dtype=np.int32),
  })


def _builder(dataset_dir):
  import tensorflow_datasets as tfds  # deferred, see features()
  if not os.path.isfile(os.path.join(dataset_dir, 'dataset_info.json')):
    raise FileNotFoundError(f'{dataset_dir}: not a dataset folder (no dataset_info.json); '
                            'build one with `python -m data_prep.build`')
  return tfds.builder_from_directory(dataset_dir)


def open_split(dataset_dir, split):
  """Random-access source over one split: `len(src)`, `src[i]` -> dict of numpy values; no TensorFlow.

  `src[i]`: video_id bytes, label int, num_frames int, fps float, frames (F,) object ndarray of JPEG bytes,
  keyframe_indices (K,) int32, poses (F, 18, 3) float16, pose_source bytes, gop int. The source pickles (for
  Grain worker processes). `dataset_dir` is the folder holding dataset_info.json.
  """
  builder = _builder(dataset_dir)
  if split not in builder.info.splits:
    raise KeyError(f'{dataset_dir}: no split {split!r}; it has {sorted(builder.info.splits)}')
  return builder.as_data_source(split)


def open_split_serialized(dataset_dir, split):
  """Like `open_split`, but `src[i]` is the record's serialized bytes (for `parse_serialized`)."""
  from tensorflow_datasets.core import decode  # deferred, see features()
  builder = _builder(dataset_dir)
  if split not in builder.info.splits:
    raise KeyError(f'{dataset_dir}: no split {split!r}; it has {sorted(builder.info.splits)}')
  return builder.as_data_source(split, deserialize_method=decode.DeserializeMethod.RAW_BYTES)


class SerializedRecord:
  """Read-only view of one serialized record with the keys and values of `open_split(...)[i]`.

  `record[key]` converts that field when asked (and keeps it); `record['frames']` is a sequence of the JPEG
  bytes that converts only the frames indexed. The bytes follow TFDS's tf.train.Example encoding of
  `features()`: ints (ClassLabel, int32 scalars and lists) as int64_list, floats (float32, float16 poses) as
  float_list, strings and JPEG bytes as bytes_list.
  """

  _KINDS = {'video_id': 'bytes_list', 'label': 'int64_list', 'num_frames': 'int64_list', 'fps': 'float_list',
            'frames': 'bytes_list', 'keyframe_indices': 'int64_list', 'poses': 'float_list',
            'pose_source': 'bytes_list', 'gop': 'int64_list'}

  def __init__(self, data):
    from tensorflow_datasets.core import example_parser  # deferred, see features(); the proto is TF-free
    self._features = example_parser.tf_example_pb2.Example.FromString(data).features.feature
    self._cache = {}
    missing = sorted(set(FIELDS) - set(self._features))
    if missing:
      raise ValueError(f'serialized record without fields {missing}: not a record of this schema '
                       '(csvr_jax/data/records.py)')

  def _values(self, key):
    return getattr(self._features[key], self._KINDS[key]).value

  def _convert(self, key):
    values = self._values(key)
    if key == 'frames':
      return values  # indexable, len(); frames[i] -> bytes, converted on access
    if key == 'poses':
      # Via float32 (the stored floats are float16 values, so both roads give the same numbers): numpy converts
      # a protobuf float list to float32 ~10x faster than straight to float16.
      return np.asarray(values, np.float32).astype(np.float16).reshape(-1, NUM_JOINTS, 3)
    if key == 'keyframe_indices':
      return np.asarray(values, np.int32)
    return values[0]  # label, num_frames, gop: int; fps: float; video_id, pose_source: bytes (as TFDS)

  def __getitem__(self, key):
    if key not in self._cache:
      if key not in self._KINDS:
        raise KeyError(key)
      self._cache[key] = self._convert(key)
    return self._cache[key]

  def keys(self):
    return FIELDS


def parse_serialized(data):
  """Serialized record bytes (`open_split_serialized(...)[i]`) -> SerializedRecord."""
  return SerializedRecord(data)


def class_names(dataset_dir):
  """The label names of a dataset, in label-index order."""
  return list(_builder(dataset_dir).info.features['label'].names)


def split_names(dataset_dir):
  """The split names of a dataset (e.g. ['test', 'train'])."""
  return sorted(_builder(dataset_dir).info.splits)
