"""The paper's Table I, one command per row: pretrain on UCF101 split 1 with the row's branches, export, finetune
on UCF101 and HMDB51 from the row's features (R(2+1)D-18, as the paper's ablations).

  python -m csvr_jax.main --config=configs/table1.py:fi_full --workdir=runs/table1/fi_full

Rows (the paper's UCF101 / HMDB51 top-1; README lists them): scratch (no pretraining, V-Network features),
fd (pose branch only, f_d), fs (context branch only, f_s = the V-Network), fi_adain / fi_concat (pose and
context branches, no video-generating branch: the integration layer is not trained before finetuning, as the
paper's f_i rows "generated without optimization from video generating branch"), fi_full (full CSVR, f_i).
Add `,smoke` for a tiny run on any machine (e.g. `:fd,smoke --config.data.dataset_dir=...`).
"""
from configs import base
from configs import hmdb51_finetune
from configs import ucf101
from configs import ucf101_finetune
from csvr_jax import config_variants
from csvr_jax.train import schedule

ALL_BRANCHES = ('pose', 'context', 'video')
ROWS = {
    'scratch': dict(method='Training from scratch', branches=(), features='vnet', integration='adain'),
    'fd': dict(method='Pose branch', branches=('pose',), features='fd', integration='adain'),
    'fs': dict(method='Context branch', branches=('context',), features='vnet', integration='adain'),
    'fi_adain': dict(method='Pose + context, AdaIN', branches=('pose', 'context'), features='fi',
                     integration='adain'),
    'fi_concat': dict(method='Pose + context, concat', branches=('pose', 'context'), features='fi',
                      integration='concat'),
    'fi_full': dict(method='CSVR', branches=ALL_BRANCHES, features='fi', integration='adain'),
}
PAPER_TOP1 = {'scratch': (65.0, 32.5), 'fd': (75.1, 38.4), 'fs': (73.1, 40.2), 'fi_adain': (81.0, 46.3),
              'fi_concat': (75.2, 41.7), 'fi_full': (90.4, 56.6)}  # UCF101, HMDB51 (see README on fd / fs)


def _downstream(finetune_config, name):
  """The finetuning keys of configs/<name>_finetune.py that differ between the downstream datasets."""
  f = finetune_config.get_config()
  return base.ConfigDict(dict(dataset_dir=f.data.dataset_dir, num_classes=f.finetune.num_classes,
                              lr_per_sample=f.finetune.lr_per_sample, weight_decay=f.finetune.weight_decay))


def get_config(arg=None):
  variants = config_variants.parse(arg, 'configs/table1.py', tuple(ROWS), ('smoke',))
  row = ROWS[config_variants.require_one(variants, tuple(ROWS), 'configs/table1.py')]
  c = ucf101.get_config('smoke' if 'smoke' in variants else None)
  c.mode = 'experiment'
  c.model.vnet = 'r2plus1d_18'
  c.model.integration = row['integration']
  c.loss.branches = row['branches'] or ALL_BRANCHES
  c.experiment.method = row['method']
  c.experiment.pretrain = bool(row['branches'])
  c.experiment.features = (row['features'],)
  c.experiment.evaluations = ('finetune',)
  c.experiment.downstream.ucf101 = _downstream(ucf101_finetune, 'ucf101')
  c.experiment.downstream.hmdb51 = _downstream(hmdb51_finetune, 'hmdb51')
  if 'smoke' in variants:  # the CPU demo's scale (configs/demo.py), every stage a step, a 4-step finetune
    c.model.update(width=0.125, embed_dim=32, head_hidden=64, pose_channels=16, pose_noise_dim=8,
                   video_g_channels=8, video_d_channels=8, video_noise_dim=8)
    c.data.update(clip_len=4, future_len=4, stride=4, crop_size=32, short_side=40, max_iframes=2, num_eval_clips=2)
    c.train.update(total_steps=4, batch_size=8, fast_compile=True)
    c.model.video_gan_levels = 3  # 4-frame clips: levels of 4, 2, 1 frames
    c.train.stages = schedule.paper_stages(branch_steps=1)
    c.finetune.update(total_steps=4, batch_size=8)
    c.eval.batch_size = 8
    for name in ('ucf101', 'hmdb51'):
      c.experiment.downstream[name].dataset_dir = ''  # the pretraining dataset: set it on the command line
  return c
