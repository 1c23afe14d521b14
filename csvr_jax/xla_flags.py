"""XLA flags csvr_jax turns on by default; call `set_default_xla_flags()` before the JAX backend starts.

`--xla_gpu_force_conv_nhwc=true`: XLA's GPU layout assignment keeps every convolution with more than two
spatial dimensions in NCDHW on Hopper (xla/service/gpu/transforms/layout_assignment.cc, "3D convolutions
also have a much smaller surface of support"), while cuDNN's fast bf16 3D kernels are NDHWC-only: cuDNN then
transposes around every 3D convolution. Measured on one H200 (2026-11-26, bf16, batch 32, 16x112x112 finetune
step, `python -m csvr_jax.bench --what=finetune_step`): R3D-18 32.2 -> 24.3 ms/step (nchwToNhwc/nhwcToNchw
kernels, 8.3 ms/step, disappear); R(2+1)D-18 44.3 -> 40.5 ms/step and peak memory 11.1 -> 8.0 GB. The flag
only changes layouts (same maths); 2D convolutions are NHWC on Hopper already. A value the user puts in
XLA_FLAGS wins (e.g. `--xla_gpu_force_conv_nhwc=false` for XLA's own choice).
"""
import os

DEFAULT_FLAGS = ('--xla_gpu_force_conv_nhwc=true',)


def set_default_xla_flags(environ=None):
  """Appends each DEFAULT_FLAGS entry whose flag name XLA_FLAGS does not mention yet; returns XLA_FLAGS."""
  environ = os.environ if environ is None else environ
  current = environ.get('XLA_FLAGS', '')
  given = {f.split('=', 1)[0] for f in current.split()}
  extra = [f for f in DEFAULT_FLAGS if f.split('=', 1)[0] not in given]
  if extra:
    environ['XLA_FLAGS'] = ' '.join([current] + extra).strip()
  return environ.get('XLA_FLAGS', '')
