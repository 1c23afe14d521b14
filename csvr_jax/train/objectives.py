"""CSVR's pretraining objectives as pure functions of (params, batch_stats, batch, key).

L = sigma_p L_pose + sigma_c L_context + L_video (eq. 9), L_video = mean of the active targets' L_r, L_p (eq. 8).
The generator side (`generator_forward`) runs every network that produces something (V-/I-Network, heads,
pose generator, integration, video generators) and returns the fakes, the real targets and the G-only loss
terms (context, pose L2, pixel L2); the discriminator side scores fakes and reals (`discriminator_loss`,
`generator_adversarial_loss`). steps.py composes them into the alternating and the one-stage (OSGAN) update.

Inside shard_map every term is a GLOBAL-batch mean (pmean of the local mean, or psum'd contrastive losses),
identical on all devices: the gradient of such a term w.r.t. replicated params is exact as jax computes it
(no division, no pmean of gradients; see parallel.py). Randomness is drawn per sample from
fold_in(key, global sample index), so the same global batch gives the same numbers on any number of devices.

Choices where the paper is silent (also in docs/design.md):
  * the pose D has the WGAN-GP penalty (eq. 1); the video D's have none (eq. 6/7 have none);
  * stage weights: eq. 9's sigma_p, sigma_c are applied in every stage (a branch trained alone is scaled too);
  * networks that a stage runs but does not train run in inference mode (BatchNorm running statistics);
  * the pixel L2 compares the generator output in [-1, 1] with the augmented clip mapped to [-1, 1];
  * colour jitter / blur of the clip and its future clip share one draw (one video), I-frames draw their own;
  * tgan2 video GANs (model.video_gan): the adversarial losses are means over levels and samples (TGAN v2),
    the pixel L2 runs over the pixels of all levels together (`video_l2`; docs/design.md, Networks).
"""
import jax
import jax.numpy as jnp

from csvr_jax import losses
from csvr_jax import parallel
from csvr_jax.data import augment
from csvr_jax.models import tgan2
from csvr_jax.train import schedule


def pmean(x):
  return jax.lax.pmean(x, parallel.DATA)


# ----------------------------------------------------------------------------------------- inputs


def _per_sample(fn, keys, *xs):
  """Applies fn(*x_i[None], key_i) per sample and stacks: per-sample draws, identical on any device count."""
  return jax.vmap(lambda k, *x: fn(*[a[None] for a in x], k)[0])(keys, *xs)


def to_unit_range(x, data_config):
  """Mean/std-normalised frames -> [-1, 1] (the generators' tanh range)."""
  x01 = x * jnp.asarray(data_config.std, jnp.float32) + jnp.asarray(data_config.mean, jnp.float32)
  return x01 * 2.0 - 1.0


def prepare_inputs(batch, key, config):
  """uint8 clips + poses of the batch contract -> network inputs (on device, inside the step).

  Returns dict: clip (B,T,S,S,3) and future (B,T',S,S,3) normalised; clip_target, future_target in [-1, 1];
  iframes (B,M,S,S,3) normalised; iframe_mask (B,M); pose_in, pose_gt (B,T,2N) with x, y interleaved per
  joint; pose_in_conf, pose_gt_conf (B,T,N).
  """
  k_clip, k_iframe = jax.random.split(key)
  b, t = batch['clip'].shape[:2]
  video = jnp.concatenate([batch['clip'], batch['future_clip']], axis=1)
  aug = lambda x, k: augment.device_augment(x, k, config.data, shared_axes=1)
  video = _per_sample(aug, parallel.sample_keys(k_clip, b), video)
  aug_i = lambda x, k: augment.device_augment(x, k, config.data, shared_axes=0)
  iframes = _per_sample(aug_i, parallel.sample_keys(k_iframe, b), batch['iframes'])
  flat = lambda p: p.reshape(p.shape[:2] + (-1,)).astype(jnp.float32)
  return dict(clip=video[:, :t], future=video[:, t:], clip_target=to_unit_range(video[:, :t], config.data),
              future_target=to_unit_range(video[:, t:], config.data), iframes=iframes,
              iframe_mask=batch['iframe_mask'], pose_in=flat(batch['pose_in']),
              pose_in_conf=batch['pose_in_conf'].astype(jnp.float32), pose_gt=flat(batch['pose_gt']),
              pose_gt_conf=batch['pose_gt_conf'].astype(jnp.float32))


# -------------------------------------------------------------------------------- generator side


def context_metrics(video_emb, iframe_emb, iframe_mask):
  """Video -> I-frame matching top-1 within the global batch: is the closest valid I-frame the clip's own?"""
  b_local, m = iframe_mask.shape
  keys = jax.lax.all_gather(losses.l2_normalize(iframe_emb), parallel.DATA, tiled=True)      # (B, M, D)
  mask = jax.lax.all_gather(iframe_mask, parallel.DATA, tiled=True)                          # (B, M)
  sim = jnp.einsum('qd,bmd->qbm', losses.l2_normalize(video_emb), keys)
  sim = jnp.where(mask[None], sim, -jnp.inf).reshape(b_local, -1)
  owner = jnp.argmax(sim, axis=-1) // m
  own = jax.lax.axis_index(parallel.DATA) * b_local + jnp.arange(b_local)
  return pmean(jnp.mean((owner == own).astype(jnp.float32)))


def psnr(fake, target):
  """Mean per-sample PSNR in dB of videos in [-1, 1] (peak-to-peak 2)."""
  mse = jnp.mean(jnp.square(fake.astype(jnp.float32) - target), axis=tuple(range(1, fake.ndim)))
  return jnp.mean(10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10)))


def generator_forward(params, batch_stats, inputs, key, *, nets, config, stage, dense_video=False):
  """Runs the generator side of the stage's losses.

  Args:
    params, batch_stats: name -> tree for every network (trainable ones are differentiated by the caller).
    inputs: from prepare_inputs (local batch). key: this step's generator key.
    nets: a Networks (networks.py). stage: a Stage (steps.py) with .losses ({'pose':(), 'context':(),
      'video': ('rec', 'pred')}) and .trainable.
    dense_video: tgan2 video GANs render every frame at full resolution (image logging) instead of their
      training levels; no effect on the dense video GAN.
  Returns:
    (fakes, g_only) and aux = (reals, conds, metrics, new_batch_stats): fakes/reals/conds are dicts keyed by
    active_gans (a tgan2 video GAN's fake and real are tuples of its levels); g_only is the weighted G-only
    part of L (scalar, global mean).
  """
  ls = stage.losses
  b = inputs['clip'].shape[0]
  k_pose, k_rec, k_pred, k_ctx = jax.random.split(key, 4)
  new_bs, metrics, fakes, reals, conds = {}, {}, {}, {}, {}
  g_only = jnp.zeros((), jnp.float32)

  def run(name, *args, noise_keys=None, **kwargs):
    out, bs = nets.apply(name, params[name], batch_stats[name], *args, train=name in stage.trainable,
                         noise_keys=noise_keys, **kwargs)
    if name in stage.trainable:
      new_bs[name] = bs
    return out

  f_s = None
  if 'context' in ls or 'video' in ls:
    v_out = run('vnet', inputs['clip'])
    f_s = v_out['features']
  if 'context' in ls:
    m = inputs['iframes'].shape[1]
    # Empty I-frame slots are masked out of the I-Network's BatchNorm statistics (docs/design.md).
    i_out = run('inet', inputs['iframes'].reshape((-1,) + inputs['iframes'].shape[2:]),
                mask=inputs['iframe_mask'].reshape(-1))
    v_emb, i_emb = run('heads', v_out['pooled'], i_out['pooled'])
    i_emb = i_emb.reshape(b, m, -1)
    l_ctx = losses.context_loss(config.loss.context, v_emb, i_emb, inputs['iframe_mask'],
                                config.loss.temperature, parallel.sample_keys(k_ctx, b), axis_name=parallel.DATA,
                                num_negatives=config.loss.context_negatives)
    g_only += config.loss.sigma_c * l_ctx
    metrics.update({'context/loss': l_ctx, 'context/top1': context_metrics(v_emb, i_emb, inputs['iframe_mask'])})

  f_d = None
  if 'pose' in ls or 'video' in ls:
    valid_in = (inputs['pose_in_conf'] > 0).astype(jnp.float32)
    p_gen, f_d = run('pose_g', inputs['pose_in'], valid_in, noise_keys=parallel.sample_keys(k_pose, b))
    if 'pose' in ls:
      valid = inputs['pose_gt_conf'] > 0
      l2 = pmean(losses.pose_l2_loss(p_gen, inputs['pose_gt'], valid))
      g_only += config.loss.sigma_p * config.loss.pose_l2_weight * l2
      w = jnp.repeat(valid.astype(jnp.float32), 2, axis=-1)
      # D sees the fake with the real future's missing joints zeroed, as the real one has them.
      fakes['pose'], reals['pose'], conds['pose'] = p_gen * w, inputs['pose_gt'] * w, inputs['pose_in']
      sq = jax.lax.psum(jnp.sum(w * jnp.square(p_gen - inputs['pose_gt'])), parallel.DATA)
      mse = sq / jnp.maximum(jax.lax.psum(jnp.sum(w), parallel.DATA), 1.0)  # over the valid coordinates of the global batch
      metrics.update({'pose/l2': l2, 'pose/mse': mse})

  if 'video' in ls:
    f_i = run('integration', f_s, f_d)
    targets = {'rec': inputs['clip_target'], 'pred': inputs['future_target']}
    for target, k in (('rec', k_rec), ('pred', k_pred)):
      if target not in ls['video']:
        continue
      fake, real = render_video(run, 'video_g_' + target, f_i, targets[target], k,
                                None if dense_video else nets.video_levels)
      l2 = pmean(video_l2(fake, real))
      g_only += config.loss.video_l2_weight * l2 / len(ls['video'])
      fakes['video_' + target], reals['video_' + target] = fake, real
      finest = lambda v: v[-1] if isinstance(v, tuple) else v  # tgan2: the full-resolution frames it renders
      metrics.update({f'video_{target}/l2': l2, f'video_{target}/psnr': pmean(psnr(finest(fake), finest(real)))})
  return (fakes, g_only), (reals, conds, metrics, new_bs)


def render_video(run, name, f_i, target, key, levels):
  """One video generator on f_i -> (fake, real).

  levels None: the dense clip (B,T,S,S,3) and `target`. Otherwise (tgan2 training) the tuples of the L level
  renders and of the target brought to the same levels: one frame offset per sample and subsampling layer,
  from fold_in(key', global sample index) (device-count independent; key' a stream apart from the noise).
  """
  b = f_i.shape[0]
  noise_keys = parallel.sample_keys(key, b)
  if levels is None:
    return run(name, f_i, noise_keys=noise_keys), target
  offsets = tgan2.draw_offsets(parallel.sample_keys(jax.random.split(key)[0], b), levels)
  return run(name, f_i, noise_keys=noise_keys, offsets=offsets), tgan2.real_levels(target, offsets, levels)


def video_l2(fake, real):
  """Eq. 6/7's pixel L2. tgan2 levels count as one video (TGAN v2 concatenates its levels' outputs for the
  losses): squared errors summed over the pixels of every level / their total number, so a level weighs by
  its pixel count, the sparse full-resolution one most (docs/design.md, Networks)."""
  if isinstance(fake, tuple):
    pixels = [f[..., 0].size for f in fake]
    return sum(n * losses.pixel_l2_loss(f, r) for f, r, n in zip(fake, real, pixels)) / sum(pixels)
  return losses.pixel_l2_loss(fake, real)


# ---------------------------------------------------------------------------- discriminator side


def adversarial_weights(config, stage):
  """Weight of each GAN's generator loss inside L (eq. 9 and 8)."""
  n_video = max(len(stage.losses.get('video', ())), 1)
  return {'pose': config.loss.sigma_p * config.loss.pose_adversarial_weight, 'video_rec': 1.0 / n_video,
          'video_pred': 1.0 / n_video}


def disc_logits(nets, params, gan, x, cond):
  """-> (B,) logits, or (L, B) for a tgan2 video GAN (x a tuple of levels: one discriminator per level)."""
  name = schedule.GAN_PAIRS[gan][1]
  args = (x, cond) if gan == 'pose' else (x,)
  logits, _ = nets.apply(name, params[name], {}, *args, train=False)
  batch = jax.tree.leaves(x)[0].shape[0]
  return logits.reshape((len(x), batch) if isinstance(x, tuple) else (batch,)).astype(jnp.float32)


def _per_sample_gp(nets, params, gan, real, fake, cond, keys):
  """WGAN-GP with per-sample interpolation draws (device-count independent); D is per-sample."""
  def one(r, f, c, k):
    disc = lambda x: disc_logits(nets, params, gan, x, None if c is None else c[None])
    return losses.gradient_penalty(disc, r[None], f[None], k)
  if cond is None:
    return jnp.mean(jax.vmap(lambda r, f, k: one(r, f, None, k))(real, fake, keys))
  return jnp.mean(jax.vmap(one)(real, fake, cond, keys))


def discriminator_loss(d_params, fakes, reals, conds, key, *, nets, config, stage):
  """Sum of the active discriminators' losses (each a global mean) -> (loss, (fake_logits, metrics)).

  `fakes` enter as given: the caller stop_gradients them (alternating) or differentiates through them
  (one-stage). The gradient penalty always sees stop_gradient(fake).
  """
  total, fake_logits, metrics = jnp.zeros((), jnp.float32), {}, {}
  for i, gan in enumerate(schedule.active_gans(stage.losses)):
    cond = conds.get(gan)
    real_l = disc_logits(nets, d_params, gan, reals[gan], cond)
    fake_l = disc_logits(nets, d_params, gan, fakes[gan], cond)
    d_loss, _ = losses.gan_losses(config.loss.gan, real_l, fake_l)
    d_loss = pmean(d_loss)
    metrics[f'{gan}/d_loss'] = d_loss
    if gan == 'pose' and config.loss.gp_weight > 0:
      keys = parallel.sample_keys(jax.random.fold_in(key, i), real_l.shape[0])
      gp = pmean(_per_sample_gp(nets, d_params, gan, reals[gan], jax.lax.stop_gradient(fakes[gan]), cond,
                                keys))
      metrics[f'{gan}/gp'] = gp
      d_loss = d_loss + config.loss.gp_weight * gp
    total += d_loss
    fake_logits[gan] = fake_l
    metrics[f'{gan}/g_loss'] = pmean(_g_loss(config.loss.gan, jax.lax.stop_gradient(fake_l)))
    metrics[f'{gan}/d_real'] = pmean(jnp.mean(real_l))
    metrics[f'{gan}/d_fake'] = pmean(jnp.mean(fake_l))
  return total, (fake_logits, metrics)


def _g_loss(kind, fake_logits):
  return {'bce': losses.bce_g_loss, 'wgan': losses.wgan_g_loss}[kind](fake_logits)


def generator_adversarial_loss(d_params, fakes, conds, *, nets, config, stage):
  """Weighted sum of the generators' adversarial losses (D fixed) -> (loss, metrics)."""
  weights = adversarial_weights(config, stage)
  total, metrics = jnp.zeros((), jnp.float32), {}
  for gan in schedule.active_gans(stage.losses):
    fake_l = disc_logits(nets, d_params, gan, fakes[gan], conds.get(gan))
    g_loss = pmean(_g_loss(config.loss.gan, fake_l))
    metrics[f'{gan}/g_loss'] = g_loss
    total += weights[gan] * g_loss
  return total, metrics


def osgan_scales(fake_logits, config, stage):
  """Per-GAN factor turning D's gradient at the fake into the weighted G gradient (losses.py docstring):
  a scalar (WGAN), (B,) per sample, or (L, B) per level and sample for a tgan2 video GAN (the level losses
  are means over level and sample, so the per-logit ratio -exp(-f) is the same as with one D)."""
  weights = adversarial_weights(config, stage)
  if config.loss.gan == 'wgan':
    return {g: weights[g] * losses.OSGAN_WGAN_SCALE for g in fake_logits}
  bce = lambda l: jax.vmap(losses.osgan_bce_scale)(l) if l.ndim == 2 else losses.osgan_bce_scale(l)
  return {g: weights[g] * bce(l) for g, l in fake_logits.items()}


def scale_fake_cotangents(scales, fake_cot):
  """D's gradient at each GAN's fake (an array, or a tuple of levels) times its OSGAN scale."""
  def scale(s, c):
    if isinstance(c, tuple):
      s = jnp.asarray(s, jnp.float32)
      return tuple(losses.per_sample_scale(s if s.ndim == 0 else s[l], x) for l, x in enumerate(c))
    return losses.per_sample_scale(s, c)
  return {g: scale(scales[g], c) for g, c in fake_cot.items()}
