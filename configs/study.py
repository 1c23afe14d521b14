"""The evidence study (--mode=study, csvr_jax/study/): what each CSVR branch adds, with 95% intervals.

  python -m csvr_jax.main --config=configs/study.py --workdir=runs/study

Variants:
  (none)      the CPU study: two SynthActions variants (scene: context 0.5; motion: context 0), 3 training seeds,
              CSVR / Context only / Pose only / random init, linear probe, kNN / R@k and a short finetune; the
              demo's shapes (4-frame 32x32 clips, widths 1/8). Its wall time and the load it ran under are in
              its report (and docs/study.md).
  quick       the pipeline check (tests/test_study.py): 1 seed, 5 classes x 8 videos, 2 pretraining steps.
  validation  the same study on the validation draw (another generator seed): where steps and learning rates
              are chosen; combine with the others (`:validation` or `:gpu,validation`). Use its own workdir.
  long        every stage twice as long (the CPU study: 1,400 steps): whether the budget limits a target
              (docs/study.md, point 4); combine with the others (`:validation,long`).
  gpu         larger shapes for one GPU (8-frame 64x64 clips, widths 1/4, batch 32, 200 training videos per class,
              more steps); not yet run.
Everything chosen on data was chosen on the validation draw (docs/study.md gives the runs).
"""
from configs import demo
from csvr_jax import config_variants
from csvr_jax.train import schedule


def set_schedule(c, pose_steps, context_steps, video_steps, joint_steps):
  """The paper's staged schedule with the study's lengths: each branch alone (pose GAN, context branch, video
  GANs), then all jointly. Ablations keep the total (schedule.resolve_stages)."""
  c.train.stages = (
      schedule.stage('pose', pose_steps, ['pose'], ['pose_g', 'pose_d']),
      schedule.stage('context', context_steps, ['context'], ['vnet', 'inet', 'heads']),
      schedule.stage('video_warmup', video_steps, ['video'],
                     ['integration', 'video_g_rec', 'video_d_rec', 'video_g_pred', 'video_d_pred']),
      schedule.stage('joint', joint_steps, ['pose', 'context', 'video'], list(schedule.ALL_NETWORKS)),
  )
  c.train.total_steps = pose_steps + context_steps + video_steps + joint_steps
  # Pretext metrics (Table II) at four points of the run; checkpoints at the same steps (resumption).
  c.checkpoint.every_steps = max(1, c.train.total_steps // 4)


def get_config(arg=None):
  variants = config_variants.parse(arg, 'configs/study.py', ('quick', 'gpu'), ('validation',), ('long',))
  c = demo.get_config()
  c.mode = 'study'
  c.logging.log_every_steps = 25
  c.logging.image_every_steps = 10 ** 9  # no image grids: the study's runs are read through their numbers
  c.data.num_eval_clips = 4
  set_schedule(c, pose_steps=100, context_steps=100, video_steps=100, joint_steps=400)
  c.finetune.total_steps = 100
  if 'quick' in variants:
    c.train.fast_compile = True  # a handful of steps: compilation is nearly all of the time
    c.train.batch_size = 4
    set_schedule(c, pose_steps=0, context_steps=0, video_steps=0, joint_steps=2)
    c.checkpoint.every_steps = 2
    c.finetune.batch_size = 4
    c.finetune.total_steps = 2
    c.data.num_eval_clips = 2
    c.eval.pretext_batches = 2
    c.study.classes = 5
    c.study.train_videos_per_class = 4
    c.study.test_videos_per_class = 4
    c.study.frames = 24
    c.study.seeds = (0,)
    c.study.bootstrap_samples = 200
  elif 'gpu' in variants:
    c.model.conv_impl = 'fold'  # fold_taps is for XLA:CPU; a GPU's 3D convolutions are fast as they are
    c.model.width = 0.25
    c.model.embed_dim = 64
    c.model.head_hidden = 128
    c.model.video_g_channels = 16
    c.model.video_d_channels = 16
    c.train.batch_size = 32
    c.data.clip_len = 8
    c.data.future_len = 8
    c.data.crop_size = 64
    c.data.short_side = 80
    c.data.num_workers = 8  # Grain processes: a lent GPU machine has 16 cores
    c.study.build_workers = 8
    c.study.size = 80
    c.study.frames = 64
    # 200 training videos per class: with 30 the V-Network memorises each video's appearance even with labels, with
    # 200 it learns the motion classes from RGB (supervised yardstick, docs/study.md, point 1).
    c.study.train_videos_per_class = 200
    c.study.test_videos_per_class = 50
    c.study.processes = 1  # one accelerator
    set_schedule(c, pose_steps=300, context_steps=300, video_steps=300, joint_steps=1500)
    c.finetune.batch_size = 32
    c.finetune.total_steps = 300
    c.eval.batch_size = 64
  if 'long' in variants:
    set_schedule(c, *(2 * s.steps for s in c.train.stages))
  if 'validation' in variants:
    c.study.draw = 'validation'
    # Learning curves for the choices made here: the V-Network's kNN and linear probe at every checkpoint.
    c.evals.knn = dict(type='knn', every_steps=-1)
    c.evals.probe = dict(type='linear_probe', every_steps=-1)
  return c
