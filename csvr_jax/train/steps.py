"""The staged schedule and the jitted train steps (alternating D/G and one-stage OSGAN).

A step is `step(state, batch) -> (state, metrics)`, jitted with the state donated, running under
`jax.shard_map` with the batch split over 'data'. Each stage compiles its steps once (the stage - active
losses, trainable networks - is closed over; nothing in it varies between calls).

Alternating (`config.gan_update='alternating'`): every batch runs `d_step` (discriminators descend their loss,
fakes from the current generators, stop-gradient); every `config.n_critic`-th batch also runs `g_step`
(everything else descends L with the just-updated discriminators), the others only `advance` the step.
One-stage (`'one_stage'`, OSGAN): one generator forward, one discriminator forward and one backward each give
both gradients: D's backward yields its parameter gradient and the gradient at the fake, which the OSGAN
scale (-1 for WGAN, -exp(-logit) per sample for BCE, times the loss weight) turns into the generator's
adversarial gradient (losses.py docstring). `gradients(...)` exposes both ways for the equality test.
"""
import functools

import jax
import jax.numpy as jnp

from csvr_jax import parallel
from csvr_jax.train import objectives
from csvr_jax.train import schedule
from csvr_jax.train import state as state_lib

def step_keys(state):
  """Named per-step streams from the root key: fold_in(rng, step) split (big_vision style)."""
  k_aug, k_gen, k_disc = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
  return k_aug, k_gen, k_disc


def _merge(params, sub):
  return {**params, **sub}


def _sync_batch_stats(new_bs, config):
  """Without synced BN the per-device running statistics differ: average them (replicated state)."""
  if config.model.sync_bn:
    return new_bs
  return jax.tree.map(lambda x: objectives.pmean(x) if jnp.issubdtype(x.dtype, jnp.floating) else x, new_bs)


def _grad_norms(grads):
  return {f'grad_norm/{k}': state_lib.global_norm(v) for k, v in grads.items()}


class StepFns:
  """The per-stage computations, un-jitted (`gradients` for tests) and jitted (`d_step`, `g_step`, ...)."""

  def __init__(self, nets, config, stage, optimizers, mesh):
    self.config, self.stage, self.optimizers, self.mesh = config, stage, optimizers, mesh
    kw = dict(nets=nets, config=config, stage=stage)
    self.forward = functools.partial(objectives.generator_forward, **kw)
    self.d_loss = functools.partial(objectives.discriminator_loss, **kw)
    self.g_adv = functools.partial(objectives.generator_adversarial_loss, **kw)
    self.gans = schedule.active_gans(stage.losses)
    opts = parallel.compiler_options(config)
    wrap = lambda f: jax.jit(parallel.data_parallel(f, mesh, (parallel.REPLICATED, parallel.BATCH),
                                                    (parallel.REPLICATED, parallel.REPLICATED)),
                             donate_argnums=(0,), compiler_options=opts)
    self.d_step, self.g_step, self.one_stage_step = wrap(self._d_step), wrap(self._g_step), wrap(self._one_stage)
    self.advance = jax.jit(lambda s: s.replace(step=s.step + 1), donate_argnums=(0,), compiler_options=opts)
    self.grads_fn = {mode: jax.jit(parallel.data_parallel(functools.partial(self.gradients, mode=mode), mesh,
                                                          (parallel.REPLICATED, parallel.BATCH),
                                                          parallel.REPLICATED), compiler_options=opts)
                     for mode in ('one_stage', 'alternating')}

  # ------------------------------------------------------------------------------ gradients
  def _inputs(self, state, batch):
    k_aug, k_gen, k_disc = step_keys(state)
    return objectives.prepare_inputs(batch, k_aug, self.config), k_gen, k_disc

  def d_grads(self, state, batch, d_names):
    inputs, k_gen, k_disc = self._inputs(state, batch)
    (fakes, _), (reals, conds, _, _) = self.forward(state.params, state.batch_stats, inputs, k_gen)
    fakes = jax.lax.stop_gradient(fakes)
    loss_fn = lambda dp: self.d_loss(_merge(state.params, dp), fakes, reals, conds, k_disc)
    (_, (_, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)({k: state.params[k] for k in d_names})
    return grads, metrics

  def g_grads(self, state, batch, g_names):
    inputs, k_gen, _ = self._inputs(state, batch)

    def loss_fn(gp):
      params = _merge(state.params, gp)
      (fakes, g_only), (reals, conds, metrics, new_bs) = self.forward(params, state.batch_stats, inputs, k_gen)
      adv, adv_metrics = self.g_adv(params, fakes, conds)
      total = g_only + adv
      return total, ({**metrics, **adv_metrics, 'total/loss': total}, new_bs, (fakes, reals, inputs))
    (_, (metrics, new_bs, images)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        {k: state.params[k] for k in g_names})
    return grads, metrics, new_bs, images

  def one_stage_grads(self, state, batch, g_names, d_names):
    inputs, k_gen, k_disc = self._inputs(state, batch)
    gen = lambda gp: self.forward(_merge(state.params, gp), state.batch_stats, inputs, k_gen)
    (fakes, g_only), gen_vjp, (reals, conds, metrics, new_bs) = jax.vjp(
        gen, {k: state.params[k] for k in g_names}, has_aux=True)
    disc = lambda dp, f: self.d_loss(_merge(state.params, dp), f, reals, conds, k_disc)
    d_loss, d_vjp, (fake_logits, d_metrics) = jax.vjp(disc, {k: state.params[k] for k in d_names}, fakes,
                                                      has_aux=True)
    d_grads, fake_cot = d_vjp(jnp.ones_like(d_loss))
    scales = objectives.osgan_scales(fake_logits, self.config, self.stage)
    fake_cot = objectives.scale_fake_cotangents(scales, fake_cot)
    (g_grads,) = gen_vjp((fake_cot, jnp.ones_like(g_only)))
    weights = objectives.adversarial_weights(self.config, self.stage)
    total = g_only + sum(weights[g] * d_metrics[f'{g}/g_loss'] for g in self.gans)
    metrics = {**metrics, **d_metrics, 'total/loss': total}
    return g_grads, d_grads, metrics, new_bs, (fakes, reals, inputs)

  def gradients(self, state, batch, mode):
    """(g_grads, d_grads) of the stage's trainable networks, by 'alternating' (separate D and G passes, same
    params) or 'one_stage' (OSGAN); for the equality test."""
    if mode == 'one_stage':
      g, d, _, _, _ = self.one_stage_grads(state, batch, self.stage.g_names, self.stage.d_names)
      return g, d
    d = self.d_grads(state, batch, self.stage.d_names)[0] if self.gans else {}
    return self.g_grads(state, batch, self.stage.g_names)[0], d

  # ---------------------------------------------------------------------------------- steps
  def _update(self, state, grads, names, new_bs=None, advance=False):
    params, opt_state = state_lib.apply_gradients(state, grads, self.optimizers, names)
    batch_stats = state.batch_stats
    if new_bs:
      batch_stats = {**batch_stats, **_sync_batch_stats(new_bs, self.config)}
    return state.replace(params=params, opt_state=opt_state, batch_stats=batch_stats,
                         step=state.step + 1 if advance else state.step)

  def _d_step(self, state, batch):
    if not (self.gans and self.stage.d_names):
      return state, {}
    grads, metrics = self.d_grads(state, batch, self.stage.d_names)
    return self._update(state, grads, self.stage.d_names), {**metrics, **_grad_norms(grads)}

  def _g_step(self, state, batch):
    grads, metrics, new_bs, _ = self.g_grads(state, batch, self.stage.g_names)
    return (self._update(state, grads, self.stage.g_names, new_bs, advance=True),
            {**metrics, **_grad_norms(grads)})

  def _one_stage(self, state, batch):
    g, d, metrics, new_bs, _ = self.one_stage_grads(state, batch, self.stage.g_names, self.stage.d_names)
    state = self._update(state, d, self.stage.d_names)
    state = self._update(state, g, self.stage.g_names, new_bs, advance=True)
    return state, {**metrics, **_grad_norms({**g, **d})}

  def train_step(self, state, batch, step):
    """One batch under config.gan_update -> (state, metrics dict of device scalars); `step` = state.step as a
    host int (the loop counts too, so the host never waits for the device here)."""
    if self.config.gan_update == 'one_stage':
      return self.one_stage_step(state, batch)
    if self.config.gan_update != 'alternating':
      raise ValueError(f"config.gan_update: unknown {self.config.gan_update!r}; choose one_stage | alternating")
    state, metrics = self.d_step(state, batch)
    if (step + 1) % self.config.n_critic == 0:
      state, g_metrics = self.g_step(state, batch)
      metrics = {**metrics, **g_metrics}
    else:
      state = self.advance(state)
    return state, metrics

  def samples(self, state, batch):
    """Real vs generated frames and poses of the global batch's first sample, replicated on every device (so
    any process can read it), for image logging; jitted once per stage."""
    if not hasattr(self, '_samples'):
      def fn(state, batch):  # the generators' forward pass alone; tgan2 renders densely here
        inputs, k_gen, _ = self._inputs(state, batch)
        (fakes, _), (reals, _, _, _) = self.forward(state.params, state.batch_stats, inputs, k_gen,
                                                    dense_video=True)
        first = lambda t: {k: jax.lax.all_gather(v[:1], parallel.DATA, tiled=True, to='invarying')[:1]
                           for k, v in t.items()}
        return first(fakes), first(reals), first({k: inputs[k] for k in ('pose_gt_conf',)})
      self._samples = jax.jit(parallel.data_parallel(fn, self.mesh, (parallel.REPLICATED, parallel.BATCH),
                                                     parallel.REPLICATED),
                              compiler_options=parallel.compiler_options(self.config))
    return self._samples(state, batch)
