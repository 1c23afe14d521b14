"""The pretraining schedule: stages (which losses, which networks train, for how long) and their resolution.

The paper (III-E, IV-B): "we firstly pretrain each branch separately and then jointly optimize them ... for
stable training. Firstly, CGAN in pose prediction branch and TGAN v2 in video generating branch are pretrained
with respective training objectives". `paper_stages` is that schedule: pose GAN, context branch, video GANs
(with the pose encoder and V-Network they read from in inference mode), then everything jointly. The paper
gives no stage lengths; the recipes choose them in epochs (docs/design.md, "Schedule").

Pure Python (no JAX): config files import it.
"""
import dataclasses

import ml_collections

LOSS_NAMES = ('pose', 'context', 'video')
ALL_NETWORKS = ('vnet', 'inet', 'heads', 'pose_g', 'pose_d', 'integration',
                'video_g_rec', 'video_d_rec', 'video_g_pred', 'video_d_pred')
DISCRIMINATORS = ('pose_d', 'video_d_rec', 'video_d_pred')
VIDEO_TARGETS = {'both': ('rec', 'pred'), 'reconstruction': ('rec',), 'prediction': ('pred',)}
GAN_PAIRS = {'pose': ('pose_g', 'pose_d'), 'video_rec': ('video_g_rec', 'video_d_rec'),
             'video_pred': ('video_g_pred', 'video_d_pred')}


def stage(name, steps, losses, trainable, epochs=0.0):
  """One stage of config.train.stages: active losses, the networks that receive updates, and its length:
  `steps` > 0, or -1 for the rest of the run, or steps=0 with `epochs` > 0 (resolved with the dataset size)."""
  return ml_collections.ConfigDict(dict(name=name, steps=int(steps), epochs=float(epochs), losses=tuple(losses),
                                        trainable=tuple(trainable)))


def paper_stages(branch_steps=0, joint_steps=-1, branch_epochs=0.0):
  """The paper's schedule: the pose GAN, the context branch and the video GANs each on their own objective
  (`branch_steps` each, or `branch_epochs` each), then everything jointly (`joint_steps`, -1 = the rest)."""
  branch = lambda name, losses, trainable: stage(name, branch_steps, losses, trainable, epochs=branch_epochs)
  return (
      branch('pose', ['pose'], ['pose_g', 'pose_d']),
      branch('context', ['context'], ['vnet', 'inet', 'heads']),
      branch('video_warmup', ['video'],
             ['integration', 'video_g_rec', 'video_d_rec', 'video_g_pred', 'video_d_pred']),
      stage('joint', joint_steps, ['pose', 'context', 'video'], list(ALL_NETWORKS)),
  )


def video_targets(config):
  """config.loss.video_targets -> ('rec', 'pred') | ('rec',) | ('pred',)."""
  if config.loss.video_targets not in VIDEO_TARGETS:
    raise ValueError(f'config.loss.video_targets: unknown {config.loss.video_targets!r}; choose '
                     f'{" | ".join(VIDEO_TARGETS)}')
  return VIDEO_TARGETS[config.loss.video_targets]


def active_gans(losses_):
  """Names of the GANs the active losses train: subset of ('pose', 'video_rec', 'video_pred')."""
  gans = ('pose',) if 'pose' in losses_ else ()
  if 'video' in losses_:
    gans += tuple('video_' + t for t in losses_['video'])
  return gans


def networks_used(losses_):
  """Every network the forward pass of these losses runs (trained or not)."""
  used = set()
  if 'context' in losses_:
    used |= {'vnet', 'inet', 'heads'}
  if 'pose' in losses_:
    used |= {'pose_g', 'pose_d'}
  if 'video' in losses_:
    used |= {'vnet', 'pose_g', 'integration'}
  for gan in active_gans(losses_):
    used |= set(GAN_PAIRS[gan])
  return used


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
  """A resolved stage: steps [start, end), active losses ({'pose': (), 'context': (), 'video': targets})."""
  name: str
  start: int
  end: int
  losses: dict
  trainable: tuple

  @property
  def d_names(self):
    return tuple(n for n in self.trainable if n in DISCRIMINATORS)

  @property
  def g_names(self):
    return tuple(n for n in self.trainable if n not in DISCRIMINATORS)


def _check_stage(i, s):
  key = f'config.train.stages[{i}] ({s.name})'
  for l in s.losses:
    if l not in LOSS_NAMES:
      raise ValueError(f'{key}: unknown loss {l!r}; choose from {LOSS_NAMES}')
  for n in s.trainable:
    if n not in ALL_NETWORKS:
      raise ValueError(f'{key}: unknown network {n!r}; choose from {ALL_NETWORKS}')
  if s.steps < -1 or s.epochs < 0 or (s.steps != 0 and s.epochs > 0):
    raise ValueError(f'{key}: give steps (> 0, or -1 for the rest of the run) or epochs (> 0), not both '
                     f'(steps={s.steps}, epochs={s.epochs})')


def check_stages(config):
  """One-line errors for unknown branches, losses, networks and bad stage lengths (no dataset needed)."""
  for b in config.loss.branches:
    if b not in LOSS_NAMES:
      raise ValueError(f'config.loss.branches: unknown branch {b!r}; choose from {LOSS_NAMES}')
  video_targets(config)
  for i, s in enumerate(config.train.stages):
    _check_stage(i, s)


def _length(key, s, steps_per_epoch):
  """Steps of a configured stage (-1 = the rest of the run)."""
  if s.epochs > 0:
    if not steps_per_epoch:
      raise ValueError(f'{key}: a length in epochs needs the dataset size (steps per epoch)')
    return max(1, round(s.epochs * steps_per_epoch))
  return s.steps


def resolve_stages(config, total_steps, steps_per_epoch=None):
  """config.train.stages -> [Stage] covering [0, total_steps).

  Ablations (config.loss.branches) keep the step budget: a stage left without an active loss gives its steps to
  the last stage that remains, and consecutive stages with the same active losses merge into one (one compiled
  step; trainable networks united). Networks a stage does not run are dropped from its trainable list.
  steps=-1 takes the rest of the run. Errors are one line naming the key.
  """
  check_stages(config)
  targets = video_targets(config)
  kept, spare = [], 0  # kept: [name, steps, losses, trainable]
  for i, s in enumerate(config.train.stages):
    steps = _length(f'config.train.stages[{i}] ({s.name})', s, steps_per_epoch)
    losses_ = {l: (targets if l == 'video' else ()) for l in s.losses if l in config.loss.branches}
    if not losses_:
      spare += max(steps, 0)
    elif kept and losses_ == kept[-1][2]:
      kept[-1][1] = -1 if -1 in (steps, kept[-1][1]) else kept[-1][1] + steps
      kept[-1][3] += [n for n in s.trainable if n not in kept[-1][3]]
    else:
      kept.append([s.name, steps, losses_, list(s.trainable)])
  if not kept:
    raise ValueError(f'config.train.stages: no stage has a loss of config.loss.branches={config.loss.branches}')
  if kept[-1][1] != -1:  # -1 already takes the rest, spare steps included
    kept[-1][1] += spare
  stages, start = [], 0
  for name, steps, losses_, trainable in kept:
    end = total_steps if steps == -1 else min(start + steps, total_steps)
    if end > start:
      used = networks_used(losses_)
      stages.append(Stage(name, start, end, losses_, tuple(n for n in trainable if n in used)))
    start = end
  if start < total_steps:
    raise ValueError(f'config.train.stages cover {start} steps but the run has {total_steps} '
                     '(config.train.total_steps / epochs): give the last stage steps=-1')
  return stages


def stage_at(stages, step):
  for s in stages:
    if s.start <= step < s.end:
      return s
  return stages[-1]
