"""Every configuration key of csvr_jax, with the paper's defaults.

Other configs import `get_config` from here and override. Library code reads keys directly
(`config.optim.momentum`), never `config.get(key, default)`: a key that is not declared here does not
exist. Variants are selected with one string argument (`--config=configs/k400.py:smoke`).
"""
import ml_collections

from csvr_jax import config_variants
from csvr_jax.data import normalization
from csvr_jax.train import schedule

ConfigDict = ml_collections.ConfigDict


def get_config(arg=None):
  config_variants.parse(arg, 'configs/base.py')  # no variants
  c = ConfigDict()
  c.seed = 0
  c.mode = 'pretrain'  # default mode when --mode is not given: pretrain|finetune|retrieval|linear_probe|export|demo

  # ---------------------------------------------------------------- model
  c.model = ConfigDict()
  c.model.vnet = 'r3d_18'          # c3d | r3d_18 | r2plus1d_18 | mc3_18 | s3d
  c.model.inet = 'r2d_10'
  c.model.width = 1.0              # channel multiplier of V- and I-Network (tiny CPU configs use < 1)
  c.model.dtype = 'float32'        # compute dtype (bfloat16 on accelerators); params stay float32
  c.model.conv_impl = 'fold'  # fold | native | fold_pad8 | fold_s2d (GPU recipes) | fold_taps (CPU): backbone_layers
  c.model.sync_bn = True           # BatchNorm statistics over the global batch (all devices)
  c.model.embed_dim = 128          # output of the projection heads g^V, g^I
  c.model.head_hidden = 512        # hidden width of the two-layer MLP heads
  c.model.integration = 'adain'    # adain (eq. 3-5) | concat (Table I ablation)
  c.model.num_joints = 18          # COCO-18 / OpenPose
  c.model.pose_channels = 64       # width of the pose GAN's 1D convolutions
  c.model.pose_encoder_layers = 6  # f_d is the output of the last of six encoder layers (Table III)
  c.model.pose_noise_dim = 16
  c.model.pose_output = 'absolute'  # absolute | residual (P_gen = last observed pose + decoder; docs/design.md)
  c.model.video_g_channels = 64    # base width of the video generators
  c.model.video_d_channels = 32    # base width of the video discriminators
  c.model.video_noise_dim = 32
  # Video GANs: tgan2 = TGAN v2 (renders at several levels, subsampling layers, a discriminator per level;
  # renders densely at inference) | dense (every frame at full resolution in every step, one discriminator).
  c.model.video_gan = 'tgan2'      # tgan2 (TGAN v2: multi-level, subsampled training, dense inference) | dense
  c.model.video_gan_levels = 4     # tgan2: level l has T/2^l frames at S/2^(L-1-l) (T divisible by 2^(L-1))
  c.model.dropout = 0.3            # before the classifier (finetuning)

  # ---------------------------------------------------------------- data
  c.data = ConfigDict()
  c.data.dataset_dir = ''          # folder of the TFDS dataset built by data_prep.build (holds dataset_info.json)
  c.data.train_split = 'train'
  c.data.eval_split = 'test'
  c.data.clip_len = 16
  c.data.stride = 4
  c.data.future_len = 16
  c.data.crop_size = 112
  c.data.short_side = 128
  c.data.max_iframes = 4           # M_max: I-frames per clip, padded with a validity mask
  c.data.iframe_margin = 5         # the clip window is widened by this many frames on each side (DCM)
  c.data.short_video_policy = 'loop'  # loop | pad
  c.data.num_workers = 2           # Grain worker processes per host (0 = in-process)
  c.data.prefetch = 2
  c.data.shuffle_seed = 0
  c.data.mean = normalization.KINETICS_MEAN  # torchvision's video models expect these
  c.data.std = normalization.KINETICS_STD
  c.data.crop_scale = (0.2, 1.0)   # random resized crop area range
  c.data.crop_ratio = (3 / 4, 4 / 3)
  c.data.flip_prob = 0.5
  c.data.jitter_prob = 0.8
  c.data.jitter_strength = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
  c.data.blur_prob = 0.5
  c.data.blur_sigma = (0.1, 2.0)
  c.data.num_eval_clips = 10       # uniformly spaced clips per video at test / retrieval time

  # ---------------------------------------------------------------- training
  c.train = ConfigDict()
  c.train.batch_size = 16          # global batch (the paper: 16)
  c.train.epochs = 200
  c.train.total_steps = -1         # -1: derived from epochs and the dataset size
  # The paper's schedule (schedule.paper_stages): pose GAN, context branch, video GANs, each alone for
  # `branch_epochs`, then everything jointly for the rest of the run (docs/design.md, "Schedule").
  c.train.stages = schedule.paper_stages(branch_epochs=10)
  c.train.remat = False            # rematerialise backbone blocks where memory binds
  c.train.fast_compile = False     # XLA backend optimisation level 0: ~10x faster CPU compiles (tests, CPU demo)
  c.train.compilation_cache_dir = ''  # persistent XLA cache (relative: under the workdir; '' off): restarts skip compiles

  # ---------------------------------------------------------------- optimiser (paper: SGD 0.9, lr 0.0005*B, wd 0.005)
  c.optim = ConfigDict()
  c.optim.name = 'sgd'
  c.optim.lr_per_sample = 0.0005   # lr = lr_per_sample * global batch size
  c.optim.momentum = 0.9
  c.optim.weight_decay = 0.005
  c.optim.schedule = 'constant'    # constant | cosine
  c.optim.warmup_steps = 0
  c.optim.grad_clip = 0.0          # 0 = off
  c.optim.disc_name = 'adam'       # discriminators: adam | sgd (TGAN v2 / WGAN-GP practice uses Adam)
  c.optim.disc_lr = 1e-4
  c.optim.disc_b1 = 0.0
  c.optim.disc_b2 = 0.9

  # ---------------------------------------------------------------- losses
  c.loss = ConfigDict()
  c.loss.sigma_p = 0.75
  c.loss.sigma_c = 0.75
  c.loss.context = 'mi_info_nce'   # mi_info_nce | info_nce | l2 (Table IV)
  c.loss.temperature = 0.07
  # Negatives of each clip: 0 = every valid I-frame of every other clip of the global batch (eq. 2's sum over the
  # batch); k > 0 = k of them at random per clip (the text: "three negative frames from other video" -> 3).
  c.loss.context_negatives = 0
  c.loss.gan = 'bce'               # bce (non-saturating, eq. 1/6/7) | wgan
  # Weight of the pose discriminator's gradient penalty: eq. 1 writes the term without a coefficient (1.0) while
  # citing WGAN-GP, whose weight is 10 (lambda in Gulrajani et al.); 10 here, 1.0 follows the equation literally.
  c.loss.gp_weight = 10.0
  c.loss.pose_l2_weight = 1.0
  # Weight of G_p's adversarial term against its L2 term (eq. 1: 1). 0 trains G_p on the L2 term alone while D_p
  # still trains: a diagnostic of what the adversarial term costs the pose MSE (docs/study.md, point 5).
  c.loss.pose_adversarial_weight = 1.0
  c.loss.video_l2_weight = 1.0
  c.loss.video_targets = 'both'    # both | reconstruction | prediction (Table V)
  c.loss.branches = ('pose', 'context', 'video')  # Table I ablations drop branches here
  c.gan_update = 'one_stage'       # one_stage (OSGAN) | alternating
  c.n_critic = 1                   # D steps per G step in alternating mode

  # ---------------------------------------------------------------- parallelism
  c.mesh = (('data', -1),)
  c.distributed = ConfigDict()
  c.distributed.coordinator_address = ''  # empty: from SLURM / TPU environment, or single process
  c.distributed.num_processes = 0
  c.distributed.process_id = -1

  # ---------------------------------------------------------------- checkpointing and export
  c.checkpoint = ConfigDict()
  c.checkpoint.every_steps = 1000
  c.checkpoint.keep = 3
  c.checkpoint.init_from = ''      # finetune: export dir | torchvision .pth/.npz | '' (random init)
  # Resume the data order with the train state. Grain's iterator state cannot follow a change in the number of
  # processes (or data.num_workers): False resumes the train state and starts the data order afresh.
  c.checkpoint.resume_data_order = True

  # ---------------------------------------------------------------- finetuning
  c.finetune = ConfigDict()
  c.finetune.num_classes = 101
  c.finetune.batch_size = 32
  c.finetune.epochs = 100
  c.finetune.lr_per_sample = 1e-4
  c.finetune.weight_decay = 0.003
  c.finetune.momentum = 0.9
  c.finetune.schedule = 'cosine'   # the paper's cosine annealing (constant | cosine)
  c.finetune.warmup_steps = 0
  c.finetune.total_steps = -1
  # What finetune / linear_probe / retrieval start from (csvr_jax/models/downstream.py): 'vnet' the V-Network
  # (the protocol of other self-supervised papers); 'fi' the integrated feature f_i of V-Network + pose encoder
  # + integration layer on the clip and its poses (the paper, IV-B; Table I); 'fd' the pose encoder alone.
  c.finetune.features = 'vnet'

  # ---------------------------------------------------------------- evaluation
  c.eval = ConfigDict()
  c.eval.batch_size = 16
  c.eval.retrieval_ks = (1, 5, 10, 20, 50)
  c.eval.mean_center = False       # CoCLR centres features before L2 normalisation
  # The linear probe's L2 weight: each probe picks it from these candidates by stratified k-fold cross-validation
  # on its own training videos (one value: fixed). A fixed weak weight (1e-4) overfit the study's 300 training
  # videos by 10 points (docs/study.md, "The linear probe's regularisation").
  c.eval.linear_probe_l2 = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
  c.eval.linear_probe_folds = 5
  c.eval.method_name = ''          # row label in report.md; '' = from the export's meta ('Random init' if none)
  c.eval.knn_k = 1                 # neighbours of the kNN classifier (1 = nearest neighbour)
  # Pretext metrics (Table II; csvr_jax/train/pretext.py) on held-out pretraining-style clips.
  c.eval.pretext_batches = 8       # held-out batches of train.batch_size clips each (the same clips every time)
  c.eval.pretext_split = ''        # split they come from; '' = data.eval_split
  c.eval.pretext_seed = 0          # their windows and I-frame subsets, and the generators' noise
  c.eval.pretext_classifier = ''   # Inception Score classifier: a finetune run folder (or a workdir holding one
                                   # finetune run) trained from random init on this dataset; '' = no IS (absent)
  c.evals = ConfigDict()           # evaluators during pretraining: name -> dict(type=..., every_steps=...)
  c.evals.pretext = ConfigDict(dict(type='pretext', every_steps=-1))  # -1: at every checkpoint; 0: never

  # ---------------------------------------------------------------- logging
  c.logging = ConfigDict()
  c.logging.log_every_steps = 50
  c.logging.image_every_steps = 1000
  c.logging.progress_bar = True

  # ---------------------------------------------------------------- experiment (--mode=experiment)
  # One method end to end (csvr_jax/experiment.py): pretraining (loss.branches) -> export -> evaluations.
  c.experiment = ConfigDict()
  c.experiment.method = 'CSVR'       # row label in report.md (the features are appended: "CSVR (f_i)")
  c.experiment.pretrain = True       # False: random initialisation (the paper's "training from scratch")
  c.experiment.features = ('vnet',)  # downstream features evaluated, each a run: vnet | fi | fd
  c.experiment.evaluations = ('finetune', 'frozen')  # finetune | frozen (linear probe + retrieval)
  # name -> dict(dataset_dir=, num_classes=, lr_per_sample=, weight_decay=, ...): finetuning overrides per
  # downstream dataset; empty: the pretraining dataset with config.finetune as it is.
  c.experiment.downstream = ConfigDict()

  # ---------------------------------------------------------------- demo (embedded SynthActions run)
  c.demo = ConfigDict()
  c.demo.data_dir = 'data/synth_actions'
  c.demo.classes = 10
  c.demo.videos_per_class = 20
  c.demo.frames = 64
  c.demo.size = 128
  c.demo.context = 0.5             # P(scene = the class's own scene); otherwise random (data_prep.synth_actions)
  c.demo.processes = 2             # the three methods run in this many processes (capped at the CPU count)
  c.demo.features = ('vnet', 'fi')  # downstream features evaluated for the methods that have them (demo.METHODS)

  # ---------------------------------------------------------------- study (--mode=study, configs/study.py)
  # The evidence study (csvr_jax/study/): SynthActions variants x seeds x methods, intervals over seeds and videos.
  c.study = ConfigDict()
  c.study.data_dir = 'data/study'  # datasets (<draw>/<name>/) and the shared persistent compile cache
  c.study.datasets = ConfigDict({'scene': 0.5, 'motion': 0.0})  # name -> SynthActions context (P(class's scene))
  c.study.classes = 10
  c.study.train_videos_per_class = 30
  c.study.test_videos_per_class = 30   # test videos per class (the study's resolution)
  c.study.frames = 48                  # frames per generated video
  c.study.size = 40                    # generated frame size (pixels)
  c.study.build_workers = 1            # processes building each variant's TFDS dataset (the output does not depend on it)
  c.study.draw = 'test'                # test | validation: which SynthActions draw (tuning uses validation only)
  c.study.data_seeds = ConfigDict({'test': 0, 'validation': 1})  # generator seed of each draw
  c.study.seeds = (0, 1, 2)            # training seeds (init, noise, data order) of every method
  c.study.methods = ('CSVR', 'Context only', 'Pose only', 'Random init')  # rows of csvr_jax/study/jobs.py METHODS
  c.study.evaluations = ('frozen', 'finetune')  # frozen: linear probe + kNN / R@k; finetune: a short finetune
  c.study.processes = 2                # jobs run in this many processes (capped at the CPU count)
  c.study.bootstrap_samples = 4000     # resamples of the seeds x test videos bootstrap (csvr_jax/study/stats.py)
  c.study.confidence = 0.95
  return c
