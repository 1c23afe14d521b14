"""Pose files -> (num_frames, 18, 3) COCO-18 poses: x, y in [0, 1], confidence (0 = no joint / no person).

Readers: OpenPose `--write_json` output (one `<video>_<frame:012d>_keypoints.json` per frame, people[] with
`pose_keypoints_2d` (OpenPose >= 1.2) or `pose_keypoints` (older releases), 18 (COCO) or 25 (BODY-25) joints)
and Kinetics-skeleton JSON (one `<video>.json`: data[].frame_index, data[].skeleton[].pose (x0, y0, x1, ...) and
.score). Kinetics-skeleton frame numbers start at 1 in the released data set and at 0 in files written by
ST-GCN's own packer (tools/utils/openpose.py json_pack, which writes one entry per OpenPose frame file, empty
ones too): a file whose smallest frame_index is 0 is read as numbered from 0, any other as numbered from 1.
Several people: the most confident detection of the whole video starts the track, which is followed
forwards and backwards by the nearest centre.
"""
import glob
import json
import os
import re

import numpy as np

from csvr_jax.data.records import NUM_JOINTS

# BODY-25 index for each COCO-18 joint (BODY-25 adds MidHip at 8 and feet at 19-24).
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
_FRAME_NUMBER = re.compile(r'_(\d+)_keypoints\.json$')


class PoseError(Exception):
  """Malformed pose file; the message names the file."""


def to_coco18(flat, path='?'):
  """Flat OpenPose keypoints (x0, y0, c0, ...) of 18 or 25 joints -> (18, 3) float32 COCO-18."""
  kp = np.asarray(flat, np.float32)
  if kp.size == NUM_JOINTS * 3:
    return kp.reshape(NUM_JOINTS, 3)
  if kp.size == 25 * 3:
    return kp.reshape(25, 3)[list(BODY25_TO_COCO18)]
  raise PoseError(f'{path}: pose keypoints have {kp.size} values; want 54 (COCO-18) or 75 (BODY-25)')


OPENPOSE_KEYS = ('pose_keypoints_2d', 'pose_keypoints')  # OpenPose >= 1.2, then the older releases' name


def _person_keypoints(person, path):
  for key in OPENPOSE_KEYS:
    if key in person:
      return person[key]
  raise PoseError(f'{path}: a person without {" or ".join(OPENPOSE_KEYS)}')


def read_openpose_frame(path):
  """One OpenPose JSON file -> list of (18, 3) arrays (one per person, coordinates as written)."""
  try:
    with open(path) as f:
      data = json.load(f)
    people = data['people']
    out = [to_coco18(_person_keypoints(p, path), path) for p in people]
  except PoseError:
    raise
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise PoseError(f'{path}: malformed OpenPose JSON ({type(e).__name__}: {e})') from None
  if any(not np.all(np.isfinite(p)) for p in out):
    raise PoseError(f'{path}: non-finite keypoints')
  return out


def openpose_files(pose_root, rel_path):
  """The per-frame JSON files of one video, in frame order, or [] if there are none.

  Looks in `<root>/<rel_path without extension>/`, `<root>/<stem>/` and flat `<root>/<stem>_*_keypoints.json`.
  """
  stem_path = os.path.splitext(rel_path)[0]
  stem = os.path.basename(stem_path)
  for folder in (os.path.join(pose_root, stem_path), os.path.join(pose_root, stem)):
    files = glob.glob(os.path.join(glob.escape(folder), '*_keypoints.json'))
    if files:
      break
  else:
    files = glob.glob(os.path.join(glob.escape(pose_root), glob.escape(stem) + '_*_keypoints.json'))
  numbered = []
  for path in files:
    m = _FRAME_NUMBER.search(os.path.basename(path))
    if m:
      numbered.append((int(m.group(1)), path))
  return [path for _, path in sorted(numbered)]


def read_openpose_video(pose_root, rel_path):
  """-> list (one per frame file, frame order) of lists of (18, 3) people, or None if no files exist."""
  files = openpose_files(pose_root, rel_path)
  return [read_openpose_frame(p) for p in files] if files else None


def kinetics_skeleton_file(pose_root, rel_path):
  """`<root>/<rel_path without ext>.json`, `<root>/<stem>.json` or, for Kinetics mirror names
  (`<id>_<start>_<end>`), `<root>/<id>.json` (ST-GCN names its files by YouTube id); None if absent."""
  stem_path = os.path.splitext(rel_path)[0]
  stem = os.path.basename(stem_path)
  candidates = [stem_path, stem]
  m = re.match(r'^(.+)_\d{6}_\d{6}$', stem)
  if m:
    candidates.append(m.group(1))
  for c in candidates:
    path = os.path.join(pose_root, c + '.json')
    if os.path.isfile(path):
      return path
  return None


def read_kinetics_skeleton(path):
  """Kinetics-skeleton JSON -> list over video frames (from frame 0) of lists of (18, 3) people.

  Numbered from 0 when the smallest frame_index is 0, else from 1 (module docstring).
  """
  try:
    with open(path) as f:
      data = json.load(f)['data']
    entries = [(int(entry['frame_index']), entry['skeleton']) for entry in data]
    first = min((t for t, _ in entries), default=1)
    if first < 0:
      raise ValueError(f'frame_index {first} < 0')
    base = 0 if first == 0 else 1
    frames = {}
    for t, skeleton in entries:
      people = frames.setdefault(t - base, [])
      for person in skeleton:
        xy = np.asarray(person['pose'], np.float32).reshape(NUM_JOINTS, 2)
        score = np.asarray(person['score'], np.float32).reshape(NUM_JOINTS, 1)
        people.append(np.concatenate([xy, score], axis=1))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise PoseError(f'{path}: malformed Kinetics-skeleton JSON ({type(e).__name__}: {e})') from None
  length = max(frames) + 1 if frames else 0
  return [frames.get(t, []) for t in range(length)]


def _centre(person):
  """Confidence-weighted centre (2,) of a (18, 3) person, None if no joint is visible."""
  w = person[:, 2]
  if w.sum() <= 0:
    return None
  return (person[:, :2] * w[:, None]).sum(0) / w.sum()


def track_person(frames_people):
  """list over frames of lists of (18, 3) people -> (F, 18, 3): one person followed across frames.

  The detection with the highest mean joint confidence in the whole video starts the track; from there,
  each frame (forwards, then backwards) keeps the person whose centre is nearest to the last tracked centre.
  Frames without anyone get confidence 0 and keep the last centre.
  """
  num_frames = len(frames_people)
  out = np.zeros((num_frames, NUM_JOINTS, 3), np.float32)
  scored = [(p[:, 2].mean(), t, i) for t, people in enumerate(frames_people) for i, p in enumerate(people)
            if _centre(p) is not None]
  if not scored:
    return out
  _, t0, i0 = max(scored, key=lambda s: (s[0], -s[1], -s[2]))  # ties: earliest frame, first person
  out[t0] = frames_people[t0][i0]
  for order in (range(t0 + 1, num_frames), range(t0 - 1, -1, -1)):
    centre = _centre(out[t0])
    for t in order:
      candidates = [(np.sum((c - centre) ** 2), i) for i, p in enumerate(frames_people[t])
                    if (c := _centre(p)) is not None]
      if candidates:
        out[t] = frames_people[t][min(candidates)[1]]
        centre = _centre(out[t])
  return out


def normalise(poses, width, height):
  """(F, 18, 3) in pixels (or already in [0, 1]) -> x / width, y / height clipped to [0, 1]; x = y = 0
  where the confidence is 0. Coordinates that are all <= 1 are taken as already normalised (OpenPose
  --keypoint_scale 3, Kinetics-skeleton)."""
  poses = np.array(poses, np.float32)
  visible = poses[..., 2] > 0
  xy = poses[..., :2]
  if visible.any() and xy[visible].max() > 1.0:
    if not width or not height:
      raise PoseError('pixel pose coordinates need the video size')
    xy = xy / np.array([width, height], np.float32)
  poses[..., :2] = np.clip(xy, 0.0, 1.0)
  poses[..., 2] = np.clip(poses[..., 2], 0.0, 1.0)
  poses[~visible] = 0.0
  return poses


def fit_length(poses, num_frames):
  """Crops or zero-pads (F', 18, 3) to (num_frames, 18, 3): pose files may count frames differently."""
  out = np.zeros((num_frames, NUM_JOINTS, 3), np.float32)
  n = min(num_frames, len(poses))
  out[:n] = poses[:n]
  return out


def parse_spec(spec):
  """'none' | 'openpose:DIR' | 'kinetics_skeleton:DIR' -> (kind, dir)."""
  kind, _, root = spec.partition(':')
  if kind == 'none' and not root:
    return 'none', ''
  if kind not in ('openpose', 'kinetics_skeleton') or not root:
    raise ValueError(f'--poses={spec!r}: want none, openpose:DIR or kinetics_skeleton:DIR')
  if not os.path.isdir(root):
    raise ValueError(f'--poses={spec!r}: {root} is not a folder')
  return kind, root


def load_poses(kind, root, rel_path, num_frames, width, height):
  """-> ((num_frames, 18, 3) float16, pose_source). No pose file for this video: zeros and 'none'.
  Raises PoseError on malformed files."""
  frames_people = None
  if kind == 'openpose':
    frames_people = read_openpose_video(root, rel_path)
  elif kind == 'kinetics_skeleton':
    path = kinetics_skeleton_file(root, rel_path)
    frames_people = read_kinetics_skeleton(path) if path else None
  if frames_people is None:
    return np.zeros((num_frames, NUM_JOINTS, 3), np.float16), 'none'
  poses = normalise(track_person(frames_people), width, height)
  return fit_length(poses, num_frames).astype(np.float16), kind


def pose_file_status(kind, root, rel_path):
  """What data_prep.check reports for one video's poses, cheaply: 'ok', 'missing' (no pose file) or 'empty'
  (a Kinetics-skeleton file with nobody in it); None when no poses were asked for. Only the first OpenPose frame
  file is parsed (a video has hundreds). Raises PoseError on a malformed file."""
  if kind == 'openpose':
    files = openpose_files(root, rel_path)
    if not files:
      return 'missing'
    read_openpose_frame(files[0])
    return 'ok'
  if kind == 'kinetics_skeleton':
    path = kinetics_skeleton_file(root, rel_path)
    if path is None:
      return 'missing'
    return 'ok' if any(read_kinetics_skeleton(path)) else 'empty'
  return None


def has_person(poses):
  """True when any joint of (F, 18, 3) poses has a positive confidence."""
  return bool(np.any(np.asarray(poses)[..., 2] > 0))
