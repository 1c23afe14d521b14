"""How much of an annotated dataset is usable: one table shared by data_prep.check (before a build, from cheap
probes) and data_prep.build (after it, from what was built).

Columns, per split: listed (in the split files), found (the file is there), decodable (opens and decodes),
too short (fewer frames than --min_frames), bad poses (a malformed pose file), usable (what the build writes:
decodable, long enough, poses readable), missing poses (usable videos without pose file, or whose poses have
nobody in them; they are written with zero-confidence poses). Each column counts a subset of the one before it,
except missing poses, a subset of usable.
"""
from data_prep import poses as poses_lib
from data_prep import video_io

COLUMNS = ('listed', 'found', 'decodable', 'too_short', 'bad_poses', 'usable', 'missing_poses')
PROBLEMS = ('missing', 'undecodable', 'too_short', 'bad_poses')  # why a video is not usable


def problem_of(error):
  """The PROBLEMS entry for an exception raised while preparing or probing a video."""
  if isinstance(error, video_io.VideoNotFound):
    return 'missing'
  if isinstance(error, video_io.VideoTooShort):
    return 'too_short'
  if isinstance(error, poses_lib.PoseError):
    return 'bad_poses'
  return 'undecodable'


class Coverage:
  """Per-split counts of COLUMNS, filled one video at a time."""

  def __init__(self):
    self.counts = {}

  def add(self, split, problem=None, missing_poses=False):
    """One listed video: `problem` in PROBLEMS, or None for a usable one (missing_poses: without poses)."""
    if problem is not None and problem not in PROBLEMS:
      raise ValueError(f'unknown problem {problem!r}; want one of {PROBLEMS}')
    c = self.counts.setdefault(split, dict.fromkeys(COLUMNS, 0))
    c['listed'] += 1
    if problem == 'missing':
      return
    c['found'] += 1
    if problem == 'undecodable':
      return
    c['decodable'] += 1
    if problem in ('too_short', 'bad_poses'):
      c[problem] += 1
      return
    c['usable'] += 1
    c['missing_poses'] += bool(missing_poses)

  def as_dict(self):
    return {split: dict(c) for split, c in sorted(self.counts.items())}


def format_table(counts, poses_requested=True):
  """{split: {column: n}} -> an aligned text table with a total row; pose columns show '-' without poses."""
  headers = ['split'] + [c.replace('_', ' ') for c in COLUMNS]
  total = {c: sum(row[c] for row in counts.values()) for c in COLUMNS}
  rows = []
  for split, row in [*sorted(counts.items()), ('total', total)]:
    cells = [split] + [str(row[c]) if poses_requested or 'poses' not in c else '-' for c in COLUMNS]
    rows.append(cells)
  widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
  fmt = lambda cells: '  '.join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells,
                                                                                                           widths)))
  return '\n'.join([fmt(headers)] + [fmt(r) for r in rows])
