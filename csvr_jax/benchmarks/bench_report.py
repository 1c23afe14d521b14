"""Results of the step benchmarks: ratios, the printed table, and merging the JSON of several runs.

Variants that need their own process (XLA flags are read once per process) write one JSON each;
`python -m csvr_jax.benchmarks.bench_report OUT.json SUMMARY.txt IN.json...` merges them, recomputes the
ratios across runs (a JAX variant against the torch reference measured in another process of the same
machine) and writes a readable summary: the table, then what XLA made of each step (convolution layouts,
layout changes, per-kernel time).
"""
import json
import os
import sys


def _video_gan(r):
  """'' for the dense video GAN (the names of earlier reports), else model.video_gan (e.g. 'tgan2')."""
  return '' if r.get('video_gan', 'dense') == 'dense' else r['video_gan']


def _augment(r):
  """'device' | 'none' ('none' for the reports written before the finetune rows named it)."""
  return r.get('augment') or 'none'


def ratios(results):
  """{arch[_label][_conv_impl][_augment]: {'jax/torch_eager': x, ...}} from clips/s of each JAX finetune result
  (features vnet, width 1) over each torch result of the same arch and augmentation (the key ends in '_augment' for the
  step with device augmentation), {arch[_label][_tgan2]_pretrain: {'one_stage/alternating': x}} for the joint
  pretraining step, and {arch[_label]_pretrain_MODE: {'tgan2/dense': x}} when both video GANs were measured."""
  out = {}
  joint, by_gan = {}, {}
  for r in results:
    if r.get('what') == 'pretrain_step' and r.get('stage') == 'joint' and 'clips_per_s' in r:
      joint.setdefault('_'.join(x for x in (r['arch'], r.get('label'), _video_gan(r)) if x), {})[r['gan_update']] = r
      key = '_'.join(x for x in (r['arch'], r.get('label'), 'pretrain', r['gan_update']) if x)
      by_gan.setdefault(key, {})[r.get('video_gan', 'dense')] = r
  for key, modes in joint.items():
    if 'one_stage' in modes and 'alternating' in modes:
      out[f'{key}_pretrain'] = {
          'one_stage/alternating': modes['one_stage']['clips_per_s'] / modes['alternating']['clips_per_s']}
  for key, gans in by_gan.items():
    if 'dense' in gans and 'tgan2' in gans:
      out[key] = {'tgan2/dense': gans['tgan2']['clips_per_s'] / gans['dense']['clips_per_s']}
  for j in results:
    if (j.get('impl') != 'jax' or j.get('what') != 'finetune_step' or 'clips_per_s' not in j
        or j.get('features', 'vnet') != 'vnet' or j.get('width', 1.0) != 1.0):  # torchvision's models: width 1
      continue
    augment = 'augment' if _augment(j) == 'device' else ''
    key = '_'.join(x for x in (j['arch'], j.get('label'), j.get('conv_impl'), augment) if x)
    for t in results:
      if (t.get('arch') == j['arch'] and str(t.get('impl', '')).startswith('torch_') and 'clips_per_s' in t
          and _augment(t) == _augment(j)):
        out.setdefault(key, {})[f'jax/{t["impl"]}'] = j['clips_per_s'] / t['clips_per_s']
  return out


def variant(r):
  """A row's name in the table: impl, label, conv_impl, finetune features / augmentation, pretraining stage..."""
  features = r.get('features') if r.get('features', 'vnet') != 'vnet' else ''
  augment = 'augment' if r.get('what', 'finetune_step') == 'finetune_step' and _augment(r) == 'device' else ''
  return '_'.join(str(x) for x in (r.get('impl'), r.get('label'), r.get('conv_impl'), features, augment,
                                   r.get('stage'), r.get('gan_update'), _video_gan(r)) if x)


def print_table(results, rat):
  print(f'\n{"what":14s} {"arch":12s} {"impl":40s} {"ms/step":>8s} {"clips/s":>8s} {"MFU":>6s} '
        f'{"peak GB":>8s}')
  for r in results:
    impl = variant(r)
    if 'ms_per_step' not in r:
      print(f'{r.get("what", "finetune_step"):14s} {r.get("arch", ""):12s} {impl:40s} '
            f'{(r.get("error") or r.get("skipped", ""))[:60]}')
      continue
    mfu = f'{100 * r["mfu"]:.1f}%' if r.get('mfu') else '-'
    peak = f'{r["peak_bytes"] / 2**30:.1f}' if r.get('peak_bytes') else '-'
    print(f'{r.get("what", "finetune_step"):14s} {r["arch"]:12s} {impl:40s} {r["ms_per_step"]:8.2f} '
          f'{r["clips_per_s"]:8.1f} {mfu:>6s} {peak:>8s}')
  for k, v in rat.items():
    print(f'ratio {k}: ' + ', '.join(f'{a} {b:.2f}x' for a, b in v.items()))


def merge_reports(paths):
  """Reports of several runs -> one report (results concatenated, each tagged with its run's XLA flags)."""
  reports = []
  for p in paths:
    if os.path.exists(p):
      with open(p) as f:
        reports.append(json.load(f))
  results = []
  for rep in reports:
    for r in rep['results']:
      r.setdefault('xla_flags', rep.get('xla_flags', ''))
      results.append(r)
  first = reports[0] if reports else {}
  return dict(card=first.get('card'), date=first.get('date'), jax_version=first.get('jax_version'),
              runs=[{k: v for k, v in rep.items() if k not in ('results', 'ratios')} for rep in reports],
              results=results, ratios=ratios(results))


def summary_lines(report, top=12):
  """Per JAX result: HLO layout counts, kernel-time groups and top kernels; per torch eager: top kernels."""
  lines = [f'card {report.get("card")}  date {report.get("date")}  jax {report.get("jax_version")}']
  for r in report['results']:
    name = ' '.join(str(r.get(k)) for k in ('what', 'arch', 'impl', 'label', 'conv_impl', 'features', 'augment',
                                             'stage', 'gan_update', 'video_gan', 'xla_flags') if r.get(k))
    lines.append(f'\n== {name}')
    for k in ('ms_per_step', 'clips_per_s', 'mfu', 'peak_bytes', 'compile_s', 'warmup_s', 'loss', 'xla_flops',
              'flops_per_step', 'error', 'skipped'):
      if r.get(k) is not None:
        lines.append(f'  {k}: {r[k]}')
    hlo = r.get('hlo') or {}
    if hlo:
      lines.append(f'  conv custom calls: {hlo.get("conv_custom_calls")}  layout changes: '
                   f'{hlo.get("layout_changes")}')
      for k, v in list((hlo.get('conv_layouts') or {}).items())[:8]:
        lines.append(f'    {v:3d}x {k}')
    prof = r.get('profile') or {}
    if prof.get('groups'):
      lines.append('  kernel groups (ms/step): ' + ', '.join(f'{k} {v:.2f}' for k, v in prof['groups'].items()))
    if prof.get('error'):
      lines.append(f'  profile error: {prof["error"]}')
    for k in (prof.get('top') or r.get('top_kernels') or [])[:top]:
      lines.append(f'    {k["ms_per_step"]:8.3f} ms x{k["calls_per_step"]:.0f}  {k["name"][:150]}')
  return lines


def main(argv):
  if len(argv) < 4:
    print('usage: python -m csvr_jax.benchmarks.bench_report OUT.json SUMMARY.txt IN.json...', file=sys.stderr)
    return 2
  report = merge_reports(argv[3:])
  with open(argv[1], 'w') as f:
    json.dump(report, f, indent=1)
  with open(argv[2], 'w') as f:
    f.write('\n'.join(summary_lines(report)) + '\n')
  print_table(report['results'], report['ratios'])
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
