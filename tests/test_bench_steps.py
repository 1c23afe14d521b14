"""The step benchmarks time the library's own steps: the CLI end to end on tiny shapes, the benchmark's finetune step
against `--mode=finetune`'s first step, the pretraining benchmark's programs against StepFns.train_step, the torch
reference's augmentation against csvr_jax/data/augment.py, and the report's ratios."""
import gzip
import importlib.util
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from csvr_jax import checkpoint
from csvr_jax import parallel
from csvr_jax.benchmarks import bench_report
from csvr_jax.benchmarks import common
from csvr_jax.benchmarks import finetune_bench
from csvr_jax.benchmarks import pretrain_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = '--xla_gpu_force_conv_nhwc=true --xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=2'
HAS_TORCH = importlib.util.find_spec('torch') is not None and importlib.util.find_spec('torchvision') is not None
TINY = common.Sizes(arch='r3d_18', batch=8, frames=4, crop=32, width=0.0625, dtype='float32', fast_compile=True)


def test_finetune_step_cli_writes_json(tmp_path):
  out = tmp_path / 'steps.json'
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', PYTHONPATH=ROOT)
  cmd = [sys.executable, '-m', 'csvr_jax.bench', '--what=finetune_step', '--arch=r3d_18', '--batch=2', '--frames=4',
         '--crop=32', '--width=0.0625', '--fast_compile', '--steps=2', '--warmup=1', '--repeats=2',
         '--num_classes=5', '--augment=none,device', '--profile', f'--hlo_dir={tmp_path}', f'--json_out={out}',
         '--label=cpu_test']
  p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert p.returncode == 0, p.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report['backend'] == 'cpu' and report['config']['batch'] == 2 and report['xla_flags'] == DEFAULTS
  rows = report['results']
  assert [(r['what'], r['impl'], r['arch'], r['features'], r['augment']) for r in rows] == [
      ('finetune_step', 'jax', 'r3d_18', 'vnet', 'none'), ('finetune_step', 'jax', 'r3d_18', 'vnet', 'device')]
  for r in rows:
    assert 'error' not in r, r['error']
    assert r['label'] == 'cpu_test' and r['conv_impl'] == 'fold_s2d'  # the UCF101 recipe's convolutions
    assert r['ms_per_step'] > 0 and len(r['ms_per_step_windows']) == 2
    assert r['clips_per_s'] == pytest.approx(2 / (r['ms_per_step'] / 1e3))
    assert r['params'] > 0 and r['flops_per_step'] > 0 and 'mfu' not in r  # no bf16 rate known for a CPU
    assert np.isfinite(r['loss']) and r['loss'] > 0
    assert r['xla_memory']['alias_size_in_bytes'] > 0  # the donated state is aliased to the new state
    assert r['profile'].get('top'), r['profile']
  # The same useful FLOPs (the augmentation is overhead), and the augmenting program does more work.
  assert rows[0]['flops_per_step'] == rows[1]['flops_per_step']
  assert rows[1]['xla_flops'] > rows[0]['xla_flops']
  with gzip.open(tmp_path / 'finetune_r3d_18_vnet_device_cpu_test_fold_s2d.hlo.txt.gz', 'rt') as f:
    assert 'ENTRY' in f.read()
  assert 'jax_cpu_test_fold_s2d_augment' in p.stdout  # the printed table


def test_benchmark_finetune_step_is_the_mode_finetune_step(tmp_path):
  """One step of `--mode=finetune` (finetune.train on a toy dataset) and the benchmark's step on the same first
  batch, both from the benchmark's config: the same state, bit for bit (same init, hyperparameters, device
  augmentation, dropout, shard_map over the 8 devices)."""
  from pretrain_fixtures import write_toy_dataset  # tests/ is on sys.path
  from csvr_jax.data import pipeline
  from csvr_jax.models import downstream
  from csvr_jax.train import finetune
  c = finetune_bench.finetune_config(TINY, num_classes=2, features='vnet')
  assert (c.finetune.lr_per_sample, c.finetune.weight_decay, c.finetune.momentum, c.model.dropout) == (
      1e-4, 0.003, 0.9, 0.3)  # the paper's recipe, configs/ucf101_finetune.py
  c.data.dataset_dir = write_toy_dataset(tmp_path / 'toy')
  c.data.num_workers, c.data.short_side, c.data.stride = 0, 40, 1
  c.finetune.total_steps = 1
  c.logging.progress_bar = False
  trained, *_ = finetune.train(c, str(tmp_path / 'work'))

  mesh = parallel.make_mesh(c)
  state, step, _ = finetune_bench.build(c, mesh, device_augment=True)
  first = next(iter(pipeline.finetune_loader(c.data, c.data.dataset_dir, c.data.train_split, 8,
                                             seed=c.data.shuffle_seed)))
  keys = downstream.input_keys('vnet') + ('label',)
  state, _ = step(state, parallel.host_to_global({k: first[k] for k in keys}, mesh))
  ours, theirs = checkpoint.host_copy(state), checkpoint.host_copy(trained)
  assert int(ours.step) == int(theirs.step) == 1
  chex.assert_trees_all_equal(ours.params, theirs.params)
  chex.assert_trees_all_equal(ours.batch_stats, theirs.batch_stats)
  chex.assert_trees_all_equal(ours.opt_state, theirs.opt_state)


def test_finetune_step_without_augmentation_only_normalises():
  """device_augment=False (the library hook the benchmark uses): the loss of the model on the normalised clip,
  computed here by hand; with the augmentation the same state and batch give another loss."""
  from csvr_jax.data import augment
  from csvr_jax.models import heads
  from csvr_jax.train import backbone_init
  c = finetune_bench.finetune_config(TINY, num_classes=3, features='vnet')
  c.model.dropout = 0.0  # the two steps then differ only in their input
  mesh = parallel.make_mesh(c, jax.devices()[:1])
  host = finetune_bench.synthetic_batch(c)
  assert host['clip'].shape == (8, 4, 32, 32, 3) and host['clip'].dtype == np.uint8 and set(host) == {'clip', 'label'}
  batch = parallel.host_to_global(host, mesh)
  state, plain_step, _ = finetune_bench.build(c, mesh, device_augment=False)
  model, _, _ = backbone_init.load_downstream(c, bn_axis_name=parallel.DATA)
  pooled = jax.jit(parallel.data_parallel(
      lambda p, bs, x: model.apply({'params': p, 'batch_stats': bs}, x, train=True, mutable=['batch_stats'])[0]['pooled'],
      mesh, (parallel.REPLICATED, parallel.REPLICATED, parallel.BATCH), parallel.BATCH))
  x = parallel.host_to_global(np.asarray(augment.normalize(host['clip'], c.data.mean, c.data.std)), mesh)
  logits = heads.Classifier(num_classes=3, dropout=0.0).apply(
      {'params': state.params['classifier']}, pooled(state.params['backbone'], state.batch_stats, x))
  want = -np.mean(np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), host['label'][:, None], 1))
  augmented_step = finetune_bench.build(c, mesh, device_augment=True)[1]
  augmented = float(augmented_step(jax.tree.map(lambda v: v.copy(), state), batch)[1]['finetune/loss'])
  plain = float(plain_step(state, batch)[1]['finetune/loss'])
  np.testing.assert_allclose(plain, want, rtol=1e-5)
  assert abs(augmented - want) > 1e-4


def test_pretrain_benchmark_times_the_library_steps():
  """bench_group's timed programs advance the state exactly as StepFns.train_step does (one-stage and
  alternating), and its rows carry the numbers."""
  from pretrain_fixtures import fast_init, tiny_config
  from csvr_jax.train import networks, schedule, state as state_lib, steps as steps_lib
  MODES = ['one_stage']
  c = tiny_config()
  mesh = parallel.make_mesh(c, jax.devices()[:1])  # the timed programs on one device, as a benchmark runs them
  nets = networks.Networks(c)
  (stage,) = schedule.resolve_stages(c, total_steps=4)
  optimizers = state_lib.make_optimizers(c, 4)
  make = lambda: state_lib.create_state(fast_init(nets), optimizers, jax.random.PRNGKey(0), parallel.replicated(mesh),
                                        parallel.compiler_options(c))[0]
  batch = parallel.host_to_global(pretrain_bench.synthetic_batch(c), mesh)
  fns = steps_lib.StepFns(nets, c, stage, optimizers, mesh)
  holder = {'state': make()}
  timing = common.Timing(steps=1, warmup=1, repeats=1)
  rows = list(pretrain_bench.bench_group(['joint'], MODES, holder, batch, lambda st: fns,
                                         timing))
  assert [(r['stage'], r['gan_update']) for r in rows] == [('joint', m) for m in MODES]
  for r in rows:
    assert 'error' not in r, r['error']
    assert r['ms_per_step'] > 0 and set(r['xla_memory']) == set(pretrain_bench.programs(r['gan_update']))
  reference = make()
  for i, mode in enumerate([m for m in MODES for _ in range(2)]):  # warm-up + one timed step per mode
    c.gan_update = mode
    reference, _ = fns.train_step(reference, batch, i)
  ours = checkpoint.host_copy(holder['state'])
  chex.assert_trees_all_close(ours.params, checkpoint.host_copy(reference).params, rtol=1e-6, atol=1e-6)
  assert int(ours.step) == 2 * len(MODES)


def test_pretrain_config_is_the_k400_recipe_with_the_benchmark_shapes():
  c = pretrain_bench.pretrain_config(common.Sizes('r2plus1d_18', 4, 8, 32, 0.25, 'float32'), gan_update='alternating')
  assert (c.model.vnet, c.train.batch_size, c.data.clip_len, c.data.future_len, c.gan_update, c.n_critic) == (
      'r2plus1d_18', 4, 8, 8, 'alternating', 1)
  assert (c.model.video_gan, c.model.conv_impl, c.optim.lr_per_sample) == ('tgan2', 'fold_s2d', 0.0005)
  assert [s.name for s in c.train.stages] == ['pose', 'context', 'video_warmup', 'joint']
  assert pretrain_bench.pretrain_config(common.Sizes('r3d_18', 4, 8, 32, 0.25, 'float32', conv_impl='fold'),
                                        gan_update='one_stage', video_gan='dense').model.conv_impl == 'fold'
  with pytest.raises(ValueError, match='--video_gan'):
    pretrain_bench.pretrain_config(TINY, gan_update='one_stage', video_gan='sparse')
  b = pretrain_bench.synthetic_batch(c)
  m = c.data.max_iframes
  assert b['clip'].shape == b['future_clip'].shape == (4, 8, 32, 32, 3) and b['clip'].dtype.name == 'uint8'
  assert b['iframes'].shape == (4, m, 32, 32, 3) and b['iframe_mask'].dtype == bool
  assert b['iframe_mask'][:, 0].all() and not b['iframe_mask'][:, -1].any()
  assert b['pose_in'].shape == (4, 8, 18, 2) and b['pose_gt_conf'].shape == (4, 8, 18)


def test_pretrain_bench_compiles_programs_in_parallel_threads_and_times_them_in_order():
  import jax.numpy as jnp
  step = lambda tag: jax.jit(lambda s, b: (s + b.sum(), {tag: s}))
  x, b = jnp.zeros(()), jnp.ones((4,))
  lowered = {('joint', 'd_step'): step('d').lower(x, b), ('joint', 'g_step'): step('g').lower(x, b)}
  compiled, seconds = pretrain_bench.compile_all(lowered)
  assert set(compiled) == set(seconds) == set(lowered) and all(s >= 0 for s in seconds.values())
  assert pretrain_bench.programs('alternating') == ['d_step', 'g_step']
  assert pretrain_bench.programs('one_stage') == ['one_stage_step']
  own = {p: compiled[('joint', p)] for p in pretrain_bench.programs('alternating')}
  holder = {'state': x}
  pretrain_bench.run_mode(own, ['d_step', 'g_step'], holder, b)
  assert float(holder['state']) == 8.0  # d then g, each adds sum(b) = 4


def test_time_windows_and_mfu():
  calls = []
  sec, windows = common.time_windows(lambda: calls.append(1) or np.zeros(()), common.Timing(3, 0, 2))
  assert len(calls) == 1 + 3 * 2 and len(windows) == 2 and sec == np.median(windows)  # >= 1 warm-up call
  r = common.add_throughput(dict(batch=4, ms_per_step=20.0), 1e9, 1e12)
  assert r['clips_per_s'] == 200.0 and r['flops_per_step'] == 12e9 and r['mfu'] == pytest.approx(12e9 / 0.02 / 1e12)
  assert common.peak_flops('NVIDIA H100 80GB HBM3') == 790e12 and common.peak_flops('cpu') is None
  assert common.peak_flops('cpu', 100.0) == 100e12


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


def test_ratios_pair_each_jax_variant_with_each_torch_mode_of_the_same_augmentation():
  jax_row = lambda augment, clips, **kw: dict(what='finetune_step', impl='jax', arch='r3d_18', label='nhwc',
                                              conv_impl='', augment=augment, clips_per_s=clips, **kw)
  results = [jax_row('none', 300.), jax_row('device', 150.), jax_row('device', 1., features='fi'),
             jax_row('none', 1., width=0.5),
             dict(what='finetune_step', impl='torch_eager', arch='r3d_18', augment='none', clips_per_s=200.),
             dict(what='finetune_step', impl='torch_compile', arch='r3d_18', clips_per_s=400.),  # an older report
             dict(what='finetune_step', impl='torch_compile', arch='r3d_18', augment='device', clips_per_s=100.),
             dict(what='finetune_step', impl='torch_compile', arch='r2plus1d_18', clips_per_s=1.)]
  assert bench_report.ratios(results) == {'r3d_18_nhwc': {'jax/torch_eager': 1.5, 'jax/torch_compile': 0.75},
                                          'r3d_18_nhwc_augment': {'jax/torch_compile': 1.5}}
  assert bench_report.variant(results[1]) == 'jax_nhwc_augment' and bench_report.variant(results[2]) == 'jax_nhwc_fi_augment'


def test_ratios_of_the_pretraining_step_per_video_gan():
  row = lambda mode, gan, clips: dict(what='pretrain_step', arch='r3d_18', stage='joint', gan_update=mode,
                                      video_gan=gan, clips_per_s=clips)
  results = [row('one_stage', 'dense', 100.), row('alternating', 'dense', 50.), row('one_stage', 'tgan2', 300.)]
  assert bench_report.ratios(results) == {'r3d_18_pretrain': {'one_stage/alternating': 2.0},
                                          'r3d_18_pretrain_one_stage': {'tgan2/dense': 3.0}}


def test_merge_reports_recomputes_ratios_across_runs(tmp_path):
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


def test_torch_reference_arguments_come_from_the_finetune_config():
  from csvr_jax.benchmarks import steps
  c = finetune_bench.finetune_config(TINY, num_classes=7, features='vnet')
  args = steps.torch_reference_args(c, ['device'], common.Timing(2, 1, 1), modes=['eager'], profile=False)
  assert {'--arch=r3d_18', '--augment=device', '--batch=8', '--frames=4', '--crop=32', '--num_classes=7',
          '--dropout=0.3', '--weight_decay=0.003', '--momentum=0.9', '--lr_per_sample=0.0001', '--jitter_prob=0.8',
          '--jitter_strength=0.4,0.4,0.4,0.1', '--blur_prob=0.5', '--blur_sigma=0.1,2.0'} <= set(args)
  c.finetune.schedule = 'constant'
  with pytest.raises(ValueError, match='finetune.schedule'):
    steps.torch_reference_args(c, ['device'], common.Timing(), modes=['eager'], profile=False)


@pytest.mark.skipif(not HAS_TORCH, reason='torch/torchvision not importable')
def test_torch_augmentation_is_csvr_jax_augmentation():
  """The torch reference's colour jitter + blur + normalisation against csvr_jax/data/augment.py, same parameters."""
  import types
  import jax.numpy as jnp
  import torch
  from csvr_jax.benchmarks import torch_reference
  from csvr_jax.data import augment
  d = finetune_bench.finetune_config(TINY, num_classes=2, features='vnet').data
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, (3, 2, 32, 32, 3), dtype=np.uint8)
  shape = (3, 1, 1, 1, 1)
  params = [rng.uniform(0.6, 1.4, shape), rng.uniform(0.6, 1.4, shape), rng.uniform(0.6, 1.4, shape),
            rng.uniform(-0.1, 0.1, shape), np.array([0.0, 0.7, 2.0]).reshape(shape)]
  params = [p.astype(np.float32) for p in params]
  radius = int(np.ceil(3 * d.blur_sigma[1]))
  x = augment.gaussian_blur(augment.color_jitter(jnp.asarray(clips, jnp.float32) / 255.0, *params[:4]), params[4],
                            radius)
  want = np.asarray(augment.normalize(255.0 * x, d.mean, d.std))
  a = types.SimpleNamespace(blur_sigma=d.blur_sigma, mean=d.mean, std=d.std)
  onehots = tuple(torch.as_tensor(torch_reference.reflect_onehot(32, radius)) for _ in range(2))
  got = torch_reference.augment_clips(torch.as_tensor(clips), [torch.as_tensor(p) for p in params], a, onehots)
  np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
  # The random draws: per clip, jitter with jitter_prob in centre +- strength, blur with blur_prob in blur_sigma.
  a = types.SimpleNamespace(jitter_prob=d.jitter_prob, jitter_strength=d.jitter_strength, blur_prob=d.blur_prob,
                            blur_sigma=d.blur_sigma)
  torch.manual_seed(0)
  brightness, _, _, hue, sigma = (p.numpy().ravel() for p in torch_reference.draw_params(20000, a, 'cpu'))
  jittered = brightness != 1.0
  assert abs(jittered.mean() - d.jitter_prob) < 0.02 and np.array_equal(jittered, hue != 0.0)
  assert 0.6 <= brightness.min() and brightness.max() <= 1.4 and np.abs(hue).max() <= 0.1
  blurred = sigma[sigma > 0]
  assert abs(len(blurred) / len(sigma) - d.blur_prob) < 0.02 and 0.1 <= blurred.min() and blurred.max() <= 2.0


@pytest.mark.skipif(not HAS_TORCH, reason='torch/torchvision not importable')
def test_torch_reference_eager_on_cpu(tmp_path):
  from csvr_jax.benchmarks import steps
  out = tmp_path / 'torch.json'
  c = finetune_bench.finetune_config(common.Sizes('r3d_18', 2, 4, 32, 1.0, 'float32'), num_classes=5, features='vnet')
  cmd = [sys.executable, '-m', 'csvr_jax.benchmarks.torch_reference', f'--json_out={out}'] + steps.torch_reference_args(
      c, ['none', 'device'], common.Timing(1, 1, 1), modes=['eager'], profile=False, device='cpu')
  p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                     timeout=300, check=False)
  assert p.returncode == 0, p.stderr[-3000:]
  rows = json.loads(out.read_text())
  assert [(r['impl'], r['augment']) for r in rows] == [('torch_eager', 'none'), ('torch_eager', 'device')]
  for r in rows:
    assert 'error' not in r, r.get('error')
    assert r['ms_per_step'] > 0 and r['loss'] > 0


def test_benchmark_modules_import_no_cycle():
  """The benchmark modules form a DAG (the runner imports the benchmarks, never the reverse)."""
  import ast
  import glob
  graph = {}
  for path in glob.glob(os.path.join(ROOT, 'csvr_jax', 'benchmarks', '*.py')):
    deps = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.ImportFrom) and node.module == 'csvr_jax.benchmarks':
        deps |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('csvr_jax.benchmarks.'):
        deps.add(node.module.rsplit('.', 1)[1])
    graph[os.path.basename(path)[:-3]] = deps
  assert graph['common'] == set() and 'steps' not in set().union(*graph.values())
  done, visiting = set(), []

  def visit(m):
    assert m not in visiting, f'import cycle: {visiting[visiting.index(m):] + [m]}'
    if m not in done:
      visiting.append(m)
      for d in graph.get(m, ()):
        visit(d)
      visiting.pop()
      done.add(m)
  for m in graph:
    visit(m)


def test_conv3d_benchmark_times_both_formulations_after_checking_they_agree():
  from csvr_jax.benchmarks import conv3d  # pylint: disable=g-import-not-at-top
  r = conv3d.measure((2, 4, 4, 2), (3, 3, 3, 2), (1, 1, 1), True, batch=1)
  assert set(r) == {'native', 'taps'} and all(ms > 0 for pair in r.values() for ms in pair)
