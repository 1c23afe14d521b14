"""The fingerprint data_prep.build stores with a dataset (format and reader: csvr_jax/data/fingerprint.py).

Deterministic: two builds of the same inputs with the same options and libraries get the same fingerprint,
whatever the machine, paths, worker or task count (no times or paths inside).
"""
import hashlib
import json
import os
import platform

import numpy as np
import simplejpeg

from csvr_jax.data import fingerprint as fingerprint_lib
from data_prep import video_io
from data_prep import work_shards

FINGERPRINT_VERSION = 1
FRAME_SCALING = 'YUV 4:2:0, area interpolation (swscale), even sizes'  # video_io.decode_video


def annotations_digest(path):
  """sha256 over the relative names and bytes of every file under `path` (a file or a folder); '' -> of nothing."""
  h = hashlib.sha256()
  if path and os.path.isdir(path):
    files = []
    for root, dirs, names in os.walk(path):
      dirs.sort()
      files += [os.path.join(root, n) for n in sorted(names)]
  else:
    files = [path] if path else []
  for file in files:
    rel = os.path.relpath(file, path) if os.path.isdir(path) else os.path.basename(file)
    h.update(rel.encode() + b'\0')
    with open(file, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):  # pylint: disable=cell-var-from-loop
        h.update(block)
    h.update(b'\0')
  return h.hexdigest()


def videos_digest(video_ids):
  """sha256 of the sorted 'split/video_id' lines of the videos written. video_ids: {split: [id, ...]}."""
  lines = sorted(f'{split}/{vid}' for split, ids in video_ids.items() for vid in ids)
  return hashlib.sha256('\n'.join(lines).encode()).hexdigest()


def gop_policy(reencode_gop):
  if reencode_gop:
    return f'mpeg4 re-encode, fixed GOP {reencode_gop} (CoViAR)'
  return "the codec's own key frames"


def preprocessing(spec):
  """The PREPROCESSING_FIELDS of a build (csvr_jax/data/fingerprint.py)."""
  kind = spec.poses.partition(':')[0]
  v = video_io.decoder_versions()
  return dict(short_side=spec.short_side, jpeg_quality=spec.jpeg_quality, gop_policy=gop_policy(spec.reencode_gop),
              pose_source=kind, frame_scaling=FRAME_SCALING, fps='as the source (not resampled)',
              decoder=f'FFmpeg {v["ffmpeg"]} (libavcodec {v["libavcodec"]}, libswscale {v["libswscale"]})')


def software():
  return dict(video_io.decoder_versions(), simplejpeg=simplejpeg.__version__, numpy=np.__version__,
              python=platform.python_version())


def make_fingerprint(spec, class_names, counts, video_ids, keyframes):
  """-> the fingerprint dict. counts: {split: videos written}; video_ids: {split: [ids]}; keyframes: the
  KeyframeStats result."""
  fp = dict(version=FINGERPRINT_VERSION, name=spec.name, layout=spec.layout, split=spec.split,
            min_frames=spec.min_frames, classes=len(class_names), counts=dict(sorted(counts.items())),
            annotations=annotations_digest(spec.annotations), videos=videos_digest(video_ids),
            preprocessing=preprocessing(spec), software=software(), keyframes=keyframes)
  fp['digest'] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
  return fp


def write_fingerprint(dataset_dir, fp):
  path = os.path.join(dataset_dir, fingerprint_lib.FILE_NAME)
  work_shards.atomic_write_bytes(path, json.dumps(fp, indent=1, sort_keys=True).encode())
  return path
