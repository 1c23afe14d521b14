"""Video GAN: upsampling plan, generator shapes and range, per-sample conditional D, and the whole CSVR chain
(backbone -> integration -> generators -> discriminators, dense and tgan2) at the paper's sizes for every backbone
(eval_shape)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csvr_jax.models import get_video_backbone
from csvr_jax.models import integration
from csvr_jax.models import pose_gan
from csvr_jax.models import tgan2
from csvr_jax.models import video_gan
from fast_init import fast_variables  # tests/ is on sys.path (pytest rootdir-less import mode)


def test_upsample_plan():
  assert video_gan.upsample_plan(7, 112) == (4, 7)
  assert video_gan.upsample_plan(4, 112) == (4, 7)  # C3D/S3D maps are resized 4 -> 7 first
  assert video_gan.upsample_plan(3, 112) == (4, 7)
  assert video_gan.upsample_plan(2, 16) == (3, 2)
  assert video_gan.upsample_plan(1, 16) == (4, 1)
  assert video_gan.upsample_plan(16, 16) == (0, 16)
  with pytest.raises(ValueError, match='video generator'):
    video_gan.upsample_plan(8, 4)


@pytest.mark.parametrize('map_shape,out_shape', [((1, 4, 4, 16), (8, 64, 64)), ((2, 3, 3, 8), (4, 14, 14))])
def test_generator_tiny(map_shape, out_shape):
  rng = np.random.default_rng(0)
  f_i = jnp.asarray(rng.normal(size=(2,) + map_shape), jnp.float32)
  z = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
  g = video_gan.VideoGenerator(channels=2, noise_dim=4, out_shape=out_shape)
  variables = fast_variables(g, f_i, z)
  run = jax.jit(lambda v, a, b: g.apply(v, a, b, train=True, mutable=['batch_stats'])[0])
  video = np.asarray(run(variables, f_i, z))
  assert video.shape == (2,) + out_shape + (3,)
  assert np.all(np.abs(video) <= 1) and np.std(video) > 0
  assert not np.allclose(video, run(variables, f_i, z + 1.0))  # the noise matters
  assert not np.allclose(video, run(variables, f_i[::-1], z))  # the condition matters


def test_discriminator_per_sample_and_conditional():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(-1, 1, size=(3, 5, 12, 12, 3)), jnp.float32)  # odd T: padded pooling
  cond = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
  d = video_gan.VideoDiscriminator(channels=2, blocks=4)
  variables = fast_variables(d, x, cond)
  run = jax.jit(d.apply)
  logits = run(variables, x, cond)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  changed = run(variables, x.at[0].multiply(-1.0), cond)
  np.testing.assert_allclose(changed[1:], logits[1:], rtol=1e-5)
  assert not np.isclose(changed[0], logits[0])
  assert not np.allclose(logits, run(variables, x, cond[::-1]))
  uncond = video_gan.VideoDiscriminator(channels=2, blocks=4)
  assert jax.jit(uncond.apply)(fast_variables(uncond, x), x).shape == (3,)


BACKBONES = ['c3d', 'r3d_18', 'r2plus1d_18', 'mc3_18', 's3d']


@pytest.mark.parametrize('name', BACKBONES)
def test_paper_size_chain(name):
  """16x112x112 clips, batch 16, paper widths: every CSVR module composes with this backbone's f_s."""
  b, s = 16, lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  key = jax.random.key(0)
  backbone = get_video_backbone(name, dtype='bfloat16')
  out, _ = jax.eval_shape(lambda x: backbone.init_with_output(key, x, False), s(b, 16, 112, 112, 3))
  f_s = out['features']
  c1 = f_s.shape[-1]
  g_p = pose_gan.PoseGenerator(channels=64, encoder_layers=6, noise_dim=16, out_len=16)
  (_, feats), _ = jax.eval_shape(lambda p, v, z: g_p.init_with_output(key, p, v, z),
                                 s(b, 16, 36), s(b, 16, 18), s(b, 16))
  gen = video_gan.VideoGenerator(channels=64, noise_dim=32, out_shape=(16, 112, 112), dtype=jnp.bfloat16)
  disc = video_gan.VideoDiscriminator(channels=32, dtype=jnp.bfloat16)
  for kind in ('adain', 'concat'):
    integ = integration.get_integration(kind, channels=c1, dtype=jnp.bfloat16)
    (f_i, _), _ = jax.eval_shape(lambda a, d: integ.init_with_output(key, a, d), f_s, feats[-1])
    assert f_i.shape == f_s.shape
  video, g_vars = jax.eval_shape(lambda f, z: gen.init_with_output(key, f, z), f_i, s(b, 32))
  assert video.shape == (b, 16, 112, 112, 3) and video.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(g_vars['params']))
  logits, _ = jax.eval_shape(lambda v, c: disc.init_with_output(key, v, c), video, s(b, c1))
  assert logits.shape == (b,)
  # TGAN v2 (model.video_gan='tgan2'): four levels in training, the dense clip at inference.
  gen2 = tgan2.TGAN2Generator(channels=64, noise_dim=32, out_shape=(16, 112, 112), levels=4, dtype=jnp.bfloat16)
  offsets = jax.ShapeDtypeStruct((b, 3), jnp.int32)
  levels, g2_vars = jax.eval_shape(lambda f, z, o: gen2.init_with_output(key, f, z, offsets=o), f_i, s(b, 32), offsets)
  assert [x.shape for x in levels] == [(b,) + shape + (3,) for shape in tgan2.level_shapes((16, 112, 112), 4)]
  dense = jax.eval_shape(lambda v, f, z: gen2.apply(v, f, z), g2_vars, f_i, s(b, 32))
  assert dense.shape == (b, 16, 112, 112, 3) and dense.dtype == jnp.float32
  disc2 = tgan2.MultiLevelDiscriminator(channels=32, levels=4, dtype=jnp.bfloat16)
  logits, _ = jax.eval_shape(lambda xs: disc2.init_with_output(key, xs), levels)
  assert logits.shape == (4, b)


def test_fold_taps_runs_every_3d_conv_as_temporal_taps_with_the_same_parameters_and_outputs():
  """model.conv_impl='fold_taps' (CPU): the V-Network, both video GANs' generators (train mode) and
  discriminators and both integrations keep their parameter trees and give the same outputs (float order aside)."""
  rng = np.random.default_rng(0)
  rand = lambda *shape: jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
  clip, f_s, f_d, z, cond = rand(1, 4, 32, 32, 3), rand(1, 2, 4, 4, 16), rand(1, 4, 8), rand(1, 4), rand(1, 16)
  cases = [
      (lambda impl: get_video_backbone('r3d_18', width=0.125, conv_impl=impl), (clip,), {'train': True}),
      (lambda impl: video_gan.VideoGenerator(channels=4, noise_dim=4, out_shape=(4, 32, 32), conv_impl=impl),
       (f_s, z), {'train': True}),
      (lambda impl: tgan2.TGAN2Generator(channels=4, noise_dim=4, out_shape=(4, 32, 32), levels=3, conv_impl=impl),
       (f_s, z), {'train': True}),
      (lambda impl: video_gan.VideoDiscriminator(channels=2, conv_impl=impl), (clip, cond), {}),
      (lambda impl: tgan2.MultiLevelDiscriminator(channels=2, levels=2, conv_impl=impl),
       ((clip[:, :2, ::2, ::2], clip), cond), {}),
  ] + [(lambda impl, name=name: integration.get_integration(name, channels=16, conv_impl=impl), (f_s, f_d),
        {'train': True}) for name in integration.INTEGRATIONS]
  for make, args, kw in cases:
    variables = fast_variables(make('fold_taps'), *args, **kw)
    outs = [jax.jit(lambda v, impl=impl: make(impl).apply(v, *args, **kw, mutable=['batch_stats'] if kw else False))(
        variables) for impl in ('fold', 'fold_taps')]  # the same variables fit both
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), *outs)
