"""The step benchmark runs end to end on tiny shapes and writes valid JSON; the torch reference when present."""
import gzip
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULTS = '--xla_gpu_force_conv_nhwc=true --xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=2'


def test_finetune_step_cli_writes_json(tmp_path):
  out = tmp_path / 'steps.json'
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', PYTHONPATH=ROOT)
  # c3d: the backbone with the fewest layers compiles fastest; the path is the one every arch takes.
  cmd = [sys.executable, '-m', 'csvr_jax.bench', '--what=finetune_step', '--arch=c3d', '--batch=2',
         '--frames=16', '--crop=32', '--width=0.0625', '--steps=2', '--warmup=1', '--repeats=2',
         '--num_classes=5', '--profile', f'--hlo_dir={tmp_path}', f'--json_out={out}', '--label=cpu_test']
  p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert p.returncode == 0, p.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report['backend'] == 'cpu' and report['config']['batch'] == 2
  (r,) = report['results']
  assert (r['what'], r['impl'], r['arch'], r['label']) == ('finetune_step', 'jax', 'c3d', 'cpu_test')
  assert r['ms_per_step'] > 0 and len(r['ms_per_step_windows']) == 2
  assert r['clips_per_s'] == pytest.approx(2 / (r['ms_per_step'] / 1e3))
  assert r['params'] > 0 and r['flops_per_step'] > 0  # analytic or XLA's count, never missing
  assert r['loss'] == r['loss'] and r['loss'] > 0  # finite cross-entropy of random labels
  assert r['xla_memory']['alias_size_in_bytes'] > 0  # the donated state is aliased to the new state
  assert r['profile'].get('top'), r['profile']
  assert 'layout_changes' in r['hlo']
  with gzip.open(tmp_path / 'finetune_c3d_cpu_test.hlo.txt.gz', 'rt') as f:
    assert 'ENTRY' in f.read()
  assert 'finetune_step  c3d' in p.stdout  # the printed table
  assert report['xla_flags'] == DEFAULTS  # the project's defaults, set by bench.py


def test_hlo_summary_counts_cudnn_convs_and_layout_changes():
  from csvr_jax.benchmarks import xla_report
  hlo = '\n'.join([
      'ENTRY %main {',
      '  %transpose.1 = bf16[2,64,8,8,8]{4,3,2,1,0} transpose(bf16[2,8,8,8,64]{4,3,2,1,0} %p), dimensions={0,4,1,2,3}',
      '  %custom-call.2 = (bf16[2,64,8,8,8]{4,3,2,1,0}, u8[0]{0}) custom-call(%a, %b), window={size=3x3x3}, '
      'dim_labels=bf012_oi012->bf012, custom_call_target="__cudnn$convForward"',
      '  %copy_fusion = bf16[2,8,8,8,64]{4,3,2,1,0} fusion(%x), kind=kLoop, calls=%fused_copy',
      '  ROOT %t = tuple(%copy_fusion)',
      '}'])
  s = xla_report.hlo_summary(hlo)
  assert s['conv_custom_calls'] == {'__cudnn$convForward': 1}
  assert list(s['conv_layouts']) == ['__cudnn$convForward bf012_oi012->bf012 bf16[2,64,8,8,8]{4,3,2,1,0}']
  assert s['layout_changes'] == {'transpose': 1, 'copy': 1}
  groups = xla_report.kernel_groups([
      dict(name='sm90_xmma_fprop_implicit_gemm_bf16_nhwckrsc_nchw', ms_per_step=2.0),
      dict(name='sm90_xmma_dgrad_implicit_gemm_bf16_nhwc', ms_per_step=1.0),
      dict(name='loop_transpose_fusion', ms_per_step=0.5)])
  assert groups == {'conv_fprop nchw': 2.0, 'conv_dgrad nhwc': 1.0, 'transpose/copy': 0.5}


def test_ratios_pair_each_jax_variant_with_each_torch_mode():
  from csvr_jax.benchmarks import bench_report
  results = [dict(what='finetune_step', impl='jax', arch='r3d_18', label='nhwc', conv_impl='', clips_per_s=300.),
             dict(what='finetune_step', impl='torch_eager', arch='r3d_18', clips_per_s=200.),
             dict(what='finetune_step', impl='torch_compile', arch='r3d_18', clips_per_s=400.),
             dict(what='finetune_step', impl='torch_compile', arch='r2plus1d_18', clips_per_s=1.)]
  assert bench_report.ratios(results) == {'r3d_18_nhwc': {'jax/torch_eager': 1.5, 'jax/torch_compile': 0.75}}


def test_ratios_of_the_pretraining_step_per_video_gan():
  from csvr_jax.benchmarks import bench_report
  row = lambda mode, gan, clips: dict(what='pretrain_step', arch='r3d_18', stage='joint', gan_update=mode,
                                      video_gan=gan, clips_per_s=clips)
  results = [row('one_stage', 'dense', 100.), row('alternating', 'dense', 50.), row('one_stage', 'tgan2', 300.)]
  assert bench_report.ratios(results) == {'r3d_18_pretrain': {'one_stage/alternating': 2.0},
                                          'r3d_18_pretrain_one_stage': {'tgan2/dense': 3.0}}


@pytest.mark.skipif(importlib.util.find_spec('torch') is None or importlib.util.find_spec('torchvision') is None,
                    reason='torch/torchvision not importable')
def test_torch_reference_eager_on_cpu(tmp_path):
  out = tmp_path / 'torch.json'
  cmd = [sys.executable, '-m', 'csvr_jax.benchmarks.torch_reference', '--arch=r3d_18', '--modes=eager',
         '--batch=2', '--frames=4', '--crop=16', '--num_classes=5', '--steps=1', '--warmup=1', '--repeats=1',
         '--dtype=float32',
         '--device=cpu', f'--json_out={out}']
  p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                     timeout=300, check=False)
  assert p.returncode == 0, p.stderr[-3000:]
  (r,) = json.loads(out.read_text())
  assert 'error' not in r, r.get('error')
  assert r['impl'] == 'torch_eager' and r['ms_per_step'] > 0 and r['loss'] > 0


def test_merge_reports_recomputes_ratios_across_runs(tmp_path):
  from csvr_jax.benchmarks import bench_report
  run_a = dict(card='X', date='d', xla_flags='', results=[
      dict(what='finetune_step', impl='torch_compile', arch='r3d_18', clips_per_s=100.),
      dict(what='pretrain_step', impl='jax', arch='r3d_18', label='p', stage='joint', gan_update='one_stage',
           clips_per_s=30.)])
  run_b = dict(card='X', date='d', xla_flags='--xla_gpu_force_conv_nhwc=true', results=[
      dict(what='finetune_step', impl='jax', arch='r3d_18', label='nhwc', conv_impl='', clips_per_s=120.),
      dict(what='pretrain_step', impl='jax', arch='r3d_18', label='p', stage='joint', gan_update='alternating',
           clips_per_s=20.)])
  paths = []
  for i, rep in enumerate((run_a, run_b)):
    paths.append(tmp_path / f'{i}.json')
    paths[-1].write_text(json.dumps(rep))
  merged = bench_report.merge_reports([str(p) for p in paths] + [str(tmp_path / 'missing.json')])
  assert len(merged['results']) == 4 and len(merged['runs']) == 2
  assert merged['results'][2]['xla_flags'] == '--xla_gpu_force_conv_nhwc=true'
  assert merged['ratios'] == {'r3d_18_nhwc': {'jax/torch_compile': 1.2},
                              'r3d_18_p_pretrain': {'one_stage/alternating': 1.5}}
  text = '\n'.join(bench_report.summary_lines(merged))
  assert 'finetune_step r3d_18 jax nhwc --xla_gpu_force_conv_nhwc=true' in text


def test_default_xla_flags_append_but_never_override():
  from csvr_jax import xla_flags
  env = {}
  assert xla_flags.set_default_xla_flags(env) == DEFAULTS
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  xla_flags.set_default_xla_flags(env)
  assert env['XLA_FLAGS'] == '--xla_force_host_platform_device_count=8 ' + DEFAULTS
  env = {'XLA_FLAGS': '--xla_gpu_force_conv_nhwc=false --xla_gpu_autotune_level=4'}
  want = '--xla_gpu_force_conv_nhwc=false --xla_gpu_autotune_level=4 --xla_gpu_enable_triton_gemm=false'
  assert xla_flags.set_default_xla_flags(env) == want
  assert xla_flags.set_default_xla_flags(env) == want  # idempotent


def test_pretrain_bench_batch_follows_the_contract():
  from csvr_jax.benchmarks import pretrain_bench
  c = pretrain_bench.pretrain_config('r2plus1d_18', batch=4, frames=8, crop=32, width=0.25, dtype='float32',
                                     gan_update='alternating', remat=False)
  assert (c.model.vnet, c.train.batch_size, c.data.clip_len, c.data.future_len, c.gan_update) == (
      'r2plus1d_18', 4, 8, 8, 'alternating')
  assert [s.name for s in c.train.stages] == ['pose', 'context', 'video_warmup', 'joint']
  b = pretrain_bench.synthetic_batch(c)
  m = c.data.max_iframes
  assert b['clip'].shape == b['future_clip'].shape == (4, 8, 32, 32, 3) and b['clip'].dtype.name == 'uint8'
  assert b['iframes'].shape == (4, m, 32, 32, 3) and b['iframe_mask'].dtype == bool
  assert b['iframe_mask'][:, 0].all() and not b['iframe_mask'][:, -1].any()
  assert b['pose_in'].shape == (4, 8, 18, 2) and b['pose_gt_conf'].shape == (4, 8, 18)


def test_pretrain_bench_compiles_programs_in_parallel_threads_and_times_them_in_order():
  import jax
  import jax.numpy as jnp
  from csvr_jax.benchmarks import pretrain_bench
  step = lambda tag: jax.jit(lambda s, b: (s + b.sum(), {tag: s}))
  x, b = jnp.zeros(()), jnp.ones((4,))
  lowered = {('joint', 'd_step'): step('d').lower(x, b), ('joint', 'g_step'): step('g').lower(x, b)}
  compiled, seconds = pretrain_bench.compile_all(lowered)
  assert set(compiled) == set(seconds) == set(lowered) and all(s >= 0 for s in seconds.values())
  assert pretrain_bench.programs('alternating') == ['d_step', 'g_step']
  assert pretrain_bench.programs('one_stage') == ['one_stage_step']
  own = {p: compiled[('joint', p)] for p in pretrain_bench.programs('alternating')}
  out = own['d_step'](x, b)[0]
  assert float(own['g_step'](out, b)[0]) == 8.0  # d then g, each adds sum(b) = 4
