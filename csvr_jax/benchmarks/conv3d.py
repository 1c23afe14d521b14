"""3D convolutions: XLA's native 3D conv against the same conv as a sum of 2D convs over its temporal taps
(`backbone_layers.temporal_taps_conv`), forward and forward + gradients (`--what=conv3d`).

The shapes are the CPU study's (configs/study.py: 4-frame 32x32 clips, batch 8, R3D-18 at width 1/8, video
discriminators of 8 base channels): the V-Network's 3x3x3 convs at each stage and the video discriminator's
first and widest convs. Each line prints both times and the ratio native / taps measured in the same run (above
1: the taps are faster). float32, one process, the default XLA options (what the study's pretraining compiles).
Then the study's whole pretraining steps (configs/study.py's context and joint stages, through the pretrain_step
benchmark's programs on a synthetic batch) with model.conv_impl 'fold' (the recipe's) and 'fold_taps', and their
ratio.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from csvr_jax.benchmarks import common
from csvr_jax.benchmarks import pretrain_bench
from csvr_jax.models import backbone_layers

# (what, (T, H, W, Cin), (kt, kh, kw, Cout), strides, gradient w.r.t. the input too): the V-Network's stem reads
# the data (no input gradient); the discriminators' first conv needs one (the gradient penalty).
SHAPES = (
    ('vnet stem 3x7x7 s(1,2,2)', (4, 32, 32, 3), (3, 7, 7, 8), (1, 2, 2), False),
    ('vnet layer1 3x3x3', (4, 16, 16, 8), (3, 3, 3, 8), (1, 1, 1), True),
    ('vnet layer2 3x3x3 s2', (4, 16, 16, 8), (3, 3, 3, 16), (2, 2, 2), True),
    ('vnet layer3 3x3x3', (2, 8, 8, 32), (3, 3, 3, 32), (1, 1, 1), True),
    ('video D first 3x3x3', (4, 32, 32, 3), (3, 3, 3, 8), (1, 1, 1), True),
    ('video D block 3x3x3', (4, 16, 16, 8), (3, 3, 3, 16), (1, 1, 1), True),
    ('video D widest, 1 frame', (1, 2, 2, 64), (3, 3, 3, 128), (1, 1, 1), True),
)
BATCH, REPEATS, WARMUP = 8, 5, 2  # the study's pretraining batch
STEP_IMPLS, STEP_STAGES = ('fold', 'fold_taps'), ('context', 'joint')
STEP_TIMING = common.Timing(steps=10, warmup=2, repeats=3)


def native_conv(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(x, kernel, strides, padding,
                                      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))


def time_ms(fn, *args):
  """Median of REPEATS timed calls after compilation and WARMUP calls (ms)."""
  for _ in range(WARMUP + 1):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(REPEATS):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(1000 * (time.perf_counter() - start))
  return float(np.median(times))


def measure(shape, kernel, strides, input_grad, batch, seed=0):
  """{'native': (fwd ms, fwd+grad ms), 'taps': (...)} for one conv; checks the two agree first."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((batch,) + shape, dtype=np.float32))
  k = jnp.asarray(rng.standard_normal(kernel[:3] + (shape[-1], kernel[3]), dtype=np.float32))
  padding = [(s // 2, s // 2) for s in kernel[:3]]
  out = {}
  for name, conv in (('native', native_conv), ('taps', backbone_layers.temporal_taps_conv)):
    fwd = jax.jit(lambda x, k, conv=conv: conv(x, k, strides, padding))
    loss = lambda x, k, conv=conv: jnp.sum(jnp.square(conv(x, k, strides, padding)))
    grad = jax.jit(jax.grad(loss, (0, 1) if input_grad else 1))
    out[name] = (time_ms(fwd, x, k), time_ms(grad, x, k))
    out[name + '_y'] = np.asarray(fwd(x, k))
  np.testing.assert_allclose(out['taps_y'], out['native_y'], rtol=1e-4, atol=1e-3)
  return {n: out[n] for n in ('native', 'taps')}


def main():
  print(f'conv3d: {jax.devices()[0].device_kind}, batch {BATCH}, float32; ms (median of {REPEATS})')
  print('| conv | input (T,H,W,C) | native fwd | taps fwd | ratio | native fwd+grad | taps fwd+grad | ratio |')
  print('|---|---|---|---|---|---|---|---|')
  for what, shape, kernel, strides, input_grad in SHAPES:
    r = measure(shape, kernel, strides, input_grad, BATCH)
    (nf, ng), (tf, tg) = r['native'], r['taps']
    print(f'| {what} | {shape} | {nf:.1f} | {tf:.1f} | {nf / tf:.2f}x | {ng:.1f} | {tg:.1f} | {ng / tg:.2f}x |',
          flush=True)

  print('| study step (configs/study.py, batch 8) | ' + ' | '.join(f'{i} ms/step' for i in STEP_IMPLS) + ' | ratio |')
  print('|---|' + '---|' * (len(STEP_IMPLS) + 1))
  ms = {}
  for impl in STEP_IMPLS:
    c = common.recipe_config('study')
    c.model.conv_impl = impl
    for row in pretrain_bench.bench_variant(c, (c.gan_update,), STEP_TIMING, groups=tuple((s,) for s in STEP_STAGES)):
      ms[(impl, row['stage'])] = row.get('ms_per_step', float('nan'))
  for stage in STEP_STAGES:
    a, b = (ms[(i, stage)] for i in STEP_IMPLS)
    print(f'| {stage} | {a:.0f} | {b:.0f} | {a / b:.2f}x |', flush=True)
