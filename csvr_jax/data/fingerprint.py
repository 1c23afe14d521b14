"""A dataset's fingerprint: what went into it and how its frames were made (written by data_prep.build).

`<dataset_dir>/fingerprint.json` (dataset_dir = the version folder given as config.data.dataset_dir):

  counts          {split: videos written}
  classes         number of classes
  annotations     sha256 of the annotation files (names and bytes), videos: sha256 of the sorted split/video list
  preprocessing   what changes the stored frames and poses (PREPROCESSING_FIELDS): compared between datasets
  software        library versions that wrote it (av, FFmpeg, simplejpeg, numpy, python): recorded, not compared
  keyframes       key-frame statistics (data_prep/keyframe_stats.py)
  digest          sha256 of all of the above

Datasets built before fingerprints existed have no file: read_fingerprint returns None and nothing is compared.
"""
import json
import os

FILE_NAME = 'fingerprint.json'

# Preprocessing fields, in report order, with the words a one-line difference uses.
PREPROCESSING_FIELDS = {
    'short_side': 'short side',
    'jpeg_quality': 'JPEG quality',
    'gop_policy': 'GOP policy',
    'pose_source': 'pose source',
    'frame_scaling': 'frame scaling',
    'fps': 'frame rate',
    'decoder': 'decoder',
}


def read_fingerprint(dataset_dir):
  """-> the fingerprint dict of a dataset, or None for a dataset written without one. A file that exists but is
  not a JSON object raises ValueError naming it."""
  path = os.path.join(dataset_dir, FILE_NAME)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: unreadable dataset fingerprint ({type(e).__name__}: {e})') from None
  if not isinstance(data, dict):
    raise ValueError(f'{path}: a dataset fingerprint is a JSON object, got {type(data).__name__}')
  return data


def _shown(value):
  return '(not recorded)' if value is None else str(value)


def preprocessing_differences(a, b):
  """One line per preprocessing field that differs between fingerprints a and b, e.g. 'short side 128 vs 160'
  (a's value first). Fields either fingerprint lacks count as '(not recorded)'; a None fingerprint (a dataset
  without one) gives no lines: there is nothing to compare."""
  if a is None or b is None:
    return []
  pa, pb = a.get('preprocessing') or {}, b.get('preprocessing') or {}
  names = list(PREPROCESSING_FIELDS) + sorted((pa.keys() | pb.keys()) - PREPROCESSING_FIELDS.keys())
  lines = []
  for name in names:
    if name in pa or name in pb:
      va, vb = pa.get(name), pb.get(name)
      if va != vb:
        lines.append(f'{PREPROCESSING_FIELDS.get(name, name.replace("_", " "))} {_shown(va)} vs {_shown(vb)}')
  return lines
