"""TGAN v2 video branch: level shapes and frame indices against a direct formula, the real clip brought to the
levels like the fakes, dense rendering == the sparse finest level at its frames, one D per level, subsampling
offsets independent of the device count, and dense rendering from a tgan2-trained state."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from csvr_jax import parallel
from csvr_jax.models import tgan2
from csvr_jax.train import networks
from csvr_jax.train import objectives
from csvr_jax.train import schedule
from csvr_jax.train import state as state_lib
from csvr_jax.train import steps as steps_lib
from fast_init import fast_variables  # tests/ is on sys.path (pytest rootdir-less import mode)
import pretrain_fixtures as fx


def test_level_shapes_paper_and_errors():
  assert tgan2.level_shapes((16, 112, 112), 4) == [(16, 14, 14), (8, 28, 28), (4, 56, 56), (2, 112, 112)]
  assert tgan2.level_shapes((4, 32, 32), 3) == [(4, 8, 8), (2, 16, 16), (1, 32, 32)]
  assert tgan2.level_shapes((4, 32, 32), 1) == [(4, 32, 32)]
  with pytest.raises(ValueError, match='4 frames is not a multiple of 8'):
    tgan2.check_levels((4, 32, 32), 4)
  with pytest.raises(ValueError, match='crop size divisible by 16'):
    tgan2.check_levels((16, 40, 40), 5)


def test_frame_indices_and_real_levels_match_a_direct_formula():
  rng = np.random.default_rng(0)
  b, t, s, levels = 5, 16, 16, 4
  offsets = rng.integers(0, 2, size=(b, levels - 1)).astype(np.int32)
  indices = [np.asarray(i) for i in tgan2.level_frame_indices(jnp.asarray(offsets), t)]
  video = rng.uniform(-1, 1, size=(b, t, s, s, 3)).astype(np.float32)
  reals = tgan2.real_levels(jnp.asarray(video), jnp.asarray(offsets), levels)
  for l in range(levels):
    # Level l keeps frames sum_{j<l} o_j 2^j + 2^l k: every subsampling layer halves the frames of the last.
    start = (offsets[:, :l] * 2 ** np.arange(l)).sum(axis=1)
    expected = start[:, None] + 2 ** l * np.arange(t // 2 ** l)[None]
    np.testing.assert_array_equal(indices[l], expected)
    f = 2 ** (levels - 1 - l)
    picked = np.stack([video[i, expected[i]] for i in range(b)])
    pooled = picked.reshape(b, t // 2 ** l, s // f, f, s // f, f, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(np.asarray(reals[l]), pooled, rtol=1e-6, atol=1e-6)


def test_level_l2_counts_every_pixel_of_every_level_once():
  rng = np.random.default_rng(7)
  shapes = tgan2.level_shapes((4, 8, 8), 3)
  fake = tuple(rng.uniform(-1, 1, size=(2,) + s + (3,)).astype(np.float32) for s in shapes)
  real = tuple(rng.uniform(-1, 1, size=(2,) + s + (3,)).astype(np.float32) for s in shapes)
  sq = sum(np.sum((f.astype(np.float64) - r) ** 2) for f, r in zip(fake, real))
  pixels = sum(f[..., 0].size for f in fake)  # 2 * (4*2*2 + 2*4*4 + 1*8*8)
  assert pixels == 2 * (16 + 32 + 64)
  got = objectives.video_l2(tuple(map(jnp.asarray, fake)), tuple(map(jnp.asarray, real)))
  np.testing.assert_allclose(float(got), sq / pixels, rtol=1e-5)
  np.testing.assert_allclose(float(objectives.video_l2(jnp.asarray(fake[0]), jnp.asarray(real[0]))),
                             np.sum((fake[0] - real[0]) ** 2) / fake[0][..., 0].size, rtol=1e-5)


@pytest.fixture(scope='module')
def tiny_generator():
  rng = np.random.default_rng(1)
  f_i = jnp.asarray(rng.normal(size=(3, 1, 2, 2, 8)), jnp.float32)
  z = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  g = tgan2.TGAN2Generator(channels=2, noise_dim=4, out_shape=(8, 16, 16), levels=3)
  offsets = jnp.asarray(rng.integers(0, 2, size=(3, 2)), jnp.int32)
  variables = fast_variables(g, f_i, z, offsets=offsets)
  return g, variables, f_i, z, offsets


def test_generator_levels_and_dense_rendering(tiny_generator):
  g, variables, f_i, z, offsets = tiny_generator
  levels = jax.jit(lambda v, a, b, o: g.apply(v, a, b, train=True, offsets=o, mutable=['batch_stats'])[0])(
      variables, f_i, z, offsets)
  assert [x.shape for x in levels] == [(3, 8, 4, 4, 3), (3, 4, 8, 8, 3), (3, 2, 16, 16, 3)]
  assert all(np.all(np.abs(np.asarray(x)) <= 1) and np.std(np.asarray(x)) > 0 for x in levels)
  # Inference: the dense clip (same variables) at the finest level's frame indices IS the sparse render
  # (the level blocks and render heads are per-frame, BatchNorm uses running statistics).
  sparse = jax.jit(lambda v, a, b, o: g.apply(v, a, b, offsets=o))(variables, f_i, z, offsets)
  dense = np.asarray(jax.jit(g.apply)(variables, f_i, z))
  assert dense.shape == (3, 8, 16, 16, 3)
  idx = np.asarray(tgan2.level_frame_indices(offsets, 8)[-1])
  np.testing.assert_allclose(np.stack([dense[i, idx[i]] for i in range(3)]), sparse[-1], rtol=1e-5, atol=1e-6)
  # Level 0 holds every frame: it does not depend on the offsets; the finest level does.
  other = jax.jit(lambda v, a, b, o: g.apply(v, a, b, offsets=o))(variables, f_i, z, 1 - offsets)
  np.testing.assert_allclose(other[0], sparse[0], rtol=1e-6)
  assert not np.allclose(other[-1], sparse[-1])


def test_multi_level_discriminator_one_per_level():
  rng = np.random.default_rng(2)
  shapes = tgan2.level_shapes((8, 16, 16), 3)
  xs = tuple(jnp.asarray(rng.uniform(-1, 1, size=(2,) + s + (3,)), jnp.float32) for s in shapes)
  d = tgan2.MultiLevelDiscriminator(channels=2, levels=3)
  variables = fast_variables(d, xs)
  assert sorted(variables['params']) == ['level0', 'level1', 'level2']
  run = jax.jit(d.apply)
  logits = np.asarray(run(variables, xs))
  assert logits.shape == (3, 2)
  changed = np.asarray(run(variables, (xs[0], xs[1].at[1].multiply(-1.0), xs[2])))
  np.testing.assert_allclose(np.delete(changed, 1, axis=0), np.delete(logits, 1, axis=0), rtol=1e-6)
  assert changed[1, 1] != logits[1, 1] and changed[1, 0] == logits[1, 0]  # per level, per sample


def test_offsets_do_not_depend_on_the_device_count():
  key = jax.random.PRNGKey(3)
  target = jnp.asarray(np.random.default_rng(4).uniform(-1, 1, size=(8, 4, 8, 8, 3)), jnp.float32)
  f_i = jnp.zeros((8, 1, 1, 1, 2), jnp.float32)

  def offsets_of(f_i, target):
    got = {}

    def run(name, f, noise_keys, offsets=None):
      got['offsets'] = offsets
      return jnp.zeros(f.shape[:1])

    _, reals = objectives.render_video(run, 'video_g_rec', f_i, target, key, 3)
    return got['offsets'], reals[-1]

  results, c = [], fx.tiny_config()
  for devices in (jax.devices(), jax.devices()[:1]):
    mesh = parallel.make_mesh(c, devices)
    fn = jax.jit(parallel.data_parallel(offsets_of, mesh, (parallel.BATCH,) * 2, (parallel.BATCH,) * 2))
    results.append(jax.device_get(fn(*parallel.host_to_global((f_i, target), mesh))))
  assert len(jax.devices()) == 8
  np.testing.assert_array_equal(results[0][0], results[1][0])
  np.testing.assert_array_equal(results[0][1], results[1][1])
  assert results[0][0].shape == (8, 2) and 0 < results[0][0].sum() < 16  # drawn per sample, not constant


def test_dense_rendering_from_a_tgan2_trained_state():
  c = fx.tiny_config()
  c.model.video_gan, c.model.video_gan_levels = 'tgan2', 3
  c.train.stages = (schedule.stage('video', -1, ['video'], ['integration', 'video_g_rec', 'video_d_rec',
                                                         'video_g_pred', 'video_d_pred']),)
  c.loss.video_targets = 'reconstruction'
  nets = networks.Networks(c)
  mesh = parallel.make_mesh(c, jax.devices()[:1])  # one device: the steps' device count is tested elsewhere
  opt = state_lib.make_optimizers(c, 2)
  st0, _ = state_lib.create_state(fx.fast_init(nets), opt, jax.random.PRNGKey(0), parallel.replicated(mesh))
  fns = steps_lib.StepFns(nets, c, schedule.resolve_stages(c, 2)[0], opt, mesh)
  before_vars = jax.device_get((st0.params['video_g_rec'], st0.batch_stats['video_g_rec']))  # st0 is donated
  st = st0
  for i in range(2):
    st, m = fns.train_step(st, parallel.host_to_global(fx.random_batch(c, i), mesh), i)
  assert np.isfinite(float(m['video_rec/l2'])) and 'video_rec/d_loss' in m
  f_i = jnp.asarray(np.random.default_rng(5).normal(size=(2,) + networks.vnet_feature_shape(c)), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(6), 2)
  render = jax.jit(functools.partial(nets.apply, 'video_g_rec', train=False))
  dense, _ = render(st.params['video_g_rec'], st.batch_stats['video_g_rec'], f_i, noise_keys=keys)
  before, _ = render(*before_vars, f_i, noise_keys=keys)
  dense = np.asarray(dense)
  assert dense.shape == (2, 4, 32, 32, 3) and np.all(np.isfinite(dense)) and np.all(np.abs(dense) <= 1)
  assert not np.allclose(dense, before)  # the trained parameters render it
  # The images logged during training are the dense rendering too.
  fakes, reals, _ = jax.device_get(fns.samples(st, parallel.host_to_global(fx.random_batch(c), mesh)))
  assert fakes['video_rec'].shape == reals['video_rec'].shape == (1, 4, 32, 32, 3)
