"""The embedded default end to end: launch/colab_quickstart.ipynb executed by nbclient in quick mode.

One run covers both checks of issue 8 (the quick demo is the expensive part, so CI runs it once): the notebook
runs `--mode=demo` with configs/demo.py:quick in a temp workdir (SynthActions generated and built in a temp
data dir, cold compile cache), shows the report, loads the export and finetunes from it; the test then reads
report.md and results.json.
"""
import json
import os

import pytest

from configs import demo as demo_config
from csvr_jax import demo
from csvr_jax import experiment
from csvr_jax.train import schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'launch', 'colab_quickstart.ipynb')
METHODS = [m for m, _, _ in demo.METHODS]


def test_pretrain_config_gives_every_method_the_same_budget():
  config = demo_config.get_config()
  total = sum(s.steps for s in config.train.stages)
  assert [s.name for s in config.train.stages] == ['pose', 'context', 'video_warmup', 'joint']
  for _, branches, _ in demo.METHODS:
    if not branches:
      continue
    c = experiment.method_config(config, branches)
    stages = schedule.resolve_stages(c, c.train.total_steps)
    assert stages[-1].end == total == config.train.total_steps
    assert all(set(s.losses) <= set(branches) for s in stages)
  c = experiment.method_config(config, ('context',))
  context_only = schedule.resolve_stages(c, c.train.total_steps)
  assert [(s.name, s.start, s.end) for s in context_only] == [('context', 0, total)]


def test_process_groups_run_every_method_once(monkeypatch):
  monkeypatch.setattr(os, 'cpu_count', lambda: 8)
  assert demo.process_groups(1) == [METHODS]
  assert demo.process_groups(2) == [['CSVR'], ['Random init', 'Context only']]
  assert demo.process_groups(5) == [['CSVR'], ['Random init'], ['Context only']]
  monkeypatch.setattr(os, 'cpu_count', lambda: 1)  # never more processes than cores
  assert demo.process_groups(2) == [METHODS]


def test_quickstart_notebook_runs_the_quick_demo(tmp_path, monkeypatch):
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  workdir, data_dir = tmp_path / 'run', tmp_path / 'data'
  monkeypatch.setenv('QUICK', '1')
  monkeypatch.setenv('CSVR_ROOT', ROOT)
  monkeypatch.setenv('CSVR_WORKDIR', str(workdir))
  monkeypatch.setenv('CSVR_DATA_DIR', str(data_dir))
  # The demo runs as a user would: one CPU device (conftest's 8 fake devices are for the parallel tests).
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setenv('PYTHONPATH', ROOT)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': ROOT}}).execute()

  outputs = '\n'.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []))
  assert 'demo finished in' in outputs
  runs = json.loads((workdir / 'results.json').read_text())['runs']
  assert sorted(r['method'] for r in runs) == sorted(METHODS)
  for r in runs:
    for key in ('linear_probe/top1', 'retrieval/R@1', 'finetune/top1'):
      assert 0.0 <= r['metrics'][key] <= 1.0, (r['method'], key)
  report = (workdir / 'report.md').read_text()
  for method in METHODS:
    assert f'| {method} |' in report
  assert list(workdir.glob('*.png'))
  # Section 3 of the notebook: finetune from the CSVR export.
  finetuned = json.loads((workdir / 'finetune_from_export' / 'results.json').read_text())['runs']
  assert finetuned and 'finetune/top1' in finetuned[0]['metrics']
  assert finetuned[0]['init_from'].endswith(os.path.join('pretrain_csvr', 'export'))
