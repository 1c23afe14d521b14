"""XLA flags csvr_jax turns on by default; call `set_default_xla_flags()` before the JAX backend starts.

`--xla_gpu_force_conv_nhwc=true`: XLA keeps 3D convolutions in NCDHW on Hopper while cuDNN's fast bf16 3D kernels
are NDHWC-only, so cuDNN would transpose around every 3D convolution; the flag changes layouts only (same maths).
`--xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=2`: cuBLAS for the pretraining step's small dots
and no cross-checking of autotuning candidates, or its first compile autotunes for many minutes.
Measurements: docs/performance.md ("XLA flags").

A value the user puts in XLA_FLAGS wins (e.g. `--xla_gpu_force_conv_nhwc=false` for XLA's own choice).
"""
import os

DEFAULT_FLAGS = ('--xla_gpu_force_conv_nhwc=true', '--xla_gpu_enable_triton_gemm=false', '--xla_gpu_autotune_level=2')


def set_default_xla_flags(environ=None):
  """Appends each DEFAULT_FLAGS entry whose flag name XLA_FLAGS does not mention yet; returns XLA_FLAGS."""
  environ = os.environ if environ is None else environ
  current = environ.get('XLA_FLAGS', '')
  given = {f.split('=', 1)[0] for f in current.split()}
  extra = [f for f in DEFAULT_FLAGS if f.split('=', 1)[0] not in given]
  if extra:
    environ['XLA_FLAGS'] = ' '.join([current] + extra).strip()
  return environ.get('XLA_FLAGS', '')
