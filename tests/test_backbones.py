"""Backbones: parameter counts at width 1, shapes/dtypes at tiny width, BatchNorm modes, remat, sync BN."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csvr_jax import models
from csvr_jax.benchmarks import flops
from csvr_jax.models import backbone_layers

# torchvision's counts without the classifier (issue 2 / Table IX); c3d is VCOP's C3D (convs with bias + BN),
# r2d_10 torchvision's ResNet layout with one BasicBlock per stage.
PARAMS_WIDTH1 = {'r3d_18': 33_166_272, 'r2plus1d_18': 31_300_125, 'mc3_18': 11_490_240, 's3d': 7_910_048,
                 'c3d': 27_661_440, 'r2d_10': 4_905_792}
VIDEO = ('c3d', 'r3d_18', 'mc3_18', 'r2plus1d_18', 's3d')
TINY = 0.125
# Test time is mostly XLA compile time; the cheap CPU pipeline halves it (S3D: 25 s -> 12 s).
FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def run_fast(fn, *args):
  """jax.jit(fn)(*args), compiled with FAST_COMPILE."""
  return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def _build(name, **kw):
  if name == 'r2d_10':
    return models.get_image_backbone(name, **kw)
  return models.get_video_backbone(name, **kw)


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', sorted(PARAMS_WIDTH1))
def test_param_count_width1(name):
  shape = (1, 112, 112, 3) if name == 'r2d_10' else (1, 16, 112, 112, 3)
  model = _build(name)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, False), jnp.zeros(shape))
  assert _count(variables['params']) == PARAMS_WIDTH1[name]
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables['params']))


# name -> (input shape, features shape, pooled channels) at width 1/8.
TINY_SHAPES = {
    'c3d': ((2, 16, 32, 48, 3), (2, 1, 2, 2, 64), 64),
    'r3d_18': ((2, 8, 32, 48, 3), (2, 1, 2, 3, 64), 64),
    'mc3_18': ((2, 8, 32, 48, 3), (2, 8, 2, 3, 64), 64),
    'r2plus1d_18': ((2, 8, 32, 48, 3), (2, 1, 2, 3, 64), 64),
    's3d': ((2, 8, 32, 48, 3), (2, 1, 1, 1, 128), 128),
    'r2d_10': ((2, 32, 48, 3), (2, 1, 2, 64), 64),
}


def random_variables(model, x, seed=0):
  """Variables of `model` with random weights AND random BatchNorm statistics, drawn with numpy.

  (Cheaper than compiling model.init for each model; test_init_runs covers model.init itself.)
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    key, shape = path[-1].key, leaf.shape
    if key == 'kernel':
      return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))).astype(np.float32)
    if key == 'num_batches_tracked':
      return np.zeros(shape, leaf.dtype)
    if key in ('scale', 'var'):
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)  # bias, mean

  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, False), x)
  return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def _init(name, dtype='float32'):
  model = _build(name, width=TINY, dtype=dtype)
  x = np.random.default_rng(1).standard_normal(TINY_SHAPES[name][0]).astype(np.float32)
  return model, random_variables(model, x), x


def test_init_runs():
  model = models.get_video_backbone('mc3_18', width=0.0625)
  variables = run_fast(functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((1, 2, 16, 16, 3)))
  kernel = variables['params']['stem_conv']['kernel']
  assert kernel.shape == (3, 7, 7, 3, 4) and 0.05 < float(jnp.std(kernel)) < 0.2  # kaiming fan_out: 0.109
  assert float(jnp.sum(variables['batch_stats']['stem_bn']['var'])) == 4.0


@pytest.mark.parametrize('name', sorted(TINY_SHAPES))
def test_shapes_and_train_mode(name):
  in_shape, feat_shape, channels = TINY_SHAPES[name]
  model, variables, x = _init(name)

  def both_modes(variables, x):
    return model.apply(variables, x, False), model.apply(variables, x, True, mutable=['batch_stats'])

  out, (train_out, updates) = run_fast(both_modes, variables, x)
  assert out['features'].shape == feat_shape and out['features'].dtype == jnp.float32
  assert out['pooled'].shape == (in_shape[0], channels) and out['pooled'].dtype == jnp.float32
  np.testing.assert_allclose(out['pooled'], out['features'].mean(axis=tuple(range(1, len(feat_shape) - 1))),
                             rtol=1e-5, atol=1e-6)
  assert np.isfinite(np.asarray(train_out['pooled'])).all()
  counters = [v for p, v in jax.tree_util.tree_leaves_with_path(updates['batch_stats'])
              if p[-1].key == 'num_batches_tracked']
  assert counters and all(int(c) == 1 for c in counters)
  # training mode normalises with batch statistics, eval mode with the (random) running statistics
  assert not np.allclose(train_out['pooled'], out['pooled'])


def test_bfloat16_compute_float32_params():
  model, variables, x = _init('r3d_18', 'bfloat16')
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables['params']))
  out = run_fast(functools.partial(model.apply, train=False), variables, x)
  assert out['features'].dtype == jnp.bfloat16 and out['pooled'].dtype == jnp.float32
  ref = run_fast(functools.partial(_init('r3d_18')[0].apply, train=False), variables, x)['pooled']
  assert np.abs(np.asarray(out['pooled']) - ref).max() < 0.05 * np.abs(ref).max()


@pytest.mark.parametrize('kernel_size,strides,padding', [
    ((1, 3, 3), (1, 2, 2), (0, 1, 1)), ((3, 1, 1), (2, 1, 1), (1, 0, 0)), ((1, 1, 1), (1, 1, 1), (0, 0, 0)),
    ((3, 3, 3), (2, 2, 2), (1, 1, 1))])
def test_fold_conv_equals_native(kernel_size, strides, padding):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 6, 7, 3)).astype(np.float32)
  kernel = rng.standard_normal(kernel_size + (3, 4)).astype(np.float32)
  fold = backbone_layers.conv_apply(x, kernel, strides, padding, 'fold')
  native = backbone_layers.conv_apply(x, kernel, strides, padding, 'native')
  assert fold.shape == native.shape
  np.testing.assert_allclose(fold, native, rtol=1e-5, atol=1e-5)


def test_remat_checkpoints_blocks_and_keeps_values():
  model, variables, x = _init('r3d_18')
  remat = models.get_video_backbone('r3d_18', width=TINY, remat=True)

  def loss(m, params):
    out, _ = m.apply({**variables, 'params': params}, x, True, mutable=['batch_stats'])
    return jnp.sum(out['pooled'] ** 2)

  jaxpr = lambda m: str(jax.make_jaxpr(jax.grad(functools.partial(loss, m)))(variables['params']))
  # jax.checkpoint shows as the remat2 primitive: one per residual block (8), none without remat
  assert jaxpr(remat).count('remat2[') >= 8 and 'remat2[' not in jaxpr(model)
  fwd = lambda m: run_fast(functools.partial(m.apply, train=False), variables, x)['pooled']
  np.testing.assert_allclose(fwd(remat), fwd(model), rtol=1e-5, atol=1e-6)


def test_sync_batchnorm_matches_global_batch():
  """bn_axis_name inside shard_map over 8 devices gives the statistics of the whole batch."""
  model, variables, _ = _init('r2d_10')
  sync = models.get_image_backbone('r2d_10', width=TINY, bn_axis_name='data')
  x = jax.random.normal(jax.random.key(2), (8, 32, 32, 3))
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Explicit,))
  P = jax.sharding.PartitionSpec

  def per_device(xs):
    out, upd = sync.apply(variables, xs, True, mutable=['batch_stats'])
    return out['pooled'], upd['batch_stats']

  f = jax.shard_map(per_device, mesh=mesh, in_specs=P('data'), out_specs=(P('data'), P()))
  pooled, stats = run_fast(f, jax.device_put(x, jax.NamedSharding(mesh, P('data'))))
  ref, ref_upd = run_fast(functools.partial(model.apply, train=True, mutable=['batch_stats']), variables, x)
  np.testing.assert_allclose(pooled, ref['pooled'], rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), stats,
               ref_upd['batch_stats'])


def test_masked_batchnorm_ignores_padding_frames():
  """I-Network in train mode: features and BatchNorm statistics of the valid frames do not change when padding
  slots (black frames, as the loader writes them, or noise) join the batch."""
  model, variables, _ = _init('r2d_10')
  valid = jax.random.normal(jax.random.key(3), (4, 32, 32, 3))
  apply = lambda v, x, m: model.apply(v, x, True, m, mutable=['batch_stats'])
  ref, ref_upd = run_fast(apply, variables, valid, jnp.ones(4, bool))
  plain, plain_upd = run_fast(lambda v, x: model.apply(v, x, True, mutable=['batch_stats']), variables, valid)
  # All rows valid: flax's own statistics, up to the rounding of its one-pass variance formula.
  np.testing.assert_allclose(ref['pooled'], plain['pooled'], rtol=1e-3, atol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), ref_upd, plain_upd)
  for padding in (jnp.zeros((4, 32, 32, 3)), 3 * jax.random.normal(jax.random.key(4), (4, 32, 32, 3))):
    x = jnp.stack([valid, padding], axis=1).reshape(8, 32, 32, 3)  # valid and padding rows interleaved
    mask = jnp.arange(8) % 2 == 0
    out, upd = run_fast(apply, variables, x, mask)
    np.testing.assert_allclose(out['pooled'][::2], ref['pooled'], rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), upd, ref_upd)
  unmasked, _ = run_fast(apply, variables, x, jnp.ones(8, bool))
  assert not np.allclose(unmasked['pooled'][::2], ref['pooled'], atol=1e-3)  # the padding did matter before


def test_masked_batchnorm_is_exact_across_devices_with_uneven_masks():
  """8 devices holding 0-2 valid rows each give the statistics of the valid rows of the whole batch."""
  model, variables, _ = _init('r2d_10')
  sync = models.get_image_backbone('r2d_10', width=TINY, bn_axis_name='data')
  x = jax.random.normal(jax.random.key(5), (16, 32, 32, 3))
  mask = jnp.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1], bool)
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Explicit,))
  P = jax.sharding.PartitionSpec

  def per_device(xs, ms):
    out, upd = sync.apply(variables, xs, True, ms, mutable=['batch_stats'])
    return out['pooled'], upd['batch_stats']

  f = jax.shard_map(per_device, mesh=mesh, in_specs=(P('data'), P('data')), out_specs=(P('data'), P()))
  put = lambda a: jax.device_put(a, jax.NamedSharding(mesh, P('data')))
  pooled, stats = run_fast(f, put(x), put(mask))
  ref, ref_upd = run_fast(functools.partial(model.apply, train=True, mutable=['batch_stats']), variables, x[mask])
  np.testing.assert_allclose(np.asarray(pooled)[np.asarray(mask)], ref['pooled'], rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), stats,
               ref_upd['batch_stats'])


def test_unknown_backbone_is_clear():
  with pytest.raises(ValueError, match="unknown video backbone 'r4d'"):
    models.get_video_backbone('r4d')


@pytest.mark.parametrize('name,size', [('r3d_18', 112), ('mc3_18', 112), ('r2plus1d_18', 112), ('s3d', 224)])
def test_flops_match_torchvision(name, size):
  ref = flops.REFERENCES[name]
  params, fwd_flops = flops.backbone_flops(name, 16, size, 1.0)
  assert params == ref['params']
  assert abs(fwd_flops / 1e9 - ref['gflops']) < 0.01 * ref['gflops']


def test_flops_scale_with_frames_for_image_backbone():
  one, four = flops.backbone_flops('r2d_10', 1, 64, 0.5), flops.backbone_flops('r2d_10', 4, 64, 0.5)
  assert one[0] == four[0] and four[1] == 4 * one[1] > 0


def test_too_small_input_is_clear():
  model = models.get_video_backbone('c3d', width=TINY)
  with pytest.raises(ValueError, match=r'c3d: input \(1, 8, 32, 32, 3\) is too small'):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, False), jnp.zeros((1, 8, 32, 32, 3)))


@pytest.mark.parametrize('shape,kernel,padding', [((4, 16, 16), (3, 7, 7), (1, 3, 3)),  # R3D-18's stem
                                                   ((3, 15, 13), (1, 7, 7), (0, 3, 3)),  # R(2+1)D's, odd sizes
                                                   ((4, 9, 10), (2, 4, 4), (0, 1, 2))])  # even kernel
def test_space_to_depth_conv_is_the_strided_conv(shape, kernel, padding):
  """space_to_depth_conv against jax.lax's (1, 2, 2)-strided conv: outputs and both gradients."""
  from csvr_jax.models import backbone_layers
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2,) + shape + (3,)), jnp.float32)
  k = jnp.asarray(rng.normal(size=kernel + (3, 5)), jnp.float32)
  dims = ('NDHWC', 'DHWIO', 'NDHWC')
  ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 2, 2), [(p, p) for p in padding],
                                                  dimension_numbers=dims)
  s2d = lambda x, k: backbone_layers.space_to_depth_conv(x, k, padding)
  np.testing.assert_allclose(s2d(x, k), ref(x, k), rtol=1e-5, atol=1e-4)
  cotangent = jnp.asarray(rng.normal(size=ref(x, k).shape), jnp.float32)
  vjp = lambda f: jax.vjp(f, x, k)[1](cotangent)
  for got, want in zip(vjp(s2d), vjp(ref)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize('arch,impl', [('r2plus1d_18', 'fold_pad8'), ('r3d_18', 'fold_s2d'),
                                       ('r2plus1d_18', 'fold_s2d')])
def test_zero_channel_padding_keeps_parameters_and_numbers(arch, impl):
  """conv_impl='fold_pad8' pads odd channel counts (RGB, R(2+1)D's stem 45 and midplanes) with zeros for
  cuDNN, 'fold_s2d' also runs the RGB stem as a space-to-depth conv: the same parameter tree, and the same
  outputs, BatchNorm statistics and gradients as 'fold'."""
  import fast_init
  from csvr_jax.models import get_video_backbone
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 16, 16, 3))
  models = {i: get_video_backbone(arch, width=0.125, conv_impl=i) for i in ('fold', impl)}
  shapes = {k: jax.eval_shape(lambda m=m: m.init(jax.random.key(0), x, train=False)) for k, m in models.items()}
  assert jax.tree.map(lambda s: s.shape, shapes[impl]) == jax.tree.map(lambda s: s.shape, shapes['fold'])
  variables = fast_init.fill_like(shapes['fold'])

  def loss(params, impl):  # eval-mode BN: an affine map, so float32 rounding is not amplified
    out = models[impl].apply({**variables, 'params': params}, x, train=False)
    return jnp.sum(out['pooled'] ** 2), out['features']

  opts = {'xla_backend_optimization_level': 0}
  grads = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1, compiler_options=opts)
  (l0, f0), g0 = grads(variables['params'], 'fold')
  (l1, f1), g1 = grads(variables['params'], impl)
  for a, b in zip(jax.tree.leaves((l1, f1, g1)), jax.tree.leaves((l0, f0, g0))):
    assert a.shape == b.shape and np.abs(np.asarray(a) - b).max() <= 1e-4 * max(np.abs(b).max(), 1e-6)
  # Training mode: BatchNorm statistics over the true channels only (same tree, no NaN from zero channels).
  stats = jax.jit(lambda impl: models[impl].apply(variables, x, train=True, mutable=['batch_stats'])[1],
                  static_argnums=0, compiler_options=opts)(impl)
  assert jax.tree.map(np.shape, stats) == jax.tree.map(np.shape, {'batch_stats': variables['batch_stats']})
  assert all(np.isfinite(v).all() for v in jax.tree.leaves(stats))


@pytest.mark.parametrize('shape,kernel,strides,padding', [
    ((2, 4, 16, 16, 3), (3, 7, 7, 3, 8), (1, 2, 2), ((1, 1), (3, 3), (3, 3))),  # R3D-18's stem
    ((2, 4, 8, 8, 8), (3, 3, 3, 8, 16), (2, 2, 2), ((1, 1),) * 3),              # a downsampling block
    ((2, 1, 4, 4, 8), (3, 3, 3, 8, 8), (1, 1, 1), ((1, 1),) * 3),               # one frame: taps 0, 2 skipped
    ((2, 3, 6, 6, 4), (2, 3, 3, 4, 4), (1, 1, 1), ((0, 1), (0, 0), (1, 1))),    # even kernel, asymmetric padding
])
def test_temporal_taps_conv_is_the_3d_conv_and_its_gradients(shape, kernel, strides, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
  k = jnp.asarray(rng.standard_normal(kernel, dtype=np.float32))
  native = lambda x, k: jax.lax.conv_general_dilated(x, k, strides, padding,
                                                     dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))
  taps = lambda x, k: backbone_layers.temporal_taps_conv(x, k, strides, padding)
  np.testing.assert_allclose(taps(x, k), native(x, k), rtol=1e-4, atol=1e-4)
  loss = lambda conv: lambda x, k: jnp.sum(jnp.sin(conv(x, k)))
  for a, b in zip(jax.grad(loss(taps), (0, 1))(x, k), jax.grad(loss(native), (0, 1))(x, k)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
