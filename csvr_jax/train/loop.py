"""The one training loop: pretraining and finetuning both step, log, checkpoint and stop through `run`.

Per step: `step_fn(state, host_batch, step) -> (state, metrics)` (the mode's jitted step, already bound to its
mesh); metrics stay on the device except at log steps (every `logging.log_every_steps`, the first step and
every save), where they are pulled to the host, checked (a NaN/Inf loss stops the run before anything
non-finite is saved: metrics.NonFiniteLossError) and written. `hooks(step, state)` run after every step
(image logging, evaluators); the scalars they return join the step's record. Checkpoints (train state as host arrays, the data iterator's state, the config)
every `checkpoint.every_steps` and at the end. SIGTERM (SLURM / TPU preemption) saves and raises Preempted:
polled every step with one process, at log steps with several (the poll is a collective, so every process
polls at the same steps).
"""
import jax

from csvr_jax import checkpoint
from csvr_jax import metrics as metrics_lib


class Preempted(Exception):
  """SIGTERM arrived: the state was saved; rerunning the same command resumes."""


def _polls_preemption(step, config):
  return jax.process_count() == 1 or step % config.logging.log_every_steps == 0


def run(state, data_iter, step_fn, *, total_steps, config, ckpt, writer, name, hooks=(), extra_scalars=None):
  """Steps `state` from its step to `total_steps` -> the final state; raises Preempted after a SIGTERM save.

  Args:
    state: a flax struct with an int `step` (restored by the caller when resuming).
    data_iter: host batches, with get_state / set_state (saved with the state).
    step_fn: (state, host batch, step as a host int) -> (state, device metrics).
    config: the run's config (logging.*, checkpoint.every_steps; saved with the checkpoint).
    ckpt: a checkpoint.TrainCheckpointer; writer: a metrics.MetricWriter. Both are closed on the way out.
    name: 'pretrain' | 'finetune', for messages.
    hooks: callables (step, state) -> None or a dict of host scalars, run after each step; their scalars join
      the step's record.
    extra_scalars: step -> dict of host scalars logged with the metrics (e.g. the learning rate).
  """
  step = int(state.step)
  preempt = checkpoint.PreemptionFlag()
  note = lambda: (f'last good checkpoint: step {ckpt.latest_step()} in {ckpt.directory}'
                  if ckpt.latest_step() is not None else 'no checkpoint was written')

  def checked(step, device_metrics):
    host = jax.device_get(device_metrics)
    metrics_lib.check_finite(step, host, note())  # before any save: nothing non-finite is kept
    return host

  try:
    while step < total_steps:
      state, step_metrics = step_fn(state, next(data_iter), step)
      step += 1
      is_save = step % config.checkpoint.every_steps == 0 or step == total_steps
      scalars = {}
      if step % config.logging.log_every_steps == 0 or is_save or step == 1:
        scalars = {**checked(step, step_metrics), **(extra_scalars(step) if extra_scalars else {})}
      for hook in hooks:
        scalars.update(hook(step, state) or {})
      if scalars:  # one record per step: what the hooks measured (evaluators) joins the step's metrics
        writer.write_scalars(step, scalars)
      if is_save:
        ckpt.save(step, checkpoint.host_copy(state), data_iter, config)
      elif _polls_preemption(step, config) and preempt.any_process():
        checked(step, step_metrics)
        ckpt.save(step, checkpoint.host_copy(state), data_iter, config)
        ckpt.wait()
        raise Preempted(f'{name}: SIGTERM - saved step {step} in {ckpt.directory}; rerun the same command to resume')
  finally:
    ckpt.close()
    writer.close()
    preempt.restore()
  return state
