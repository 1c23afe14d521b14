"""What XLA made of a step: convolution layouts in the optimized HLO, and per-kernel device time.

Used by the step benchmark to find where a JAX step loses to cuDNN-backed PyTorch: on Hopper, XLA's
layout assignment keeps 3D convolutions in NCDHW unless `--xla_gpu_force_conv_nhwc` is set
(xla/service/gpu/transforms/layout_assignment.cc), which shows up here as transposes around the
`__cudnn$conv*` custom calls and as `nchw`/`nhwc` in the cuDNN kernel names of the profile.
"""
import collections
import glob
import os
import re
import tempfile

import jax

_CONV_TARGET = re.compile(r'custom_call_target="(__cudnn\$conv[A-Za-z]*)"')
_DIM_LABELS = re.compile(r'dim_labels=([0-9a-z_>-]+)')
_RESULT = re.compile(r'=\s*\(?([a-z0-9]+\[[0-9,]*\]\{[0-9,]*\})')
_INSTR_NAME = re.compile(r'^\s*(?:ROOT\s+)?%?([A-Za-z0-9_.\-]+)\s*=')


def hlo_summary(hlo_text, max_examples=12):
  """Counts what matters for convolution layouts in optimized HLO text.

  Returns a dict: conv custom calls per target and per (target, dim_labels, result layout); the number
  of top-level transpose/copy instructions and of fusions whose name says transpose/copy (layout
  changes XLA had to insert), and a few example convolution lines.
  """
  convs = collections.Counter()
  conv_layouts = collections.Counter()
  layout_changes = collections.Counter()
  examples = []
  in_entry = False
  for line in hlo_text.splitlines():
    if line.startswith('ENTRY'):
      in_entry = True
    elif line.startswith('}'):
      in_entry = False
    m = _CONV_TARGET.search(line)
    if m:
      target = m.group(1)
      convs[target] += 1
      dl = _DIM_LABELS.search(line)
      res = _RESULT.search(line)
      conv_layouts[f'{target} {dl.group(1) if dl else "?"} {res.group(1) if res else "?"}'] += 1
      if len(examples) < max_examples:
        examples.append(line.strip()[:400])
      continue
    if not in_entry:
      continue  # count layout changes at the top level only (fusion bodies repeat them)
    name = _INSTR_NAME.match(line)
    if not name:
      continue
    n = name.group(1)
    for kind in ('transpose', 'copy'):
      if n.startswith(kind) or (' fusion(' in line and kind in n):
        layout_changes[kind] += 1
  return dict(conv_custom_calls=dict(convs), conv_layouts=dict(conv_layouts.most_common()),
              layout_changes=dict(layout_changes), conv_examples=examples)


def profile_kernels(run_steps, n_steps, top=30):
  """Runs `run_steps()` (which must block until done) under the JAX profiler and sums device time.

  Returns {'per_line': {line name: ms per step}, 'top': [{name, ms_per_step, calls_per_step}]} over the
  device planes (GPU kernels; on CPU, where there is no device plane, the host XLA threads), or an
  'error' entry when this jax cannot trace.
  """
  with tempfile.TemporaryDirectory() as d:
    try:
      with jax.profiler.trace(d):
        run_steps()
      paths = glob.glob(os.path.join(d, '**', '*.xplane.pb'), recursive=True)
      if not paths:
        return dict(error='profiler wrote no xplane.pb')
      data = jax.profiler.ProfileData.from_file(paths[0])
    except Exception as e:  # pylint: disable=broad-except  # the profile is a diagnostic, never fatal
      return dict(error=f'{type(e).__name__}: {e}'[:500])
    planes = [p for p in data.planes if p.name.startswith('/device:')]
    on_host = not planes
    if on_host:
      planes = [p for p in data.planes if p.name == '/host:CPU']
    per_line = collections.Counter()
    kernels = collections.Counter()
    calls = collections.Counter()
    for plane in planes:
      for line in plane.lines:
        if on_host and not line.name.startswith('tf_XLA'):
          continue  # on CPU only XLA's worker threads run the step; the python line is host overhead
        lname = f'{plane.name} {line.name}'
        for ev in line.events:
          per_line[lname] += ev.duration_ns
          # Kernel events live on the stream lines; 'XLA Ops'/'XLA Modules' lines repeat the same time
          # under HLO names, which are summed separately in per_line only.
          if 'Stream' in line.name or on_host:
            kernels[ev.name] += ev.duration_ns
            calls[ev.name] += 1
  scale = 1e-6 / max(n_steps, 1)
  return dict(per_line={k: v * scale for k, v in per_line.most_common(12)},
              top=[dict(name=k[:300], ms_per_step=v * scale, calls_per_step=calls[k] / max(n_steps, 1))
                   for k, v in kernels.most_common(top)])


def kernel_groups(top_kernels):
  """Sums profile kernel time into coarse groups (conv fprop/dgrad/wgrad, transpose, other)."""
  groups = collections.Counter()
  for k in top_kernels:
    n = k['name'].lower()
    if 'transpose' in n or 'copy' in n:
      g = 'transpose/copy'
    elif 'dgrad' in n:
      g = 'conv_dgrad'
    elif 'wgrad' in n:
      g = 'conv_wgrad'
    elif 'fprop' in n or 'conv' in n or 'implicit' in n:
      g = 'conv_fprop'
    elif 'gemm' in n:
      g = 'gemm'
    else:
      g = 'other (fusions, BN, optimizer)'
    layout = 'nchw' if 'nchw' in n or 'ncdhw' in n else 'nhwc' if 'nhwc' in n or 'ndhwc' in n else ''
    groups[f'{g} {layout}'.strip()] += k['ms_per_step']
  return dict(groups.most_common())
