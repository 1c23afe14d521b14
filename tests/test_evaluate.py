"""Downstream metrics: retrieval R@k and kNN against brute force, linear probe, per-video averaging."""
import flax.linen as nn
import numpy as np
import pytest

from csvr_jax.train import downstream_metrics as dm


def brute_force_recall(q, ql, g, gl, ks):
  """Full stable sort per query: similarity descending, then gallery index ascending."""
  qn = q / np.linalg.norm(q, axis=1, keepdims=True)
  gn = g / np.linalg.norm(g, axis=1, keepdims=True)
  out = {}
  for k in ks:
    hits = []
    for i in range(len(q)):
      sim = np.array([float(np.dot(qn[i], gn[j])) for j in range(len(g))])
      order = np.lexsort((np.arange(len(g)), -sim))
      hits.append(bool((gl[order[:k]] == ql[i]).any()))
    out[f'R@{k}'] = float(np.mean(hits))
  return out


def tied_features(rng, n, dim, num_distinct):
  """Rows drawn from a few one-hot vectors: similarities are exactly 0 or 1, so ties are exact."""
  return np.eye(dim)[rng.integers(0, num_distinct, n)]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_retrieval_recall_matches_brute_force_random(seed):
  rng = np.random.default_rng(seed)
  q, g = rng.normal(size=(37, 8)), rng.normal(size=(53, 8))
  ql, gl = rng.integers(0, 6, 37), rng.integers(0, 5, 53)  # class 5 never appears in the gallery
  ks = (1, 5, 10, 20, 50, 100)
  got = dm.retrieval_recall(q, ql, g, gl, ks)
  want = brute_force_recall(q, ql, g, gl, ks)
  assert got == pytest.approx(want, abs=1e-12)
  assert got['R@100'] == pytest.approx(np.mean(ql < 5))  # whole gallery: only absent classes miss


@pytest.mark.parametrize('seed', [0, 1])
def test_retrieval_recall_ties_broken_by_gallery_index(seed):
  rng = np.random.default_rng(seed)
  q, g = tied_features(rng, 40, 6, 3), tied_features(rng, 30, 6, 3)
  ql, gl = rng.integers(0, 4, 40), rng.integers(0, 3, 30)
  ks = (1, 2, 5, 10, 20)
  assert dm.retrieval_recall(q, ql, g, gl, ks) == pytest.approx(brute_force_recall(q, ql, g, gl, ks))


def test_retrieval_tie_rule_explicit():
  # Three gallery items equal to the query; only the last shares its class: rank 2 (indices 0, 1 come first).
  g = np.ones((3, 4))
  gl = np.array([1, 2, 0])
  got = dm.retrieval_recall(np.ones((1, 4)), np.array([0]), g, gl, ks=(1, 2, 3))
  assert got == {'R@1': 0.0, 'R@2': 0.0, 'R@3': 1.0}
  np.testing.assert_array_equal(dm.first_hit_rank(np.ones((1, 4)), [0], g, gl), [2])
  np.testing.assert_array_equal(dm.first_hit_rank(np.ones((1, 4)), [7], g, gl), [dm.NO_HIT])  # absent class


def test_retrieval_recall_bad_shapes():
  with pytest.raises(ValueError, match='embeddings'):
    dm.retrieval_recall(np.ones((2, 3)), [0, 1], np.ones((2, 4)), [0, 1])


def test_knn_matches_brute_force():
  rng = np.random.default_rng(3)
  q, g = rng.normal(size=(25, 5)), rng.normal(size=(40, 5))
  ql, gl = rng.integers(0, 4, 25), rng.integers(0, 4, 40)
  qn, gn = dm.l2_normalize(q), dm.l2_normalize(g)
  nearest = gl[np.argmax(qn @ gn.T, axis=1)]
  assert dm.knn_accuracy(q, ql, g, gl, k=1) == pytest.approx(np.mean(nearest == ql))
  assert dm.knn_accuracy(q, ql, g, gl, k=1) == pytest.approx(dm.retrieval_recall(q, ql, g, gl, (1,))['R@1'])
  preds = dm.knn_predict(q, g, gl, k=5)
  for i in range(len(q)):
    order = np.lexsort((np.arange(len(g)), -(gn @ qn[i])))[:5]
    counts = np.bincount(gl[order], minlength=4)
    assert counts[preds[i]] == counts.max()


def test_mean_center_changes_embedding_as_coclr():
  x = np.array([[1.0, 1.0], [3.0, 1.0]])
  np.testing.assert_allclose(dm.l2_normalize(x, mean_center=True), [[-1, 0], [1, 0]])


def test_linear_probe_separable_reaches_100_percent():
  rng = np.random.default_rng(0)
  num_classes, dim = 5, 16
  centres = rng.normal(size=(num_classes, dim)) * 4
  y = rng.integers(0, num_classes, 300)
  x = centres[y] + rng.normal(size=(300, dim)) * 0.5
  yt = rng.integers(0, num_classes, 100)
  xt = centres[yt] + rng.normal(size=(100, dim)) * 0.5
  probe = dm.fit_linear_probe(x, y, num_classes, l2=1e-4)
  train_acc = np.mean(np.argmax(dm.predict_linear_probe(probe, x), 1) == y)
  test_acc = np.mean(np.argmax(dm.predict_linear_probe(probe, xt), 1) == yt)
  assert train_acc == 1.0 and test_acc >= 0.99
  assert probe['iters'] > 1


def test_linear_probe_learns_non_trivial_direction():
  # Labels depend on one coordinate only: the probe must find it (chance = 50%).
  rng = np.random.default_rng(1)
  x = rng.normal(size=(400, 10))
  y = (x[:, 3] > 0).astype(int)
  probe = dm.fit_linear_probe(x[:300], y[:300], 2)
  assert np.mean(np.argmax(dm.predict_linear_probe(probe, x[300:]), 1) == y[300:]) > 0.9
  assert np.argmax(np.abs(probe['w'][:, 1] - probe['w'][:, 0])) == 3


def test_stratified_folds_deal_every_class_evenly_and_repeat_for_a_seed():
  y = np.repeat(np.arange(4), [10, 7, 5, 3])
  fold = dm.stratified_folds(y, 5, seed=0)
  assert set(fold.tolist()) == set(range(5))
  for cls in range(4):
    counts = np.bincount(fold[y == cls], minlength=5)
    assert counts.max() - counts.min() <= 1  # each class split as evenly as its size allows
  np.testing.assert_array_equal(fold, dm.stratified_folds(y, 5, seed=0))
  assert not np.array_equal(fold, dm.stratified_folds(y, 5, seed=1))


def test_select_l2_scores_match_scikit_learn_cross_validation_on_the_same_folds():
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import PredefinedSplit, cross_val_predict
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  rng = np.random.default_rng(2)
  y = np.repeat(np.arange(3), 20)  # 60 samples, 5 folds of 12: every training fold holds 48
  x = rng.normal(size=(60, 6)) + 0.8 * np.eye(3, 6)[y]
  l2s = (1e-3, 1e-1, 10.0)
  best, scores = dm.select_l2(x, y, 3, l2s, folds=5, seed=0)
  fold = dm.stratified_folds(y, 5, seed=0)
  for l2 in l2s:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0 / (l2 * 48), max_iter=1000, tol=1e-6))
    pred = cross_val_predict(clf, x, y, cv=PredefinedSplit(fold))
    assert scores[l2] == pytest.approx(np.mean(pred == y), abs=1 / 60 + 1e-9)
  assert scores[best] == max(scores.values())
  assert dm.select_l2(x, y, 3, (1e-2,))[0] == 1e-2  # one candidate: no validation


def test_cross_validated_probe_regularises_where_a_weak_fixed_l2_overfits_noisy_labels():
  # 100 training samples in 60 dimensions, 5 classes told apart by 5 of them, 30% of the training labels
  # redrawn at random: a weakly regularised probe fits the noise; the cross-validated weight does better on clean
  # test labels (mean over 4 draws: 0.36 -> 0.40).
  weak, cv = [], []
  for seed in range(4):
    rng = np.random.default_rng(seed)
    centres = 2.0 * np.eye(5, 60)
    def draw(n, noise):
      y = rng.integers(0, 5, n)
      x = rng.normal(size=(n, 60)) + centres[y]
      return x, np.where(rng.random(n) < noise, rng.integers(0, 5, n), y)
    x, y = draw(100, 0.3)
    xt, yt = draw(2000, 0.0)
    acc = lambda p: np.mean(np.argmax(dm.predict_linear_probe(p, xt), 1) == yt)
    probe = dm.fit_linear_probe_cv(x, y, 5, (1e-5, 1e-3, 1e-2, 1e-1, 1.0))
    assert probe['l2'] > 1e-5 and set(probe['cv_top1']) == {1e-5, 1e-3, 1e-2, 1e-1, 1.0}
    weak.append(acc(dm.fit_linear_probe(x, y, 5, l2=1e-5)))
    cv.append(acc(probe))
  assert np.mean(cv) > np.mean(weak) + 0.03


def test_average_per_video_ignores_padding_and_uses_video_index():
  rows = np.array([[1.0], [3.0], [100.0], [5.0], [7.0], [-50.0]])
  video_index = np.array([1, 1, 0, 0, 2, 0])  # padding rows carry a real-looking index on purpose
  valid = np.array([True, True, False, True, True, False])
  means, counts = dm.average_per_video(rows, video_index, valid, 3)
  np.testing.assert_allclose(means[:, 0], [5.0, 2.0, 7.0])
  np.testing.assert_array_equal(counts, [1, 2, 1])


def test_average_per_video_refuses_a_missing_video():
  with pytest.raises(ValueError, match='no valid clip'):
    dm.average_per_video(np.ones((3, 2)), [0, 0, 2], [True, True, False], 3)


def test_classification_metrics():
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25]])
  labels = np.array([0, 1, 1, 0])
  m = dm.classification_metrics(probs, labels, 3)
  assert m['top1'] == 0.75 and m['top5'] == 1.0
  np.testing.assert_array_equal(m['confusion'], [[2, 0, 0], [0, 1, 1], [0, 0, 0]])
  assert m['per_class_accuracy'][0] == 1.0 and m['per_class_accuracy'][1] == 0.5
  assert np.isnan(m['per_class_accuracy'][2])  # no test video of class 2
  assert m['mean_class_accuracy'] == 0.75


# ------------------------------------------------------------------ feature extraction on the device mesh

def _tiny_config():
  from configs import base
  c = base.get_config()
  c.model.vnet, c.model.width = 'r3d_18', 0.0625
  c.data.clip_len, c.data.crop_size = 4, 16
  return c


class _TinyVideoNet(nn.Module):
  """A one-conv video network with the backbones' interface (any apply_fn returning 'pooled' works)."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(6, (2, 3, 3), strides=(1, 2, 2))(x))
    return {'pooled': x.mean(axis=(1, 2, 3)), 'features': x}


def test_extract_video_features_averages_valid_clips_on_8_devices():
  import jax
  from csvr_jax import parallel
  from csvr_jax.data import augment
  from csvr_jax.train import evaluate
  c = _tiny_config()
  model = _TinyVideoNet()
  variables = model.init(jax.random.key(0), np.zeros((1, 4, 16, 16, 3), np.float32))
  rng = np.random.default_rng(0)
  # 3 videos x 3 clips = 9 real rows, padded to 2 batches of 8 (7 padding rows of noise, index 0).
  clips = rng.integers(0, 256, (16, 4, 16, 16, 3), dtype=np.uint8)
  video_index = np.array([2, 0, 1, 1, 2, 0, 0, 2, 1] + [0] * 7)
  valid = np.arange(16) < 9
  labels = np.array([5, 3, 4, 4, 5, 3, 3, 5, 4] + [0] * 7)
  batches = [dict(clip=clips[i:i + 8], video_index=video_index[i:i + 8], valid=valid[i:i + 8],
                  label=labels[i:i + 8]) for i in (0, 8)]
  mesh = parallel.make_mesh(c)
  assert parallel.data_size(mesh) == 8
  feats, video_labels = evaluate.extract_video_features(model.apply, variables, batches, 3, c, mesh)
  direct = np.asarray(model.apply(variables, augment.normalize(clips[:9], c.data.mean, c.data.std))['pooled'])
  want = np.stack([direct[video_index[:9] == v].mean(0) for v in range(3)])
  np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(video_labels, [3, 4, 5])
  one = parallel.make_mesh(c, jax.devices()[:1])
  feats1, _ = evaluate.extract_video_features(model.apply, variables, batches, 3, c, one)
  np.testing.assert_allclose(feats1, feats, rtol=1e-4, atol=1e-5)


def test_evaluator_registry_checks_options_and_schedule(tmp_path):
  from csvr_jax.train import evaluate, evaluators, pretext
  c = _tiny_config()
  c.evals.knn = dict(type='knn', every_steps=10)
  c.evals.probe = dict(type='linear_probe', every_steps=25, query_split='validation')
  c.evals.knn_val = dict(type='knn', every_steps=25, query_split='validation')  # a second kNN, other options
  c.evals.off = dict(type='knn', every_steps=0)  # never (no division by zero)
  built = {name: (every, ev) for name, every, ev in evaluators.build(c, str(tmp_path))}
  assert sorted(built) == ['knn', 'knn_val', 'pretext', 'probe']
  assert built['pretext'][0] == c.checkpoint.every_steps  # -1: every checkpoint
  assert isinstance(built['probe'][1], evaluate.LinearProbeEvaluator)
  assert isinstance(built['pretext'][1], pretext.PretextMetricsEvaluator)
  assert built['probe'][1].splits == ('validation', 'train') and built['knn'][1].splits == ('test', 'train')
  assert built['knn_val'][1].splits == ('validation', 'train')  # each entry keeps its own options
  assert built['knn'][1].dataset_dir == c.data.dataset_dir
  due = [(name, every, ev) for name, (every, ev) in built.items()]
  assert evaluators.run_due(due, None, 7, 100) == {}  # nothing due: no work, no data needed
  c.evals.bad = dict(type='knn', every_step=5)
  with pytest.raises(ValueError, match=r'config.evals.bad: unknown keys \[.every_step.\]'):
    evaluators.build(c, str(tmp_path))
  c.evals.bad = dict(type='knm', every_steps=5)
  with pytest.raises(ValueError, match=r"config.evals.bad.type='knm': choose one of"):
    evaluators.build(c, str(tmp_path))


# ------------------------------------------------------------------ modes end to end on SynthActions

@pytest.fixture(scope='module')
def synth_dir(tmp_path_factory):
  from data_prep import synth_actions
  return synth_actions.generate_and_build(str(tmp_path_factory.mktemp('synth')), num_classes=3,
                                          videos_per_class=5, frames=16, size=48, context=1.0)


def test_retrieval_and_linear_probe_modes_from_an_export(synth_dir, tmp_path):
  import json
  import os
  from csvr_jax import checkpoint
  from csvr_jax.train import backbone_init, evaluate
  c = _tiny_config()
  c.data.dataset_dir = synth_dir
  c.data.stride, c.data.short_side, c.data.num_eval_clips, c.data.num_workers = 2, 48, 3, 0
  c.eval.batch_size = 8
  c.train.fast_compile = True
  model, variables, _ = backbone_init.load_backbone(c)
  export = str(tmp_path / 'export')
  checkpoint.save_backbone_export(export, variables, dict(
      arch='r3d_18', width=c.model.width, clip_len=4, crop_size=16, mean=list(c.data.mean), std=list(c.data.std),
      step=7, source='csvr', epochs=2, dataset='synth'))
  c.checkpoint.init_from = export
  workdir = str(tmp_path / 'work')
  r = evaluate.retrieval_mode(c, workdir)
  p = evaluate.linear_probe_mode(c, workdir)
  assert set(r) == {'knn/top1', 'retrieval/R@1', 'retrieval/R@5', 'retrieval/R@10', 'retrieval/R@20',
                    'retrieval/R@50'}
  recalls = [r[f'retrieval/R@{k}'] for k in (1, 5, 10, 20, 50)]
  assert recalls == sorted(recalls) and recalls[-1] == 1.0  # 9 train videos: top-50 is the whole gallery
  assert r['knn/top1'] == r['retrieval/R@1']  # k=1
  assert 0.0 <= p['linear_probe/top1'] <= 1.0
  runs = json.load(open(os.path.join(workdir, 'results.json')))['runs']
  assert len(runs) == 1 and runs[0]['pretrain_step'] == 7 and runs[0]['epochs'] == 2
  assert runs[0]['metrics']['linear_probe/top1'] == p['linear_probe/top1']
  assert '| csvr | R3D-18 | synth | 2 | 16×16 | 4 |' in open(os.path.join(workdir, 'report.md')).read()
  # Both modes on one feature extraction: the same metrics (the features are deterministic).
  both_dir = str(tmp_path / 'both')
  both = evaluate.frozen_modes(c, both_dir, write_report=False)
  assert both == {**p, **r}
  assert not os.path.exists(os.path.join(both_dir, 'report.md'))
  assert json.load(open(os.path.join(both_dir, 'results.json')))['runs'][0]['metrics'] == both
  # init_from a torchvision-layout .npz: the same variables come back (round trip through torch_interop).
  from csvr_jax.models import torch_interop
  npz = str(tmp_path / 'r3d.npz')
  torch_interop.save_state_dict(torch_interop.to_torchvision('r3d_18', variables), npz)
  c.checkpoint.init_from = npz
  _, loaded, meta = backbone_init.load_backbone(c)
  assert meta['source'] == 'torchvision'
  import jax
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, loaded['params']),
               jax.tree.map(np.asarray, variables['params']))
  # The evaluator registry during pretraining, on the same data (features of the same network).
  import types
  from csvr_jax.train import evaluators
  c.evals.knn = dict(type='knn', every_steps=5)
  c.evals.pretext = dict(type='pretext', every_steps=0)
  state = types.SimpleNamespace(params={'vnet': variables['params']}, batch_stats={'vnet': variables['batch_stats']})
  out = evaluators.run_due(evaluators.build(c, workdir), state, 10, 100)
  assert out['knn/top1'] == pytest.approx(r['knn/top1'])
  assert out['knn/R@5'] == pytest.approx(r['retrieval/R@5'])


def test_frozen_modes_with_fi_features_on_the_toy_dataset(tmp_path):
  """Linear probe and retrieval from f_i (V-Network + pose encoder + integration on the clips and their poses)."""
  import json
  import os
  import jax
  from csvr_jax import checkpoint
  from csvr_jax.data import augment, records, samples
  from csvr_jax.train import backbone_init, evaluate, networks
  import pretrain_fixtures as pf  # tests/ is on sys.path
  c = pf.tiny_config(pf.write_toy_dataset(tmp_path / 'toy'))
  c.data.num_eval_clips, c.eval.batch_size = 2, 8
  variables = pf.fast_init(networks.Networks(c), seed=1)(None)
  export = str(tmp_path / 'export')
  checkpoint.write_export(export, c, {n: v['params'] for n, v in variables.items()},
                          {n: v.get('batch_stats', {}) for n, v in variables.items()}, 4, 'CSVR')
  c.checkpoint.init_from, c.finetune.features = export, 'fi'
  workdir = str(tmp_path / 'work')
  metrics = evaluate.frozen_modes(c, workdir)
  assert 0.0 <= metrics['linear_probe/top1'] <= 1.0 and metrics['retrieval/R@50'] == 1.0  # 8 train videos
  runs = json.load(open(os.path.join(workdir, 'results.json')))['runs']
  assert [r['method'] for r in runs] == ['CSVR (f_i)'] and runs[0]['metrics'] == metrics
  assert '| CSVR (f_i) | R3D-18 |' in open(os.path.join(workdir, 'report.md')).read()
  # The features are f_i of each clip and its poses, averaged per video: against the samples, one by one.
  model, loaded, _ = backbone_init.load_downstream(c)
  got, labels = evaluate.split_features(c, c.data.dataset_dir, 'test', model.apply, loaded,
                                        input_keys=('clip', 'pose_in', 'pose_in_conf'))
  src = records.open_split(c.data.dataset_dir, 'test')
  for v in range(len(src)):
    rows = [samples.eval_sample(src[v], v, k, c.data) for k in range(2)]
    batch = {k: np.stack([r[k] for r in rows]) for k in ('clip', 'pose_in', 'pose_in_conf')}
    assert batch['pose_in_conf'].any()  # the toy records have poses
    out = model.apply(loaded, augment.normalize(batch['clip'], c.data.mean, c.data.std), batch['pose_in'],
                      batch['pose_in_conf'], train=False)['pooled']
    np.testing.assert_allclose(got[v], np.mean(jax.device_get(out), axis=0), rtol=1e-4, atol=1e-5)
    assert labels[v] == src[v]['label']
