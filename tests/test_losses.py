"""csvr_jax.losses against independent references (numpy loops, finite differences, two-pass GAN updates)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from csvr_jax import losses

jax.config.update('jax_default_matmul_precision', 'highest')


def _np_normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_mi_info_nce(v, k, mask, tau, negatives=None):
  """Brute-force eq. 2 with explicit loops over clips and I-frames (float64); negatives (B, B*M) bool: the
  negative keys each clip may use (None: all valid ones of the other clips)."""
  v, k = _np_normalize(v.astype(np.float64)), _np_normalize(k.astype(np.float64))
  out = []
  for i in range(v.shape[0]):
    pos, allsum = 0.0, 0.0
    for j in range(k.shape[0]):
      for m in range(k.shape[1]):
        if not mask[j, m] or (j != i and negatives is not None and not negatives[i, j * k.shape[1] + m]):
          continue
        e = np.exp(np.dot(v[i], k[j, m]) / tau)
        allsum += e
        if j == i:
          pos += e
    out.append(-np.log(pos / allsum))
  return np.mean(out)


def _random_case(seed, b=6, m=4, d=8):
  rng = np.random.default_rng(seed)
  v = rng.normal(size=(b, d)).astype(np.float32)
  k = rng.normal(size=(b, m, d)).astype(np.float32)
  mask = rng.random((b, m)) < 0.6
  mask[:, 0] |= ~mask.any(axis=1)  # every clip keeps >= 1 I-frame ...
  mask[1] = False
  mask[1, m - 1] = True  # ... and clip 1 has exactly one (the last slot)
  return v, k, mask


@pytest.mark.parametrize('seed', [0, 1])
def test_mi_info_nce_matches_numpy_loop(seed):
  v, k, mask = _random_case(seed)
  got = jax.jit(losses.mi_info_nce)(jnp.asarray(v), jnp.asarray(k), jnp.asarray(mask), 0.1)
  np.testing.assert_allclose(float(got), _np_mi_info_nce(v, k, mask, 0.1), rtol=1e-5)


def test_mi_info_nce_equals_info_nce_with_one_iframe():
  v, k, _ = _random_case(3, m=1)
  mask = np.ones((v.shape[0], 1), bool)
  mi = jax.jit(losses.mi_info_nce)(jnp.asarray(v), jnp.asarray(k), jnp.asarray(mask), 0.07)
  single = jax.jit(losses.info_nce)(jnp.asarray(v), jnp.asarray(k[:, 0]), 0.07)
  np.testing.assert_allclose(float(mi), float(single), rtol=1e-6)
  np.testing.assert_allclose(float(single), _np_mi_info_nce(v, k, mask, 0.07), rtol=1e-5)


def test_mi_info_nce_finite_difference_gradient():
  v, k, mask = _random_case(4, b=3, m=3, d=4)
  f = lambda v_, k_: losses.mi_info_nce(v_, k_, jnp.asarray(mask), 0.5)
  v64, k64 = v.astype(np.float64), k.astype(np.float64)
  gv, gk = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(v), jnp.asarray(k))
  h = 1e-3
  for arr, grad, which in ((v64, gv, 0), (k64, gk, 1)):
    num = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
      up, dn = arr.copy(), arr.copy()
      up[idx] += h
      dn[idx] -= h
      args_up = (up, k64) if which == 0 else (v64, up)
      args_dn = (dn, k64) if which == 0 else (v64, dn)
      num[idx] = (_np_mi_info_nce(*args_up, mask, 0.5) - _np_mi_info_nce(*args_dn, mask, 0.5)) / (2 * h)
    np.testing.assert_allclose(np.asarray(grad), num, atol=2e-4)
  assert np.all(np.asarray(gk)[~mask] == 0)  # padded I-frames get no gradient


def test_context_losses_sharded_equal_single_device():
  mesh = jax.make_mesh((8,), ('data',))
  v, k, mask = _random_case(5, b=16, m=3, d=8)
  one = np.asarray(losses.pick_random_iframe(jnp.asarray(k), jnp.asarray(mask), jax.random.split(jax.random.key(0), 16)))
  fns = {
      'mi': (lambda v_, k_, m_, ax: losses.mi_info_nce(v_, k_, m_, 0.1, axis_name=ax), (v, k, mask)),
      'info': (lambda v_, k_, ax: losses.info_nce(v_, k_, 0.1, axis_name=ax), (v, one)),
      'l2': (lambda v_, k_, ax: losses.l2_embedding_loss(v_, k_, axis_name=ax), (v, one)),
  }
  for name, (fn, args) in fns.items():
    single = jax.jit(jax.value_and_grad(lambda *a: fn(*a, None), argnums=(0, 1)))(*map(jnp.asarray, args))
    sharded_fn = jax.shard_map(functools.partial(fn, ax='data'), mesh=mesh,
                               in_specs=(P('data'),) * len(args), out_specs=P())
    placed = [jax.device_put(a, NamedSharding(mesh, P('data'))) for a in args]
    sharded = jax.jit(jax.value_and_grad(sharded_fn, argnums=(0, 1)))(*placed)
    np.testing.assert_allclose(float(sharded[0]), float(single[0]), rtol=1e-5, err_msg=name)
    for g_sh, g_1 in zip(sharded[1], single[1]):  # the all_gather transpose routes key gradients home
      np.testing.assert_allclose(np.asarray(g_sh), np.asarray(g_1), atol=1e-6, err_msg=name)


def test_negative_subset_draws_k_valid_candidates_per_row():
  rng = np.random.default_rng(0)
  candidates = rng.random((6, 10)) < 0.5
  candidates[0] = False
  candidates[1, :2] = True
  candidates[1, 2:] = False  # fewer candidates than k: all of them
  keys = jax.random.split(jax.random.key(1), 6)
  chosen = np.asarray(losses.negative_subset(jnp.asarray(candidates), 3, keys))
  assert not (chosen & ~candidates).any()
  np.testing.assert_array_equal(chosen.sum(1), np.minimum(candidates.sum(1), 3))
  again = np.asarray(losses.negative_subset(jnp.asarray(candidates[::-1]), 3, keys[::-1]))
  np.testing.assert_array_equal(again, chosen[::-1])  # a row's draw depends on its key only


@pytest.mark.parametrize('kind', ['mi_info_nce', 'info_nce'])
def test_k_random_negatives_match_numpy_and_are_device_count_independent(kind):
  v, k, mask = _random_case(8, b=16, m=3, d=8)
  keys = jax.random.split(jax.random.key(2), 16)
  fn = lambda v_, k_, m_, keys_, ax: losses.context_loss(kind, v_, k_, m_, 0.1, keys_, axis_name=ax,
                                                          num_negatives=3)
  single = float(jax.jit(lambda *a: fn(*a, None))(jnp.asarray(v), jnp.asarray(k), jnp.asarray(mask), keys))
  mesh = jax.make_mesh((8,), ('data',))
  sharded_fn = jax.shard_map(functools.partial(fn, ax='data'), mesh=mesh, in_specs=(P('data'),) * 4, out_specs=P())
  placed = [jax.device_put(a, NamedSharding(mesh, P('data'))) for a in (v, k, mask, keys)]
  np.testing.assert_allclose(float(jax.jit(sharded_fn)(*placed)), single, rtol=1e-5)
  # The reference: the same negative subset (drawn by losses.negative_subset with the same keys), numpy loss.
  neg_keys = jax.vmap(lambda key: jax.random.fold_in(key, 1))(keys)
  if kind == 'mi_info_nce':
    own = np.repeat(np.eye(16, dtype=bool), 3, axis=1)
    neg = np.asarray(losses.negative_subset(jnp.asarray(np.tile(mask.reshape(1, -1), (16, 1)) & ~own), 3, neg_keys))
    assert (neg.sum(1) == 3).all()
    np.testing.assert_allclose(single, _np_mi_info_nce(v, k, mask, 0.1, neg), rtol=1e-5)
  else:
    pick_keys = jax.vmap(lambda key: jax.random.fold_in(key, 0))(keys)
    one = np.asarray(losses.pick_random_iframe(jnp.asarray(k), jnp.asarray(mask), pick_keys))
    neg = np.asarray(losses.negative_subset(jnp.asarray(~np.eye(16, dtype=bool)), 3, neg_keys))
    np.testing.assert_allclose(single, _np_mi_info_nce(v, one[:, None], np.ones((16, 1), bool), 0.1, neg),
                               rtol=1e-5)


def test_pick_random_iframe_only_valid():
  _, k, mask = _random_case(6, b=5, m=4)
  ids = np.arange(5 * 4, dtype=np.float32).reshape(5, 4, 1)
  for s in range(5):
    picked = np.asarray(losses.pick_random_iframe(jnp.asarray(ids), jnp.asarray(mask),
                                                  jax.random.split(jax.random.key(s), 5)))
    for b in range(5):
      assert mask[b, int(picked[b, 0]) - 4 * b]


def test_l2_embedding_loss_is_two_minus_two_cos():
  v, k, _ = _random_case(7, m=1)
  cos = np.sum(_np_normalize(v) * _np_normalize(k[:, 0]), axis=-1)
  got = losses.l2_embedding_loss(jnp.asarray(v), jnp.asarray(k[:, 0]))
  np.testing.assert_allclose(float(got), np.mean(2 - 2 * cos), rtol=1e-5)


def test_gan_losses_from_logits():
  r, f = np.array([2.0, -1.0, 0.5]), np.array([-0.3, 1.5, 0.0])
  sig = lambda x: 1 / (1 + np.exp(-x))
  d, g = losses.gan_losses('bce', jnp.asarray(r), jnp.asarray(f))
  np.testing.assert_allclose(float(d), np.mean(-np.log(sig(r))) + np.mean(-np.log(1 - sig(f))), rtol=1e-6)
  np.testing.assert_allclose(float(g), np.mean(-np.log(sig(f))), rtol=1e-6)
  d, g = losses.gan_losses('wgan', jnp.asarray(r), jnp.asarray(f))
  np.testing.assert_allclose([float(d), float(g)], [f.mean() - r.mean(), -f.mean()], rtol=1e-6)


@pytest.mark.parametrize('c', [0.3, 1.0, 2.5])
def test_gradient_penalty_linear_disc(c):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(3, 4))
  w = jnp.asarray(c * w / np.linalg.norm(w), jnp.float32)
  disc = lambda x: jnp.sum(x * w, axis=(1, 2)) + 0.7
  real, fake = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
  for s in range(3):  # any interpolation gives the same gradient
    gp = jax.jit(losses.gradient_penalty, static_argnums=0)(disc, jnp.asarray(real), jnp.asarray(fake),
                                                            jax.random.key(s))
    np.testing.assert_allclose(float(gp), (c - 1) ** 2, rtol=1e-5, atol=1e-7)


def test_gradient_penalty_nonlinear_disc_finite_differences():
  rng = np.random.default_rng(1)
  w1, w2 = rng.normal(size=(6, 5)), rng.normal(size=(5,))
  disc_np = lambda x: np.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2
  w1_32, w2_32 = jnp.asarray(w1, jnp.float32), jnp.asarray(w2, jnp.float32)
  disc = lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1_32) @ w2_32
  real, fake = rng.normal(size=(2, 4, 2, 3))
  key = jax.random.key(3)
  eps = np.asarray(jax.random.uniform(key, (4, 1, 1), dtype=jnp.float32), np.float64)  # same draw as inside
  x_hat = eps * real + (1 - eps) * fake
  h, norms = 1e-5, []
  for b in range(4):
    g = np.zeros(x_hat.shape[1:])
    for idx in np.ndindex(g.shape):
      up, dn = x_hat[b:b + 1].copy(), x_hat[b:b + 1].copy()
      up[(0,) + idx] += h
      dn[(0,) + idx] -= h
      g[idx] = (disc_np(up)[0] - disc_np(dn)[0]) / (2 * h)
    norms.append(np.linalg.norm(g))
  want = np.mean((np.array(norms) - 1) ** 2)
  got = jax.jit(losses.gradient_penalty, static_argnums=0)(disc, jnp.asarray(real, jnp.float32),
                                                           jnp.asarray(fake, jnp.float32), key)
  np.testing.assert_allclose(float(got), want, rtol=1e-4)


# ------------------------------------------------------------------------------------------- OSGAN

def _toy_gan():
  rng = np.random.default_rng(2)
  arr = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  g_params = {'w': arr(3, 5), 'b': arr(5)}
  d_params = {'w': arr(5, 4), 'v': arr(4)}
  z = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  real = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  gen = lambda p: jnp.tanh(z @ p['w'] + p['b'])
  disc = lambda p, x: jnp.tanh(x @ p['w']) @ p['v'] * 2.0  # per-sample logits (B,)
  return g_params, d_params, real, gen, disc


@pytest.mark.parametrize('kind', ['wgan', 'bce'])
def test_osgan_one_pass_equals_two_passes(kind):
  g_params, d_params, real, gen, disc = _toy_gan()
  d_loss_fn = losses.bce_d_loss if kind == 'bce' else losses.wgan_d_loss
  g_loss_fn = losses.bce_g_loss if kind == 'bce' else losses.wgan_g_loss
  # Reference: two separate passes, D on a detached fake, G through D's fake logits.
  d_ref = jax.grad(lambda dp: d_loss_fn(disc(dp, real), disc(dp, jax.lax.stop_gradient(gen(g_params)))))(d_params)
  g_ref = jax.grad(lambda gp: g_loss_fn(disc(d_params, gen(gp))))(g_params)
  if kind == 'wgan':
    scale = losses.OSGAN_WGAN_SCALE
  else:
    scale = losses.osgan_bce_scale(disc(d_params, gen(g_params)))
    assert scale.shape == (6,) and np.all(np.asarray(scale) < 0)

  def one_stage(gp, dp):  # a single backward pass through D's loss
    return d_loss_fn(disc(dp, real), disc(dp, losses.osgan_scale(gen(gp), scale)))

  g_one, d_one = jax.jit(jax.grad(one_stage, argnums=(0, 1)))(g_params, d_params)
  for a, b in ((g_one, g_ref), (d_one, d_ref)):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)

  # The single-forward vjp form from the module docstring gives the same G gradient.
  fake, g_vjp = jax.vjp(gen, g_params)
  _, d_vjp, f_fake = jax.vjp(lambda dp, x: (d_loss_fn(disc(dp, real), disc(dp, x)), disc(dp, x)),
                             d_params, fake, has_aux=True)
  d_grads, fake_cot = d_vjp(jnp.float32(1.0))
  s = losses.osgan_bce_scale(f_fake) if kind == 'bce' else scale
  (g_grads,) = g_vjp(losses.per_sample_scale(s, fake_cot))
  for x, y in zip(jax.tree.leaves((g_grads, d_grads)), jax.tree.leaves((g_ref, d_ref))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


def test_pose_l2_masks_invalid_joints():
  rng = np.random.default_rng(8)
  b, t, n = 2, 5, 3
  pred, target = rng.normal(size=(2, b, t, 2 * n)).astype(np.float32)
  valid = rng.random((b, t, n)) < 0.5
  want = 0.0
  for i in range(b):
    for s in range(t):
      for j in range(n):
        if valid[i, s, j]:
          dx = pred[i, s, 2 * j] - target[i, s, 2 * j]
          dy = pred[i, s, 2 * j + 1] - target[i, s, 2 * j + 1]
          want += dx ** 2 + dy ** 2
  want /= b * t
  got = losses.pose_l2_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(valid))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_pixel_l2():
  rng = np.random.default_rng(9)
  a, b = rng.normal(size=(2, 2, 3, 4, 4, 3)).astype(np.float32)
  np.testing.assert_allclose(float(losses.pixel_l2_loss(jnp.asarray(a), jnp.asarray(b))),
                             np.sum((a - b) ** 2) / (2 * 3 * 4 * 4), rtol=1e-5)


def test_bad_kind_names_config_key():
  with pytest.raises(ValueError, match='config.loss.gan'):
    losses.gan_losses('hinge', jnp.zeros(2), jnp.zeros(2))
