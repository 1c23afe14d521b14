r"""How much of a study row's accuracy comes from the scene: its test predictions split by the videos' scenes.

  python -m csvr_jax.study.scenes --config=configs/study.py --workdir=runs/study [--dataset=scene] [--probe]

On a SynthActions variant with context c, a video shows its class's own scene type with probability c, else a
uniformly random one (data_prep/synth_actions.choose_scene), so with 10 classes and 10 scene types a classifier
that reads the scene perfectly and nothing else is right on c + (1 - c) / 10 of the videos (the scene's Bayes
top-1, 55% at c = 0.5), and one that reads the motion perfectly is right on all of them. Every video's scene
type is a deterministic function of the draw's seed, its class and its index (the generator's first draw), so it
is recovered here without the generator's output.

For every row of the study workdir (method, features; linear probe and kNN outcomes), per seed and averaged:
  matched      top-1 on the test videos that show their class's scene
  other        top-1 on the rest (the scene points to another class, or to none)
  scene-led    share of all test predictions that name the class whose scene the video shows
A row led by the scene is right on `matched` and wrong on `other`; a row that reads the motion is right on both.
With --probe, also a linear probe trained to name the scene type (10 types) from the row's frozen features (train
videos -> test videos): how much scene the features carry, whatever the probe for the action does with it.
"""
import json
import os

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from csvr_jax.study import datasets
from csvr_jax.study import jobs


def define_flags():
  config_flags.DEFINE_config_file('config', None, 'The study config the workdir ran.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'The study workdir (its <dataset>/seed<k>/outcomes/).')
  flags.DEFINE_string('dataset', 'scene', 'Which of config.study.datasets.')
  flags.DEFINE_bool('probe', False, 'Also fit a scene-type linear probe on each row\'s frozen features.')
  flags.mark_flags_as_required(['config', 'workdir'])


FLAGS = flags.FLAGS


def video_scene(video_id, class_names, seed, context):
  """The scene type of SynthActions video `video_id` ('Walk/v_Walk_g07_c01[.mp4]'), replaying the first draw of
  that video's generator (data_prep/synth_actions.generate)."""
  from data_prep import synth_actions  # deferred: the data_prep stack (PIL, av) is only needed here
  name = video_id.decode() if isinstance(video_id, bytes) else str(video_id)
  cls = name.split('/')[0]
  if cls not in class_names:
    raise ValueError(f'{name}: class {cls!r} is not one of the dataset\'s classes')
  try:
    k = int(name.rsplit('_g', 1)[1].split('_')[0]) - 1
  except (IndexError, ValueError):
    raise ValueError(f'{name}: not a SynthActions video name (want <class>/v_<class>_gNN_c01)') from None
  label = class_names.index(cls)
  return synth_actions.choose_scene(label, context, np.random.default_rng([seed, label, k]))


def split_scenes(dataset_dir, split, generator):
  """(scene types (N,), labels (N,)) of every video of `split`, in the split's order (the evaluations' order).

  generator: the dataset's synth_actions.json ({'classes', 'seed', 'context'})."""
  from csvr_jax.data import records  # deferred with the data stack
  src = records.open_split(dataset_dir, split)
  rows = [src[i] for i in range(len(src))]
  scenes = [video_scene(r['video_id'], generator['classes'], generator['seed'], generator['context']) for r in rows]
  return np.asarray(scenes, np.int64), np.asarray([int(r['label']) for r in rows], np.int64)


def scene_use(predictions, labels, scenes):
  """{'matched', 'other', 'scene_led', 'matched_share'} of one row's test predictions (module docstring); scene
  type s is class s's own scene (choose_scene: label % 10), so `scenes == labels` marks the matched videos."""
  predictions, labels, scenes = (np.asarray(x, np.int64) for x in (predictions, labels, scenes))
  matched = scenes == labels
  hit = predictions == labels
  mean = lambda x: float(np.mean(x)) if x.size else float('nan')
  return {'matched': mean(hit[matched]), 'other': mean(hit[~matched]), 'scene_led': mean(predictions == scenes),
          'matched_share': mean(matched)}


def generator_settings(dataset_dir):
  """The generator's settings of a built study variant: <variant>/raw/synth_actions.json beside the TFDS folder
  (<variant>/synth_<name>/1.0.0, datasets.build)."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.normpath(dataset_dir))), 'raw', 'synth_actions.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no generator settings beside {dataset_dir} (is it a study variant?)')
  with open(path) as f:
    return json.load(f)


def scene_probe_top1(config, dataset_dir, outcome, generator):
  """Top-1 of a linear probe naming the scene type from a row's frozen features (train -> test videos): the
  features and export of one outcome file, configured as the study's evaluation of it was."""
  from csvr_jax import experiment  # deferred: JAX and the data stack
  from csvr_jax.train import evaluate
  c = jobs.job_config(config, dataset_dir, outcome['seed'])
  c = experiment.downstream_config(c, outcome['init_from'], outcome['method'], outcome['features'])
  (train_x, _), (test_x, _), _ = evaluate._mode_features(c)  # pylint: disable=protected-access
  train_s, _ = split_scenes(dataset_dir, c.data.train_split, generator)
  test_s, _ = split_scenes(dataset_dir, c.data.eval_split, generator)
  return evaluate.linear_probe_metrics(c, test_x, test_s, train_x, train_s, 10)['top1']


def main(argv):
  del argv
  from csvr_jax import demo, xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.set_default_xla_flags()
  config = FLAGS.config
  demo.enable_compilation_cache(os.path.join(config.study.data_dir, 'jax_cache'))
  name = FLAGS.dataset
  if name not in config.study.datasets:
    raise app.UsageError(f'--dataset={name}: the config has {sorted(config.study.datasets)}')
  dataset_dir = datasets.build(config, name)
  generator = generator_settings(dataset_dir)
  scenes, labels = split_scenes(dataset_dir, config.data.eval_split, generator)
  context = float(generator['context'])
  bayes = context + (1 - context) / 10
  print(f'{name}: {len(labels)} test videos, {100 * np.mean(scenes == labels):.1f}% show their class\'s scene '
        f'(context {context}); the scene\'s Bayes top-1 (10 classes, 10 scenes) {100 * bayes:.1f}%')
  header = '| Row | metric | top-1 | matched | other | scene-led |' + (' scene probe |' if FLAGS.probe else '')
  print(header + '\n' + '|---' * (header.count('|') - 1) + '|')
  for method in jobs.BY_NAME.values():
    for features in method.features:
      per_seed = []
      for seed in config.study.seeds:
        path = jobs.outcomes_path(FLAGS.workdir, jobs.Job(name, int(seed), method.name), features)
        if os.path.exists(path):
          with open(path) as f:
            per_seed.append((seed, json.load(f)))
      for metric in ('linear_probe', 'knn'):
        rows = [(seed, o) for seed, o in per_seed if metric in o['predictions']]
        if not rows:
          continue
        for seed, o in rows:
          if list(o['labels']) != labels.tolist():
            raise ValueError(f'{FLAGS.workdir} {name} seed {seed}: its test videos are not the config\'s dataset\'s')
        use = [scene_use(o['predictions'][metric], labels, scenes) for _, o in rows]
        top1 = np.mean([np.mean(np.asarray(o['predictions'][metric]) == labels) for _, o in rows])
        cells = [f'{100 * top1:.1f}'] + [f'{100 * np.mean([u[k] for u in use]):.1f}'
                                         for k in ('matched', 'other', 'scene_led')]
        if FLAGS.probe and metric == 'linear_probe':
          probe = [scene_probe_top1(config, dataset_dir, o, generator) for _, o in rows]
          cells.append(f'{100 * np.mean(probe):.1f} ({" / ".join(f"{100 * p:.0f}" for p in probe)})')
        elif FLAGS.probe:
          cells.append('')
        print(f'| {method.name}, {features} | {metric} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  define_flags()
  app.run(main)
