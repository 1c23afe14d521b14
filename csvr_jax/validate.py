"""One start-up check of a config's allowed values: `validate(config)` raises a one-line ValueError naming the key.

main.py calls it before any mode runs (also with --dry_run), so a typo in a choice fails in a second instead of
at the first checkpoint or evaluation. Each choice's allowed values are owned by the module that uses them
(imported here); shapes that only the networks can judge (crop sizes) are checked when those are built.
"""
from csvr_jax.train import schedule

OPTIMIZERS = ('sgd',)
DISC_OPTIMIZERS = ('sgd', 'adam')
LR_SCHEDULES = ('constant', 'cosine')
CONTEXT_LOSSES = ('mi_info_nce', 'info_nce', 'l2')
GAN_LOSSES = ('bce', 'wgan')
GAN_UPDATES = ('one_stage', 'alternating')
DTYPES = ('float32', 'bfloat16', 'float16')


def choices():
  """key -> allowed values (the modules that use them own the lists)."""
  from csvr_jax import models  # deferred: imports JAX and flax
  from csvr_jax.data import sampling
  from csvr_jax.models import backbone_layers, downstream, integration, pose_gan
  from csvr_jax.train import networks
  return {
      'model.vnet': tuple(models.VIDEO_BACKBONES),
      'model.inet': tuple(models.IMAGE_BACKBONES),
      'model.conv_impl': backbone_layers.CONV_IMPLS,
      'model.integration': tuple(integration.INTEGRATIONS),
      'model.pose_output': pose_gan.OUTPUTS,
      'model.video_gan': networks.VIDEO_GANS,
      'model.dtype': DTYPES,
      'data.short_video_policy': sampling.POLICIES,
      'optim.name': OPTIMIZERS,
      'optim.disc_name': DISC_OPTIMIZERS,
      'optim.schedule': LR_SCHEDULES,
      'finetune.schedule': LR_SCHEDULES,
      'finetune.features': downstream.FEATURES,
      'loss.context': CONTEXT_LOSSES,
      'loss.gan': GAN_LOSSES,
      'loss.video_targets': tuple(schedule.VIDEO_TARGETS),
      'gan_update': GAN_UPDATES,
  }


def _get(config, key):
  for part in key.split('.'):
    config = config[part]
  return config


def _check_subset(key, values, allowed):
  unknown = [v for v in values if v not in allowed]
  if unknown:
    raise ValueError(f'config.{key}: unknown {unknown[0]!r}; choose from {", ".join(allowed)}')


def validate(config):
  """Raises ValueError('config.<key>: ...') for the first value outside its choices."""
  from csvr_jax import experiment  # deferred with choices()
  from csvr_jax.models import downstream
  from csvr_jax.train import evaluators
  for key, allowed in choices().items():
    _check_subset(key, (_get(config, key),), allowed)
  _check_subset('experiment.features', config.experiment.features, downstream.FEATURES)
  _check_subset('experiment.evaluations', config.experiment.evaluations, experiment.EVALUATIONS)
  _check_subset('demo.features', config.demo.features, downstream.FEATURES)
  for name, spec in config.experiment.downstream.items():
    _check_subset(f'experiment.downstream.{name}', tuple(spec), tuple(experiment.DOWNSTREAM_KEYS))
  if config.n_critic < 1:
    raise ValueError(f'config.n_critic={config.n_critic}: at least 1')
  schedule.check_stages(config)
  evaluators.check_specs(config)
