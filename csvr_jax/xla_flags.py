"""XLA flags csvr_jax turns on by default; call `set_default_xla_flags()` before the JAX backend starts.

`--xla_gpu_force_conv_nhwc=true`: XLA's GPU layout assignment keeps every convolution with more than two
spatial dimensions in NCDHW on Hopper (xla/service/gpu/transforms/layout_assignment.cc, "3D convolutions
also have a much smaller surface of support"), while cuDNN's fast bf16 3D kernels are NDHWC-only: cuDNN then
transposes around every 3D convolution. Measured on one H200 (2026-11-26, bf16, batch 32, 16x112x112 finetune
step, `python -m csvr_jax.bench --what=finetune_step`): R3D-18 32.2 -> 24.3 ms/step (nchwToNhwc/nhwcToNchw
kernels, 8.3 ms/step, disappear); R(2+1)D-18 44.3 -> 40.5 ms/step and peak memory 11.1 -> 8.0 GB. The flag
only changes layouts (same maths); 2D convolutions are NHWC on Hopper already.

`--xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=2`: the first compile of the CSVR pretraining step
(443 convolutions, 62 small dots: heads, InfoNCE, the device-side blur and colour jitter) autotunes for minutes.
With XLA's defaults its joint-stage programs were still compiling after 440 s on one H200 (2026-11-26); with
these two flags they compiled in 62 s (48 s for the largest), the step then ran at 116.7 ms (16 clips, bf16,
r3d_18). cuBLAS serves the dots instead of Triton GEMMs, each of which XLA would autotune over dozens of compiled
kernel configs; level 2 still initialises the autotuning buffers but skips re-initialising them and
cross-checking every candidate algorithm against a reference (the default, 4). The finetune step is unchanged
by them (R3D-18: 24.30 vs 24.16-24.21 ms in the same session, within run-to-run noise).

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
