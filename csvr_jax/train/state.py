"""The pretraining state: one TrainState with a sub-tree per network, and the (static) optimizers.

Networks (schedule.ALL_NETWORKS): vnet, inet, heads, pose_g, pose_d, integration, video_g_rec,
video_d_rec, video_g_pred, video_d_pred. Each has its own optimizer state so that a stage can freeze any of
them by simply not updating it.

Optimisation (the paper: SGD momentum 0.9, lr 0.0005 x batch, weight decay 0.005), PyTorch semantics: the
weight decay is added to the gradient, the momentum buffer accumulates it, and the learning rate of the
current GLOBAL step multiplies the buffer (`lr(state.step)`, not a per-network count: a network that first
trains in the joint stage still follows the run's schedule). Discriminators use config.optim.disc_* (Adam with
b1=0, b2=0.9 by default, TGAN-v2 / WGAN-GP practice) at a constant learning rate.
"""
import flax
import jax
import jax.numpy as jnp
import optax

from csvr_jax import parallel
from csvr_jax.train import init_prng
from csvr_jax.train import schedule



@flax.struct.dataclass
class TrainState:
  step: jax.Array        # int32 (), counts training iterations (batches)
  params: dict           # network name -> params
  batch_stats: dict      # network name -> BatchNorm running statistics ({} for networks without BN)
  opt_state: dict        # network name -> optax state
  rng: jax.Array         # uint32 (2,) raw key; per step: fold_in(rng, step)


def lr_schedule(schedule, warmup, base, total_steps, key='config.optim.schedule'):
  """step -> lr: linear warmup over `warmup` steps from 0 to `base`, then 'constant' or 'cosine' decay."""
  if schedule == 'constant':
    decay = optax.constant_schedule(base)
  elif schedule == 'cosine':
    decay = optax.cosine_decay_schedule(base, max(total_steps - warmup, 1))
  else:
    raise ValueError(f"{key}: unknown {schedule!r}; choose constant | cosine")
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), decay], [warmup])


def learning_rate_fn(config, total_steps):
  """step -> lr of the encoders / generators: lr_per_sample * global batch, warmup, constant or cosine."""
  o = config.optim
  return lr_schedule(o.schedule, o.warmup_steps, o.lr_per_sample * config.train.batch_size, total_steps)


def _direction(config, is_disc):
  """Gradient -> update direction before the learning rate (sign included: updates = -lr * direction)."""
  clip = [optax.clip_by_global_norm(config.optim.grad_clip)] if config.optim.grad_clip > 0 else []
  name = config.optim.disc_name if is_disc else config.optim.name
  key = 'config.optim.disc_name' if is_disc else 'config.optim.name'
  if name == 'sgd':
    wd = 0.0 if is_disc else config.optim.weight_decay
    return optax.chain(*clip, optax.add_decayed_weights(wd), optax.trace(decay=config.optim.momentum))
  if name == 'adam' and is_disc:
    return optax.chain(*clip, optax.scale_by_adam(b1=config.optim.disc_b1, b2=config.optim.disc_b2))
  raise ValueError(f'{key}: unknown optimizer {name!r}; choose sgd' + (' | adam' if is_disc else ''))


def make_optimizers(config, total_steps):
  """network name -> (optax transform giving the direction, step -> learning rate)."""
  lr = learning_rate_fn(config, total_steps)
  disc_lr = optax.constant_schedule(config.optim.disc_lr)
  is_disc = lambda name: name in schedule.DISCRIMINATORS
  return {name: (_direction(config, is_disc(name)), disc_lr if is_disc(name) else lr)
          for name in schedule.ALL_NETWORKS}


def apply_gradients(state, grads, optimizers, names):
  """Updates the networks `names` (the others keep params and optimizer state) -> new params, opt_state."""
  params, opt_state = dict(state.params), dict(state.opt_state)
  for name in names:
    tx, lr = optimizers[name]
    direction, opt_state[name] = tx.update(grads[name], state.opt_state[name], state.params[name])
    rate = lr(state.step)
    params[name] = jax.tree.map(lambda p, d: p - (rate * d).astype(p.dtype), state.params[name], direction)
  return params, opt_state


def global_norm(tree):
  return optax.global_norm(tree) if jax.tree.leaves(tree) else jnp.zeros((), jnp.float32)


def _init_fn(init_variables, optimizers):
  """rng -> the initial TrainState (traceable)."""
  def init(rng):
    init_key, run_key = jax.random.split(rng)
    variables = init_variables(init_prng.init_key(init_key))  # a key of the hash PRNG: ~2x faster compile
    params = {k: v['params'] for k, v in variables.items()}
    batch_stats = {k: v.get('batch_stats', {}) for k, v in variables.items()}
    opt_state = {k: optimizers[k][0].init(params[k]) for k in params}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=opt_state, rng=run_key)
  return init


def _with_shardings(abstract, sharding):
  if sharding is None:
    return abstract
  shardings = parallel.replicated_like(abstract, sharding.mesh)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def abstract_state(init_variables, optimizers, rng, sharding=None):
  """The TrainState's ShapeDtypeStructs as create_state returns them, by abstract evaluation alone (no compile,
  no arrays): the restore target of a run that resumes from a checkpoint."""
  return _with_shardings(jax.eval_shape(_init_fn(init_variables, optimizers), rng), sharding)


def jit_init(init_variables, optimizers, rng, sharding=None, compiler_options=None):
  """The jitted rng -> TrainState, arrays created in place with `sharding`, and the state's ShapeDtypeStructs (with
  their shardings: the restore target of a run that resumes from a checkpoint), by one abstract evaluation.

  Args:
    init_variables: key -> {network name: {'params': ..., 'batch_stats'?: ...}} (traceable); it gets a typed
      key of init_prng.HASH32 (cheap to compile, module docstring there).
    optimizers: from make_optimizers.
    rng: uint32 (2,) raw key (its type only: the jitted function takes the key); split for init and for the run.
    sharding: where the state lives (replicated NamedSharding for data parallelism), or None.
  """
  init = _init_fn(init_variables, optimizers)
  abstract = jax.eval_shape(init, rng)  # (the jit reuses this trace: same function, same input types)
  if sharding is None:
    return jax.jit(init, compiler_options=compiler_options), abstract
  out_shardings = parallel.replicated_like(abstract, sharding.mesh)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, out_shardings)
  return jax.jit(init, out_shardings=out_shardings, compiler_options=compiler_options), abstract


def create_state(init_variables, optimizers, rng, sharding=None, compiler_options=None):
  """Builds the TrainState (jit_init's arguments) -> (state, abstract_state): the second with ShapeDtypeStructs,
  the restore target for checkpoints."""
  init, _ = jit_init(init_variables, optimizers, rng, sharding, compiler_options)
  return state_from(init, rng)


def state_from(jitted_init, rng):
  """(state, abstract_state) from jit_init's function."""
  state = jitted_init(rng)
  return state, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def count_params(params):
  """network name -> number of parameters."""
  return {k: sum(int(x.size) for x in jax.tree.leaves(v)) for k, v in params.items()}
