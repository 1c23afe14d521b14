"""Pure downstream metrics on features and scores: retrieval R@k, kNN, linear probe, classification.

No data loading and no models here: these functions take numpy arrays (or anything np.asarray accepts) so that
other code (and other projects) can call them on their own features. `csvr_jax.train.evaluate` re-exports them
and adds the feature extraction and the modes.

Conventions (also in docs/design.md):
* Fractions in [0, 1] everywhere; reports print percentages.
* Retrieval ranks the gallery by cosine similarity, descending; exactly equal similarities are ordered by
  gallery index (lower first, a stable sort). A query is a hit at k if any of its top-k gallery items shares its
  label. A query whose class has no gallery item is a miss at every k (it is counted, never dropped). k larger
  than the gallery means "the whole gallery".
* Video-level scores: per-clip rows are averaged per video using 'video_index' and 'valid'; padding rows
  (valid False) never count, and a video without any valid clip is an error (no video may be dropped).
"""
import warnings

import numpy as np

_QUERY_CHUNK = 1024  # queries per similarity block: bounds memory at chunk x gallery floats
NO_HIT = np.iinfo(np.int64).max  # rank of a query whose class is absent from the gallery: a miss at any k


def average_per_video(rows, video_index, valid, num_videos):
  """Averages per-clip rows into per-video rows.

  Args:
    rows: (N, D) per-clip values (features or class probabilities), N = all clips of all eval batches.
    video_index: (N,) int index of the clip's video in [0, num_videos).
    valid: (N,) bool; False marks padding rows of the last batch, which are ignored.
    num_videos: number of videos in the split.
  Returns:
    (num_videos, D) float64 means, and (num_videos,) int clip counts.
  """
  rows = np.asarray(rows, np.float64)
  video_index = np.asarray(video_index, np.int64)
  valid = np.asarray(valid, bool)
  if rows.ndim != 2 or video_index.shape != rows.shape[:1] or valid.shape != rows.shape[:1]:
    raise ValueError(f'average_per_video: rows {rows.shape}, video_index {video_index.shape} and valid '
                     f'{valid.shape} must be (N, D), (N,), (N,)')
  rows, video_index = rows[valid], video_index[valid]
  if video_index.size and (video_index.min() < 0 or video_index.max() >= num_videos):
    raise ValueError(f'average_per_video: video_index outside [0, {num_videos})')
  sums = np.zeros((num_videos, rows.shape[1]), np.float64)
  np.add.at(sums, video_index, rows)
  counts = np.bincount(video_index, minlength=num_videos)
  if (counts == 0).any():
    missing = np.flatnonzero(counts == 0)
    raise ValueError(f'average_per_video: {missing.size} of {num_videos} videos have no valid clip '
                     f'(first: {missing[:5].tolist()}); evaluation must cover every video')
  return sums / counts[:, None], counts


def l2_normalize(x, mean_center=False):
  """(N, D) -> (N, D) unit rows; `mean_center` first subtracts the set's own mean (CoCLR's --center)."""
  x = np.asarray(x, np.float64)
  if mean_center:
    x = x - x.mean(axis=0, keepdims=True)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _cosine_blocks(query_emb, gallery_emb):
  """Yields (slice, (q, G) cosine similarities) over query chunks, in float64."""
  q, g = l2_normalize(query_emb), l2_normalize(gallery_emb)
  for start in range(0, q.shape[0], _QUERY_CHUNK):
    sl = slice(start, start + _QUERY_CHUNK)
    yield sl, q[sl] @ g.T


def _check_pair(query_emb, query_labels, gallery_emb, gallery_labels):
  q, g = np.asarray(query_emb), np.asarray(gallery_emb)
  ql, gl = np.asarray(query_labels).astype(np.int64), np.asarray(gallery_labels).astype(np.int64)
  if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
    raise ValueError(f'query {q.shape} and gallery {g.shape} embeddings must be (Nq, D) and (Ng, D)')
  if ql.shape != q.shape[:1] or gl.shape != g.shape[:1]:
    raise ValueError(f'labels {ql.shape}, {gl.shape} must match embeddings {q.shape[0]}, {g.shape[0]}')
  if g.shape[0] == 0:
    raise ValueError('the gallery is empty')
  return q, ql, g, gl


def first_hit_rank(query_emb, query_labels, gallery_emb, gallery_labels):
  """(Nq,) 0-based rank of the first same-class gallery item (ties by gallery index); NO_HIT if none.

  rank(j) = #{i: s_i > s_j} + #{i: s_i == s_j, i < j}; the first positive is the positive with the highest
  similarity, lowest index among equals. No full sort is needed.
  """
  q, ql, g, gl = _check_pair(query_emb, query_labels, gallery_emb, gallery_labels)
  ranks = np.empty(q.shape[0], np.int64)
  idx = np.arange(g.shape[0])
  for sl, sim in _cosine_blocks(q, g):
    pos = ql[sl, None] == gl[None, :]
    best = np.argmax(np.where(pos, sim, -np.inf), axis=1)  # lowest index among equal maxima
    s_best = sim[np.arange(sim.shape[0]), best][:, None]
    rank = (sim > s_best).sum(1) + ((sim == s_best) & (idx[None, :] < best[:, None])).sum(1)
    ranks[sl] = np.where(pos.any(1), rank, NO_HIT)
  return ranks


def retrieval_recall(query_emb, query_labels, gallery_emb, gallery_labels, ks=(1, 5, 10, 20, 50)):
  """Nearest-neighbour retrieval Recall@k by cosine similarity.

  Args:
    query_emb: (Nq, D) query features (e.g. test videos); normalised inside.
    query_labels: (Nq,) int class labels.
    gallery_emb: (Ng, D) gallery features (e.g. train videos); normalised inside.
    gallery_labels: (Ng,) int class labels.
    ks: cut-offs.
  Returns:
    {'R@k': fraction of queries with a same-class item among their top k} for each k. Ties and absent
    classes: see the module docstring.
  """
  ranks = first_hit_rank(query_emb, query_labels, gallery_emb, gallery_labels)
  return {f'R@{k}': float(np.mean(ranks < k)) for k in ks}


def knn_predict(query_emb, gallery_emb, gallery_labels, k=1):
  """(Nq,) predicted labels by majority vote of the k most cosine-similar gallery items.

  Neighbours are ordered as in retrieval (ties by gallery index); a tied vote goes to the class with the
  larger summed similarity, then the lower label. k=1 is plain nearest-neighbour classification.
  """
  q, _, g, gl = _check_pair(query_emb, np.zeros(len(query_emb), np.int64), gallery_emb, gallery_labels)
  k = min(k, g.shape[0])
  num_classes = int(gl.max()) + 1
  preds = np.empty(q.shape[0], np.int64)
  for sl, sim in _cosine_blocks(q, g):
    order = np.argsort(-sim, axis=1, kind='stable')[:, :k]
    nb_sim = np.take_along_axis(sim, order, 1)
    votes = np.zeros((sim.shape[0], num_classes))
    weight = np.zeros((sim.shape[0], num_classes))
    rows = np.repeat(np.arange(sim.shape[0]), k)
    np.add.at(votes, (rows, gl[order].ravel()), 1.0)
    np.add.at(weight, (rows, gl[order].ravel()), nb_sim.ravel())
    # Votes are integers; the summed similarity, mapped into [0, 1), only breaks ties between them.
    preds[sl] = np.argmax(votes + (weight + k) / (2 * k + 1), axis=1)
  return preds


def knn_accuracy(query_emb, query_labels, gallery_emb, gallery_labels, k=1):
  """Top-1 accuracy of the k-nearest-neighbour classifier (fraction)."""
  preds = knn_predict(query_emb, gallery_emb, gallery_labels, k)
  return float(np.mean(preds == np.asarray(query_labels)))


# ------------------------------------------------------------------ linear probe

def fit_linear_probe(train_x, train_y, num_classes, l2=1e-4, max_iters=1000):
  """Multinomial logistic regression on frozen features.

  Features are standardised with the training set's mean and std (per dimension), then W, b minimise
  mean softmax cross-entropy + l2/2 ||W||^2 (bias unpenalised) with scikit-learn's L-BFGS, float64. (A JAX
  L-BFGS compiled for ~12 s per feature shape on CPU; features are small, so the host solver is the better
  tool.) Classes absent from train_y keep zero weights and a very negative bias.
  Args:
    train_x: (N, D) features; train_y: (N,) int labels in [0, num_classes).
  Returns:
    a dict {'mean', 'std', 'w' (D, C), 'b' (C,), 'iters'} for `predict_linear_probe` (iters == max_iters: the
    solver stopped before its tolerance).
  """
  from sklearn.exceptions import ConvergenceWarning  # deferred: only the probe needs scikit-learn
  from sklearn.linear_model import LogisticRegression
  x = np.asarray(train_x, np.float64)
  y = np.asarray(train_y).astype(np.int64)
  mean, std = x.mean(0), x.std(0) + 1e-6
  clf = LogisticRegression(C=1.0 / (l2 * len(x)), max_iter=int(max_iters), tol=1e-6)
  with warnings.catch_warnings():  # weak weights on separable features stop at max_iters ('iters' says so); the
    warnings.simplefilter('ignore', ConvergenceWarning)  # cross-validation scores such probes as they are
    clf.fit((x - mean) / std, y)
  w = np.zeros((x.shape[1], num_classes))
  b = np.full((num_classes,), -1e9)
  if len(clf.classes_) == 2:  # scikit-learn stores one logit for two classes: logit(1) - logit(0)
    w[:, clf.classes_[1]], b[clf.classes_] = clf.coef_[0], (0.0, clf.intercept_[0])
    w[:, clf.classes_[0]] = 0.0
  else:
    w[:, clf.classes_], b[clf.classes_] = clf.coef_.T, clf.intercept_
  return {'mean': mean, 'std': std, 'w': w, 'b': b, 'iters': int(np.max(clf.n_iter_))}


def stratified_folds(labels, folds, seed=0):
  """(N,) fold index in [0, folds) of every sample: each class's samples, in a seeded random order, dealt to the
  folds in turn, so every fold holds its share of every class (deterministic for a seed)."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  fold = np.empty(len(labels), np.int64)
  for cls in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == cls))
    fold[idx] = (np.arange(len(idx)) + int(rng.integers(folds))) % folds  # random start: folds stay even
  return fold


def select_l2(train_x, train_y, num_classes, l2s, folds=5, seed=0):
  """The probe's L2 weight chosen by stratified k-fold cross-validation on the training set alone.

  Returns (the l2 of `l2s` with the highest mean held-out top-1, ties to the larger l2 (the simpler probe),
  {l2: mean held-out top-1}). One candidate, or fewer samples than 2 folds' worth: that l2, no validation.
  """
  l2s = sorted(float(v) for v in l2s)
  y = np.asarray(train_y)
  folds = min(int(folds), len(y))
  if len(l2s) == 1 or folds < 2:
    return l2s[-1 if len(l2s) == 1 else len(l2s) // 2], {}
  x = np.asarray(train_x, np.float64)
  fold = stratified_folds(y, folds, seed)
  scores = {}
  for l2 in l2s:
    hits = 0
    for k in range(folds):
      held = fold == k
      probe = fit_linear_probe(x[~held], y[~held], num_classes, l2=l2)
      hits += int(np.sum(np.argmax(predict_linear_probe(probe, x[held]), axis=1) == y[held]))
    scores[l2] = hits / len(y)
  best = max(l2s, key=lambda l2: (scores[l2], l2))
  return best, scores


def fit_linear_probe_cv(train_x, train_y, num_classes, l2s, folds=5, seed=0):
  """`fit_linear_probe` on the whole training set with the L2 weight `select_l2` chooses; the probe dict also
  holds 'l2' (the choice) and 'cv_top1' ({l2: held-out top-1})."""
  l2, scores = select_l2(train_x, train_y, num_classes, l2s, folds, seed)
  return {**fit_linear_probe(train_x, train_y, num_classes, l2=l2), 'l2': l2, 'cv_top1': scores}


def predict_linear_probe(probe, x):
  """(N, D) features -> (N, C) class probabilities of a probe from `fit_linear_probe`."""
  logits = ((np.asarray(x, np.float64) - probe['mean']) / probe['std']) @ probe['w'] + probe['b']
  logits -= logits.max(axis=1, keepdims=True)
  e = np.exp(logits)
  return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ classification

def classification_metrics(probs, labels, num_classes):
  """Video-level classification metrics from (N, C) scores (e.g. softmax averaged over clips).

  Returns {'top1', 'top5' (top-min(5, C)), 'mean_class_accuracy', 'per_class_accuracy' (C,) with NaN for a
  class without test videos, 'confusion' (C, C) int counts [true, predicted]}. argmax ties go to the lower
  class index.
  """
  probs, labels = np.asarray(probs), np.asarray(labels).astype(np.int64)
  if probs.ndim != 2 or probs.shape != (labels.shape[0], num_classes):
    raise ValueError(f'scores {probs.shape} must be (N={labels.shape[0]}, C={num_classes})')
  pred = np.argmax(probs, axis=1)
  k5 = min(5, num_classes)
  top5 = np.argsort(-probs, axis=1, kind='stable')[:, :k5]
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, pred), 1)
  support = confusion.sum(1)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
  return {'top1': float(np.mean(pred == labels)),
          'top5': float(np.mean((top5 == labels[:, None]).any(1))),
          'mean_class_accuracy': float(np.nanmean(per_class)) if (support > 0).any() else float('nan'),
          'per_class_accuracy': per_class,
          'confusion': confusion}
