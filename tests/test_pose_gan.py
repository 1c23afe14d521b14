"""Pose GAN: shapes, ranges, conditioning, per-sample D (needed by the gradient penalty), and pooling."""
import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax import losses
from csvr_jax.models import pose_gan
from fast_init import fast_variables  # tests/ is on sys.path (pytest rootdir-less import mode)

B, T, N = 3, 16, 18


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  p_in = jnp.asarray(rng.random((B, T, 2 * N)), jnp.float32)
  valid = jnp.asarray(rng.random((B, T, N)) < 0.8)
  z = jnp.asarray(rng.normal(size=(B, 4)), jnp.float32)
  return p_in, valid, z


def test_generator_shapes_range_and_noise():
  p_in, valid, z = _inputs()
  g = pose_gan.PoseGenerator(channels=4, encoder_layers=6, noise_dim=4, out_len=16)
  variables = fast_variables(g, p_in, valid, z)
  run = jax.jit(lambda v, a, b, c: g.apply(v, a, b, c, train=True, mutable=['batch_stats'])[0])
  p_gen, feats = run(variables, p_in, valid, z)
  assert p_gen.shape == (B, 16, 2 * N)
  assert np.all((np.asarray(p_gen) >= 0) & (np.asarray(p_gen) <= 1))
  assert [f.shape for f in feats] == [(B, 16, 4), (B, 8, 4), (B, 8, 8), (B, 4, 8), (B, 4, 16), (B, 2, 16)]
  other, feats2 = run(variables, p_in, valid, z + 1.0)
  assert not np.allclose(p_gen, other)  # z_p reaches the output ...
  np.testing.assert_allclose(feats[-1], feats2[-1])  # ... but enters after the encoder (f_d is noise-free)
  assert 'batch_stats' in variables


def test_generator_other_output_length():
  p_in, valid, z = _inputs()
  g = pose_gan.PoseGenerator(channels=4, noise_dim=4, out_len=12)
  (p_gen, _), _ = g.apply(fast_variables(g, p_in[:, :8], valid[:, :8], z), p_in[:, :8], valid[:, :8], z,
                          train=True, mutable=['batch_stats'])
  assert p_gen.shape == (B, 12, 2 * N)


def test_residual_generator_starts_at_the_last_observed_pose_and_learns_a_displacement():
  p_in, valid, z = _inputs()
  valid = valid.at[0, :, 3].set(False).at[1].set(False)  # a joint never seen; a person never seen
  g = pose_gan.PoseGenerator(channels=4, noise_dim=4, out_len=5, output='residual')
  variables = jax.jit(g.init)(jax.random.PRNGKey(0), p_in, valid, z)  # one program, not one per op (seconds)
  p_gen, _ = jax.jit(g.apply)(variables, p_in, valid, z)
  last = np.asarray(p_in).reshape(B, T, N, 2)
  want = np.zeros((B, N, 2), np.float32)
  for b in range(B):  # loops: each joint's last valid position, else the mean of the valid joints, else 0.5
    v = np.asarray(valid[b])
    person = last[b][v].mean(0) if v.any() else np.full(2, 0.5)
    for j in range(N):
      seen = np.nonzero(v[:, j])[0]
      want[b, j] = last[b, seen[-1], j] if len(seen) else person
  np.testing.assert_allclose(p_gen, np.broadcast_to(want.reshape(B, 1, 2 * N), (B, 5, 2 * N)), rtol=1e-6)
  # The zero-initialised last convolution still gets a gradient: training moves off repeat-last.
  grads = jax.jit(jax.grad(lambda p: jnp.sum(g.apply({**variables, 'params': p}, p_in, valid, z)[0] ** 2)))(
      variables['params'])
  assert np.abs(np.asarray(grads['out']['kernel'])).max() > 0


def test_discriminator_conditioned_and_per_sample():
  p_in, _, _ = _inputs()
  p = jnp.asarray(np.random.default_rng(1).random((B, 16, 2 * N)), jnp.float32)
  d = pose_gan.PoseDiscriminator(channels=4)
  variables = fast_variables(d, p, p_in)
  run = jax.jit(d.apply)
  logits = run(variables, p, p_in)
  assert logits.shape == (B,) and logits.dtype == jnp.float32
  assert not np.allclose(logits, run(variables, p, p_in[::-1]))  # depends on the condition P_in
  changed = run(variables, p.at[0].add(0.5), p_in)
  np.testing.assert_allclose(changed[1:], logits[1:], atol=1e-6)  # no batch statistics
  assert not np.isclose(changed[0], logits[0])
  gp = losses.gradient_penalty(lambda x: d.apply(variables, x, p_in), p, p[::-1], jax.random.key(1))
  assert np.isfinite(float(gp)) and float(gp) >= 0


def test_adaptive_pool_matrix_rows_average():
  for n_in, n_out in [(4, 2), (2, 1), (2, 3), (5, 3), (3, 3)]:
    w = pose_gan.adaptive_avg_pool_matrix(n_in, n_out)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    x = np.arange(n_in, dtype=np.float32)
    # torch.nn.functional.adaptive_avg_pool1d windows: [floor(t*n/m), ceil((t+1)*n/m))
    want = [x[int(np.floor(t * n_in / n_out)):int(np.ceil((t + 1) * n_in / n_out))].mean() for t in range(n_out)]
    np.testing.assert_allclose(w @ x, want, rtol=1e-6)


def test_paper_size_shapes():
  g = pose_gan.PoseGenerator(channels=64, encoder_layers=6, noise_dim=16, out_len=16)
  d = pose_gan.PoseDiscriminator(channels=64)
  s = lambda *shape, dt=jnp.float32: jax.ShapeDtypeStruct(shape, dt)
  (p_gen, feats), _ = jax.eval_shape(lambda a, b, c: g.init_with_output(jax.random.key(0), a, b, c),
                                     s(16, 16, 36), s(16, 16, 18, dt=jnp.bool_), s(16, 16))
  assert p_gen.shape == (16, 16, 36) and len(feats) == 6 and feats[-1].shape == (16, 2, 256)
  logits, _ = jax.eval_shape(lambda a, b: d.init_with_output(jax.random.key(0), a, b),
                             s(16, 16, 36), s(16, 16, 36))
  assert logits.shape == (16,)
