"""CSVR losses as small pure functions (eq. 1, 2, 6, 7 and Table IV; docs/design.md).

Context branch (eq. 2, Table IV): `mi_info_nce`, `info_nce`, `l2_embedding_loss`, chosen by `context_loss`.
GAN terms (eq. 1, 6, 7) from logits: non-saturating BCE and WGAN, `gradient_penalty` (WGAN-GP), and the
OSGAN gradient scaler `osgan_scale` with the closed-form per-sample scales. Reconstruction terms:
`pose_l2_loss` (masked by joint confidence) and `pixel_l2_loss`.

Every loss computes in float32 whatever the compute dtype of its inputs, and returns a scalar mean.
Embeddings are L2-normalised inside, so callers pass raw head outputs.

Usage, data parallel inside `jax.shard_map` over mesh axis 'data' (each device holds B_local clips):

  loss = mi_info_nce(v_emb, i_emb, i_mask, temperature=0.07, axis_name='data')

queries stay local, keys (I-frame embeddings and masks) are all-gathered, and the returned value is the
mean over the global batch (identical on every device), so `jax.grad` of it inside shard_map gives the
global-batch gradient.

OSGAN (one-stage GAN) in short: D's loss L_D(f_real, f_fake) is differentiated once w.r.t. the parameters
of both networks, with `osgan_scale(fake, s)` between G and D so that G receives s_i * dL_D/dx_i instead
of dL_D/dx_i. Choosing s_i = (dL_G/df_i) / (dL_D/df_i) gives G exactly dL_G (D is per-sample, so the
ratio at the logit carries over to the input x_i):
  * WGAN: L_D = mean(f_fake) - mean(f_real), L_G = -mean(f_fake): s = -1 (`OSGAN_WGAN_SCALE`).
  * non-saturating BCE: L_D fake term mean(softplus(f)), derivative sigmoid(f)/B; L_G = mean(softplus(-f)),
    derivative -sigmoid(-f)/B; ratio -sigmoid(-f)/sigmoid(f) = -exp(-f) (`osgan_bce_scale`).
The BCE scale depends on the fake logits, which exist only after D's forward pass. With `jax.vjp` the
whole update still costs one forward and one backward pass per network:
  fake, g_vjp = jax.vjp(gen_fn, g_params)
  d_loss, d_vjp, f_fake = jax.vjp(disc_loss_fn, d_params, fake, has_aux=True)
  d_grads, fake_cot = d_vjp(1.0)
  g_grads, = g_vjp(per_sample_scale(osgan_bce_scale(f_fake), fake_cot))
which is what `osgan_scale` computes when the scale is known ahead (WGAN: inside a single `jax.grad`).
"""
import jax
import jax.numpy as jnp

OSGAN_WGAN_SCALE = -1.0
_MASKED_LOGIT = -1e9  # finite stand-in for -inf: keeps gradients finite for masked-out keys


def l2_normalize(x, axis=-1, eps=1e-8):
  """x / ||x||_2 along `axis` (float32)."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def _gather_keys(keys, axis_name):
  """All-gathers (B_local, ...) keys into (B_global, ...); returns them with this device's row offset."""
  if axis_name is None:
    return keys, 0
  b_local = jax.tree.leaves(keys)[0].shape[0]
  gathered = jax.tree.map(lambda k: jax.lax.all_gather(k, axis_name, tiled=True), keys)
  return gathered, jax.lax.axis_index(axis_name) * b_local


def _global_mean(per_sample, weight, axis_name):
  """sum(per_sample * weight) / sum(weight) over the local, or with axis_name the global, batch."""
  total, count = jnp.sum(per_sample * weight), jnp.sum(weight)
  if axis_name is not None:
    total, count = jax.lax.psum(total, axis_name), jax.lax.psum(count, axis_name)
  return total / jnp.maximum(count, 1.0)


def negative_subset(candidates, num, keys):
  """`num` entries per row drawn uniformly without replacement among the True entries of candidates (B, N)
  bool (all of them when a row has fewer), one key per row (keys (B,): per-sample keys make the draw
  independent of the device count) -> (B, N) bool."""
  num = min(int(num), candidates.shape[1])
  scores = jax.vmap(lambda k: jax.random.uniform(k, candidates.shape[1:]))(keys)
  _, idx = jax.lax.top_k(jnp.where(candidates, scores, -1.0), num)
  chosen = jnp.zeros(candidates.shape, bool).at[jnp.arange(candidates.shape[0])[:, None], idx].set(True)
  return chosen & candidates


def mi_info_nce(video_emb, iframe_emb, iframe_mask, temperature, axis_name=None, num_negatives=0, keys=None):
  """Multi-instance InfoNCE (eq. 2): clip queries against I-frame keys of the (global) batch.

  Args:
    video_emb: (B, D) projections g^V of the clips (queries).
    iframe_emb: (B, M, D) projections g^I of up to M I-frames per clip (keys).
    iframe_mask: (B, M) bool, which I-frames are valid (padding is False).
    temperature: tau; similarities are cos / tau.
    axis_name: mesh axis when called inside shard_map; keys are all-gathered over it.
    num_negatives: 0 = every valid I-frame of every other clip is a negative (eq. 2); k > 0 = k of them drawn
      at random per clip (the text's "three negative frames from other video"), with `keys` (B,) per clip.
  Returns:
    scalar: mean over clips of -log(sum_pos exp(s) / sum_{pos+neg} exp(s)), positives = valid I-frames of
    the same clip, negatives = valid I-frames of every other clip in the global batch (or k of them). Clips
    without any valid I-frame are left out of the mean (and provide no keys).
  """
  q = l2_normalize(video_emb)
  (k, k_mask), offset = _gather_keys((l2_normalize(iframe_emb), iframe_mask.astype(bool)), axis_name)
  b, bg = q.shape[0], k.shape[0]
  logits = jnp.einsum('bd,kmd->bkm', q, k).reshape(b, -1) / temperature  # (B, B_global * M)
  own = jnp.repeat(jnp.arange(bg)[None, :] == (offset + jnp.arange(b))[:, None], k.shape[1], axis=1)
  valid = jnp.broadcast_to(k_mask.reshape(1, -1), logits.shape)
  positive = valid & own
  negative = valid & ~own
  if num_negatives:
    negative = negative_subset(negative, num_negatives, keys)
  lse_all = jax.nn.logsumexp(jnp.where(positive | negative, logits, _MASKED_LOGIT), axis=-1)
  lse_pos = jax.nn.logsumexp(jnp.where(positive, logits, _MASKED_LOGIT), axis=-1)
  has_pos = jnp.any(positive, axis=-1)
  per_clip = jnp.where(has_pos, lse_all - lse_pos, 0.0)
  return _global_mean(per_clip, has_pos.astype(jnp.float32), axis_name)


def info_nce(video_emb, iframe_emb, temperature, axis_name=None, num_negatives=0, keys=None):
  """InfoNCE (eq. 10): one I-frame per clip; the I-frames of the other clips are the negatives.

  Args: video_emb (B, D); iframe_emb (B, D); temperature; axis_name, num_negatives, keys as in `mi_info_nce`.
  Returns: scalar mean over the global batch of the cross-entropy of the clip's own I-frame.
  """
  q = l2_normalize(video_emb)
  k, offset = _gather_keys(l2_normalize(iframe_emb), axis_name)
  logits = q @ k.T / temperature  # (B, B_global)
  own = jnp.arange(k.shape[0])[None, :] == (offset + jnp.arange(q.shape[0]))[:, None]
  if num_negatives:
    logits = jnp.where(own | negative_subset(~own, num_negatives, keys), logits, _MASKED_LOGIT)
  per_clip = jax.nn.logsumexp(logits, axis=-1) - jnp.sum(jnp.where(own, logits, 0.0), axis=-1)
  return _global_mean(per_clip, jnp.ones_like(per_clip), axis_name)


def l2_embedding_loss(video_emb, iframe_emb, axis_name=None):
  """Table IV's L2 alternative: mean ||v/|v| - i/|i| ||^2 = 2 - 2 cos over clips. (B, D), (B, D) -> scalar."""
  d = l2_normalize(video_emb) - l2_normalize(iframe_emb)
  per_clip = jnp.sum(d * d, axis=-1)
  return _global_mean(per_clip, jnp.ones_like(per_clip), axis_name)


def pick_random_iframe(iframe_emb, iframe_mask, keys):
  """One uniformly random valid I-frame per clip (InfoNCE / L2 ablations), one key per clip (keys (B,)).
  (B,M,D), (B,M) -> (B, D). A clip without a valid I-frame gets index 0 (the loader always gives one)."""
  draws = jax.vmap(lambda k: jax.random.uniform(k, iframe_mask.shape[1:]))(keys)
  idx = jnp.argmax(jnp.where(iframe_mask, draws, -1.0), axis=-1)
  return jnp.take_along_axis(iframe_emb, idx[:, None, None], axis=1)[:, 0]


def context_loss(kind, video_emb, iframe_emb, iframe_mask, temperature, keys, axis_name=None, num_negatives=0):
  """config.loss.context dispatcher: 'mi_info_nce' | 'info_nce' | 'l2' (the latter two on a random I-frame).

  keys: (B,) one key per clip (the random I-frame of the ablations, the negative subset when num_negatives)."""
  pick_keys, negative_keys = (jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys) for i in range(2))
  if kind == 'mi_info_nce':
    return mi_info_nce(video_emb, iframe_emb, iframe_mask, temperature, axis_name, num_negatives, negative_keys)
  one = pick_random_iframe(iframe_emb, iframe_mask, pick_keys)
  if kind == 'info_nce':
    return info_nce(video_emb, one, temperature, axis_name, num_negatives, negative_keys)
  if kind == 'l2':
    return l2_embedding_loss(video_emb, one, axis_name)
  raise ValueError(f"config.loss.context: unknown {kind!r}; choose mi_info_nce | info_nce | l2")


# ------------------------------------------------------------------------------------------------ GAN


def bce_d_loss(real_logits, fake_logits):
  """Discriminator side of eq. 1/6/7: -log D(real) - log(1 - D(fake)), D = sigmoid(logit). -> scalar."""
  real_logits, fake_logits = real_logits.astype(jnp.float32), fake_logits.astype(jnp.float32)
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def bce_g_loss(fake_logits):
  """Non-saturating generator loss -log D(fake). -> scalar."""
  return jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def wgan_d_loss(real_logits, fake_logits):
  """Critic loss E[D(fake)] - E[D(real)]. -> scalar."""
  return jnp.mean(fake_logits.astype(jnp.float32)) - jnp.mean(real_logits.astype(jnp.float32))


def wgan_g_loss(fake_logits):
  """Generator loss -E[D(fake)]. -> scalar."""
  return -jnp.mean(fake_logits.astype(jnp.float32))


def gan_losses(kind, real_logits, fake_logits):
  """config.loss.gan dispatcher ('bce' | 'wgan') -> (d_loss, g_loss)."""
  if kind == 'bce':
    return bce_d_loss(real_logits, fake_logits), bce_g_loss(fake_logits)
  if kind == 'wgan':
    return wgan_d_loss(real_logits, fake_logits), wgan_g_loss(fake_logits)
  raise ValueError(f"config.loss.gan: unknown {kind!r}; choose bce | wgan")


def gradient_penalty(disc_fn, real, fake, key):
  """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2], x_hat = eps * real + (1 - eps) * fake, eps ~ U(0, 1).

  Args:
    disc_fn: x (B, ...) -> logits (B,) or (B, 1); must be per-sample (no batch statistics), which holds for
      the pose and video discriminators (they have no BatchNorm). Close over conditioning inputs.
    real, fake: (B, ...) same shape; `fake` should be stop_gradient'ed by the caller when G must not see it.
    key: PRNG key for eps (one per sample).
  Returns:
    scalar; the norm is per sample over all non-batch axes.
  """
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), dtype=jnp.float32)
  x_hat = eps * real.astype(jnp.float32) + (1.0 - eps) * fake.astype(jnp.float32)
  # Per-sample D: the gradient of the summed logits w.r.t. x_hat is the stack of per-sample gradients.
  grads = jax.grad(lambda x: jnp.sum(disc_fn(x).astype(jnp.float32)))(x_hat)
  sq = jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1)
  norms = jnp.sqrt(sq + 1e-12)  # eps keeps the gradient of the norm finite at zero
  return jnp.mean(jnp.square(norms - 1.0))


# ------------------------------------------------------------------------------------------- OSGAN


@jax.custom_vjp
def osgan_scale(x, scale):
  """Identity forward; backward multiplies the cotangent of x by `scale` (scalar or per-sample (B,)).

  No gradient flows into `scale`. See the module docstring for the closed-form scales.
  """
  del scale
  return x


def per_sample_scale(scale, g):
  """Broadcasts a scalar or (B,) scale against g (B, ...) and multiplies."""
  scale = jnp.asarray(scale, jnp.float32)
  if scale.ndim == 1:
    scale = scale.reshape((-1,) + (1,) * (g.ndim - 1))
  return (g * scale).astype(g.dtype)


def _osgan_fwd(x, scale):
  return x, scale


def _osgan_bwd(scale, g):
  return per_sample_scale(scale, g), jnp.zeros_like(scale)


osgan_scale.defvjp(_osgan_fwd, _osgan_bwd)


def osgan_bce_scale(fake_logits):
  """Per-sample OSGAN scale for non-saturating BCE: -exp(-f) (= dL_G/df / dL_D/df). (B,) or (B,1) -> (B,)."""
  f = jax.lax.stop_gradient(fake_logits.astype(jnp.float32)).reshape(fake_logits.shape[0])
  # exp(-f) overflows float32 for f < -88; D is then certain and the true ratio is astronomically large:
  # clip to keep the update finite (the factor only ever multiplies sigmoid(f) ~ 0 there).
  return -jnp.exp(jnp.minimum(-f, 60.0))


# --------------------------------------------------------------------------------- reconstruction


def pose_l2_loss(pred, target, joint_valid):
  """Eq. 1's (1/T') sum_t ||p_t - p'_t||^2 over valid joints, averaged over the batch.

  Args:
    pred, target: (B, T, 2N) poses, (x, y) interleaved per joint (joint j at channels 2j, 2j+1).
    joint_valid: (B, T, N) bool or float weight (e.g. confidence > 0); zero drops the joint.
  Returns: scalar.
  """
  w = jnp.repeat(joint_valid.astype(jnp.float32), 2, axis=-1)
  d = pred.astype(jnp.float32) - target.astype(jnp.float32)
  return jnp.mean(jnp.sum(w * d * d, axis=-1))


def pixel_l2_loss(pred, target):
  """Eq. 6/7's (1/THW) sum ||v_t(h,w) - g_t(h,w)||^2 (squared norm over channels), mean over the batch."""
  d = pred.astype(jnp.float32) - target.astype(jnp.float32)
  return jnp.mean(jnp.sum(d * d, axis=-1))
