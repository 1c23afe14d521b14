"""Confidence intervals over training seeds and test videos: a crossed (two-way) bootstrap. Pure numpy.

An accuracy of the study is the mean of per-video outcomes x[s, v] (1 = correct) over the S training seeds and the
N test videos. Two things are random: the seeds (a new seed, or another machine, retrains differently) and the test
videos (one draw of the data distribution, shared by every seed). One bootstrap resample draws S seeds with
replacement and, independently, N test videos with replacement, the same videos for every seed (they are the same
videos), and takes the mean of x over the drawn seeds and videos; the interval is the central `confidence` quantile
range of `samples` resamples (percentile bootstrap).

Paired comparisons (method A - method B on the same dataset) apply the same resamples to both: the bootstrap mean is
linear, so this is the bootstrap of the per-(seed, video) difference x_A[s, v] - x_B[s, v]. Seeds pair by position
(the i-th seed of A with the i-th of B); the videos pair exactly, which removes the test set's difficulty from
the difference: paired intervals are much narrower than the two intervals side by side suggest.

Caveat: with S = 3 seeds the seed resampling has only 10 distinct multisets and, like any bootstrap, estimates the
seed variance with the factor (S - 1) / S (2/3): the intervals' seed part is on the narrow side; the per-seed values
are reported beside each interval so that the spread can be read directly.
"""
import numpy as np


def resample_weights(num_seeds, num_videos, samples, rng):
  """(seed weights (samples, S), video weights (samples, N)): how often each seed / video is drawn, over S / N."""
  seeds = rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=samples) / num_seeds
  videos = rng.multinomial(num_videos, np.full(num_videos, 1.0 / num_videos), size=samples) / num_videos
  return seeds, videos


def bootstrap_means(x, samples, seed):
  """(samples,) bootstrap means of x (S, N) under the crossed resampling (module docstring).

  The same (samples, seed) give the same resamples for every x of the same shape: a comparison of two methods
  uses the difference of their x.
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or 0 in x.shape:
    raise ValueError(f'bootstrap_means: want outcomes (seeds, videos), got shape {x.shape}')
  w_seed, w_video = resample_weights(x.shape[0], x.shape[1], samples, np.random.default_rng(seed))
  per_seed = w_video @ x.T                      # (samples, S): each seed's mean over the drawn videos
  return np.sum(w_seed * per_seed, axis=1)      # the mean over the drawn seeds


def interval(x, samples=4000, confidence=0.95, seed=0):
  """{'mean', 'low', 'high', 'per_seed'} of outcomes x (S, N): the point estimate is the plain mean."""
  x = np.asarray(x, np.float64)
  means = bootstrap_means(x, samples, seed)
  alpha = (1.0 - confidence) / 2
  low, high = np.quantile(means, [alpha, 1.0 - alpha])
  return {'mean': float(x.mean()), 'low': float(low), 'high': float(high),
          'per_seed': [float(v) for v in x.mean(axis=1)]}


def paired_difference(x_a, x_b, samples=4000, confidence=0.95, seed=0):
  """interval() of x_a - x_b (both (S, N), the same test videos in the same order)."""
  x_a, x_b = np.asarray(x_a, np.float64), np.asarray(x_b, np.float64)
  if x_a.shape != x_b.shape:
    raise ValueError(f'paired_difference: outcomes of different shapes {x_a.shape} and {x_b.shape}')
  return interval(x_a - x_b, samples, confidence, seed)


def seed_interval(values, samples=4000, confidence=0.95, seed=0):
  """interval() of per-seed scalars (no test-video level, e.g. pretext metrics measured on fixed held-out clips)."""
  return interval(np.asarray(values, np.float64)[:, None], samples, confidence, seed)
