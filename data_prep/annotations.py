"""Official split files -> (class names, {split: [(video path relative to videos_dir, label)]}).

Layouts: ucf101, hmdb51, kinetics, ssv2, folder. Every parser only reads annotation files (and, for
kinetics/ssv2/folder, lists `videos_dir` to resolve file names); whether a listed video exists and decodes is
checked by the builder, which records missing ones in skipped.jsonl.
"""
import csv
import json
import os
import random
import re

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.webm', '.mkv', '.mov', '.m4v', '.mpg', '.mpeg', '.flv', '.3gp', '.ogv')


class AnnotationError(ValueError):
  """Malformed or missing annotation files; the message names the file."""


def _lines(path):
  if not os.path.isfile(path):
    raise AnnotationError(f'{path}: annotation file not found')
  with open(path, encoding='utf-8-sig') as f:
    return [line.strip() for line in f if line.strip()]


# ---------------------------------------------------------------- UCF101
def ucf101(annotations, videos_dir, split=1):
  """UCF101 `ucfTrainTestlist` folder: classInd.txt ("1 ApplyEyeMakeup"), trainlist0N.txt ("Class/v_x.avi 1"),
  testlist0N.txt ("Class/v_x.avi"; label from the class folder, matched case-insensitively because the
  official lists spell e.g. HandstandPushups / HandStandPushups both ways)."""
  del videos_dir
  index = {}
  for line in _lines(os.path.join(annotations, 'classInd.txt')):
    parts = line.split()
    if len(parts) != 2 or not parts[0].isdigit():
      raise AnnotationError(f'{annotations}/classInd.txt: bad line {line!r} (want "INDEX NAME")')
    index[int(parts[0])] = parts[1]
  if sorted(index) != list(range(1, len(index) + 1)):
    raise AnnotationError(f'{annotations}/classInd.txt: class indices are not 1..{len(index)}')
  class_names = [index[i] for i in range(1, len(index) + 1)]
  by_name = {name.lower(): i for i, name in enumerate(class_names)}
  splits = {}
  for split_name, prefix in (('train', 'trainlist'), ('test', 'testlist')):
    path = os.path.join(annotations, f'{prefix}{split:02d}.txt')
    entries = []
    for line in _lines(path):
      rel = line.split()[0]
      folder = rel.replace('\\', '/').split('/')[0].lower()
      if folder not in by_name:
        raise AnnotationError(f'{path}: class folder of {rel!r} is not in classInd.txt')
      entries.append((rel, by_name[folder]))
    splits[split_name] = entries
  return class_names, splits


# ---------------------------------------------------------------- HMDB51
_HMDB_FILE = re.compile(r'^(?P<cls>.+)_test_split(?P<split>[123])\.txt$')


def hmdb51(annotations, videos_dir, split=1):
  """HMDB51 split folder: `<class>_test_split{1,2,3}.txt` with lines "video.avi ID" (1 train, 2 test,
  0 unused); videos live in `videos_dir/<class>/video.avi`. Classes in alphabetical order."""
  del videos_dir
  if not os.path.isdir(annotations):
    raise AnnotationError(f'{annotations}: HMDB51 split folder not found')
  files = {}
  for name in os.listdir(annotations):
    m = _HMDB_FILE.match(name)
    if m and int(m['split']) == split:
      files[m['cls']] = os.path.join(annotations, name)
  if not files:
    raise AnnotationError(f'{annotations}: no *_test_split{split}.txt files')
  class_names = sorted(files)
  splits = {'train': [], 'test': []}
  for label, cls in enumerate(class_names):
    for line in _lines(files[cls]):
      parts = line.split()
      if len(parts) != 2 or parts[1] not in ('0', '1', '2'):
        raise AnnotationError(f'{files[cls]}: bad line {line!r} (want "VIDEO 0|1|2")')
      if parts[1] != '0':
        splits['train' if parts[1] == '1' else 'test'].append((f'{cls}/{parts[0]}', label))
  return class_names, splits


# ---------------------------------------------------------------- shared: find files by stem
def _index_videos(videos_dir):
  """{file stem: path relative to videos_dir} for every video file below videos_dir (first one wins)."""
  found = {}
  for root, dirs, files in os.walk(videos_dir):
    dirs.sort()
    for name in sorted(files):
      stem, ext = os.path.splitext(name)
      if ext.lower() in VIDEO_EXTENSIONS:
        found.setdefault(stem, os.path.relpath(os.path.join(root, name), videos_dir))
  return found


# ---------------------------------------------------------------- Kinetics
_KINETICS_SPLITS = {'train': 'train', 'val': 'validation', 'validate': 'validation', 'validation': 'validation',
                    'test': 'test'}


def kinetics_stem(youtube_id, time_start, time_end):
  """File stem used by the common Kinetics mirrors (ActivityNet downloader, CVDF): id_000010_000020."""
  return f'{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}'


def kinetics(annotations, videos_dir, split=1):
  """Kinetics CSV(s) with header label,youtube_id,time_start,time_end,split[,is_cc]: one file, or a folder of
  them (train.csv, validate.csv, test.csv). Files are found anywhere under videos_dir by the mirrors' name
  `<id>_<start:06d>_<end:06d>.<ext>` or by `<id>.<ext>`; unresolved entries keep the mirror name (.mp4) and
  are reported missing by the builder. Unlabelled rows (some test CSVs) are left out. Classes sorted."""
  del split
  paths = ([os.path.join(annotations, n) for n in sorted(os.listdir(annotations)) if n.endswith('.csv')]
           if os.path.isdir(annotations) else [annotations])
  if not paths or not all(os.path.isfile(p) for p in paths):
    raise AnnotationError(f'{annotations}: no Kinetics CSV file found')
  rows = []
  for path in paths:
    with open(path, newline='', encoding='utf-8-sig') as f:
      reader = csv.DictReader(f)
      need = {'youtube_id', 'time_start', 'time_end', 'split'}
      if not need <= set(reader.fieldnames or ()):
        raise AnnotationError(f'{path}: CSV header must hold {sorted(need | {"label"})}')
      for row in reader:
        if row['split'] not in _KINETICS_SPLITS:
          raise AnnotationError(f'{path}: unknown split {row["split"]!r}')
        if row.get('label'):
          rows.append(row)
  class_names = sorted({row['label'] for row in rows})
  label_of = {name: i for i, name in enumerate(class_names)}
  index = _index_videos(videos_dir)
  splits = {}
  for row in rows:
    stem = kinetics_stem(row['youtube_id'], row['time_start'], row['time_end'])
    rel = index.get(stem) or index.get(row['youtube_id']) or f'{stem}.mp4'
    splits.setdefault(_KINETICS_SPLITS[row['split']], []).append((rel, label_of[row['label']]))
  return class_names, splits


# ---------------------------------------------------------------- Something-Something v2
def ssv2_label(template):
  """SSv2 class name = the template without its brackets ("Putting [something] on a surface")."""
  return template.replace('[', '').replace(']', '')


SSV2_FILES = {  # role -> file names: the current release's, then the 20BN release's
    'labels': ('labels.json', 'something-something-v2-labels.json'),
    'train': ('train.json', 'something-something-v2-train.json'),
    'validation': ('validation.json', 'something-something-v2-validation.json'),
}


def _ssv2_file(annotations, role):
  """The path of an SSv2 annotation file under either release's name; None if neither exists."""
  found = [os.path.join(annotations, n) for n in SSV2_FILES[role] if os.path.isfile(os.path.join(annotations, n))]
  if len(found) > 1:
    raise AnnotationError(f'{annotations}: both {" and ".join(SSV2_FILES[role])} exist; keep one')
  return found[0] if found else None


def _ssv2_split(path, labels, index):
  """One SSv2 split JSON ([{"id", "template", ...}]) -> [(rel_path, label)]."""
  try:
    with open(path, encoding='utf-8') as f:
      items = json.load(f)
    entries = []
    for item in items:
      name = ssv2_label(item['template'])
      if name not in labels:
        raise AnnotationError(f'{path}: template {item["template"]!r} is not in the labels file')
      vid = str(item['id'])
      entries.append((index.get(vid, f'{vid}.webm'), labels[name]))
  except (OSError, ValueError, KeyError, TypeError) as e:
    if isinstance(e, AnnotationError):
      raise
    raise AnnotationError(f'{path}: cannot read ({type(e).__name__}: {e})') from None
  return entries


def ssv2(annotations, videos_dir, split=1):
  """SSv2 annotation folder, either release's file names (SSV2_FILES): the current one's labels.json,
  train.json, validation.json or the 20BN one's something-something-v2-{labels,train,validation}.json.
  Labels {class: "index"}; splits lists of {"id", "template", ...}; videos `<id>.webm` (any extension found
  under videos_dir is accepted). The splits whose file is present are read (at least one must be); test.json
  has no labels and is not read."""
  del split
  labels_path = _ssv2_file(annotations, 'labels')
  if labels_path is None:
    raise AnnotationError(f'{annotations}: no SSv2 labels file ({" or ".join(SSV2_FILES["labels"])})')
  try:
    with open(labels_path, encoding='utf-8') as f:
      labels = {name: int(i) for name, i in json.load(f).items()}
  except (OSError, ValueError, AttributeError, TypeError) as e:
    raise AnnotationError(f'{labels_path}: cannot read ({type(e).__name__}: {e})') from None
  if sorted(labels.values()) != list(range(len(labels))):
    raise AnnotationError(f'{labels_path}: indices are not 0..{len(labels) - 1}')
  class_names = sorted(labels, key=labels.get)
  paths = {role: _ssv2_file(annotations, role) for role in ('train', 'validation')}
  if not any(paths.values()):
    names = [n for role in ('train', 'validation') for n in SSV2_FILES[role]]
    raise AnnotationError(f'{annotations}: no SSv2 split file (one of {", ".join(names)})')
  index = _index_videos(videos_dir)
  return class_names, {role: _ssv2_split(path, labels, index) for role, path in paths.items() if path}


# ---------------------------------------------------------------- folder
def folder(annotations, videos_dir, split=1, test_ratio=0.2, seed=0):
  """`videos_dir/<class>/<video>`; classes sorted. Splits from `annotations`, a text file of lines
  "<class>/<video> <split name>", or (annotations empty) a seeded per-class random `test_ratio` test split."""
  del split
  if not os.path.isdir(videos_dir):
    raise AnnotationError(f'{videos_dir}: videos folder not found')
  class_names = sorted(d for d in os.listdir(videos_dir) if os.path.isdir(os.path.join(videos_dir, d)))
  if not class_names:
    raise AnnotationError(f'{videos_dir}: no class subfolders')
  label_of = {name: i for i, name in enumerate(class_names)}
  splits = {}
  if annotations:
    for line in _lines(annotations):
      parts = line.rsplit(maxsplit=1)
      cls = parts[0].replace('\\', '/').split('/')[0]
      if len(parts) != 2 or cls not in label_of:
        raise AnnotationError(f'{annotations}: bad line {line!r} (want "CLASS/VIDEO SPLIT", CLASS a subfolder)')
      splits.setdefault(parts[1], []).append((parts[0], label_of[cls]))
    return class_names, splits
  rng = random.Random(seed)
  splits = {'train': [], 'test': []}
  for label, cls in enumerate(class_names):
    names = sorted(n for n in os.listdir(os.path.join(videos_dir, cls))
                   if not n.startswith('.') and os.path.isfile(os.path.join(videos_dir, cls, n)))
    order = list(range(len(names)))
    rng.shuffle(order)
    num_test = round(len(names) * test_ratio)
    test = set(order[:num_test])
    for i, name in enumerate(names):
      splits['test' if i in test else 'train'].append((f'{cls}/{name}', label))
  return class_names, splits


LAYOUTS = {'ucf101': ucf101, 'hmdb51': hmdb51, 'kinetics': kinetics, 'ssv2': ssv2, 'folder': folder}


def parse(layout, annotations, videos_dir, split=1, **kwargs):
  """Dispatches to a layout parser; returns (class_names, {split: [(rel_path, label)]})."""
  if layout not in LAYOUTS:
    raise AnnotationError(f'--layout={layout!r}: choose from {sorted(LAYOUTS)}')
  if split not in (1, 2, 3):
    raise AnnotationError(f'--split={split}: official splits are 1, 2, 3')
  class_names, splits = LAYOUTS[layout](annotations, videos_dir, split, **kwargs)
  if not class_names or not any(splits.values()):
    raise AnnotationError(f'{annotations or videos_dir}: no labelled videos found for layout {layout}')
  return class_names, splits
