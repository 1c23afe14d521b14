"""Every config loads, sets only keys declared in base, and the CLI rejects unknown keys in one line."""
import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from configs import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', '*.py')) if not p.endswith('__init__.py'))
VARIANTS = {'demo.py': [None, 'quick'], 'k400.py': [None, 'smoke'], 'ucf101.py': [None, 'smoke'],
            'ucf101_finetune.py': [None, 'smoke'], 'hmdb51_finetune.py': [None, 'smoke'],
            'ssv2_finetune.py': [None, 'smoke'], 'study.py': [None, 'quick', 'gpu', 'validation', 'gpu,validation'],
            'table1.py': ['scratch', 'fd', 'fs', 'fi_adain', 'fi_concat', 'fi_full', 'fi_full,smoke']}


def load(path, arg):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


OPEN_MAPPINGS = ('evals', 'experiment.downstream', 'study.datasets', 'study.data_seeds')  # name -> entry mappings: their entries are checked where used


def flat_keys(cfg, prefix=''):
  out = {}
  if prefix.rstrip('.') in OPEN_MAPPINGS:
    return {prefix.rstrip('.'): None}
  for k, v in cfg.items():
    if hasattr(v, 'items') and not isinstance(v, dict):
      out.update(flat_keys(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_config_loads_and_declares_nothing_new(path):
  base_keys = set(flat_keys(base.get_config()))
  for arg in VARIANTS.get(os.path.basename(path), [None]):
    keys = set(flat_keys(load(path, arg)))
    assert keys <= base_keys, f'{path}:{arg} sets keys missing from base: {sorted(keys - base_keys)}'


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_config_rejects_an_unknown_variant(path):
  with pytest.raises(ValueError, match=r'unknown variant .smokee.'):
    load(path, 'smokee')


def test_unknown_variant_is_one_line_on_the_command_line():
  r = run_main('--config=configs/k400.py:smokee', '--dry_run')
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and "configs/k400.py:smokee: unknown variant 'smokee'; choose from smoke" in lines[0], r.stderr


def test_table1_names_one_row():
  with pytest.raises(ValueError, match='name one of scratch, fd, fs'):
    load(os.path.join(ROOT, 'configs', 'table1.py'), 'smoke')
  with pytest.raises(ValueError, match='fd and fs exclude each other'):
    load(os.path.join(ROOT, 'configs', 'table1.py'), 'fd,fs')


def test_paper_defaults():
  c = base.get_config()
  assert (c.loss.sigma_p, c.loss.sigma_c) == (0.75, 0.75)
  assert (c.data.clip_len, c.data.stride, c.data.crop_size, c.train.batch_size) == (16, 4, 112, 16)
  assert (c.optim.lr_per_sample, c.optim.momentum, c.optim.weight_decay) == (0.0005, 0.9, 0.005)


def run_main(*args):
  return subprocess.run([sys.executable, '-m', 'csvr_jax.main', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)


def test_unknown_config_key_is_one_line():
  r = run_main('--config=configs/demo.py', '--config.no_such_key=1')
  assert r.returncode != 0
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and 'no_such_key' in lines[0], r.stderr


def test_unknown_mode_is_one_line():
  r = run_main('--config=configs/demo.py', '--mode=nope')
  assert r.returncode != 0
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and 'nope' in lines[0], r.stderr


def test_compilation_cache_dir_is_under_the_workdir_and_off_when_empty(monkeypatch, tmp_path):
  import jax
  from csvr_jax import main
  calls = {}
  monkeypatch.setattr(jax.config, 'update', lambda k, v: calls.__setitem__(k, v))
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  main.enable_compilation_cache('', str(tmp_path))
  assert not calls
  main.enable_compilation_cache('jax_cache', str(tmp_path))
  assert calls['jax_compilation_cache_dir'] == str(tmp_path / 'jax_cache')
  calls.clear()  # a cache named in the environment wins (one cache for every run of a session)
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'session'))
  main.enable_compilation_cache('jax_cache', str(tmp_path))
  assert not calls


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_config_passes_the_start_up_validation(path):
  from csvr_jax import validate
  for arg in VARIANTS.get(os.path.basename(path), [None]):
    validate.validate(load(path, arg))


@pytest.mark.parametrize('key,value,message', [
    ('model.vnet', 'r3d_181', "config.model.vnet: unknown 'r3d_181'; choose from c3d"),
    ('loss.context', 'infonce', "config.loss.context: unknown 'infonce'"),
    ('finetune.schedule', 'step', "config.finetune.schedule: unknown 'step'; choose from constant, cosine"),
    ('finetune.features', 'f_i', "config.finetune.features: unknown 'f_i'; choose from vnet, fi, fd"),
    ('loss.branches', ('pose', 'motion'), "config.loss.branches: unknown branch 'motion'"),
    ('gan_update', 'two_stage', "config.gan_update: unknown 'two_stage'"),
])
def test_validation_names_the_key_in_one_line(key, value, message):
  from csvr_jax import validate
  c = base.get_config()
  section, name = key.split('.') if '.' in key else (None, key)
  (c[section] if section else c)[name] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    validate.validate(c)


def test_bad_choice_fails_before_any_work_on_the_command_line():
  r = run_main('--config=configs/k400.py:smoke', '--config.loss.gan=hinge', '--dry_run')
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and "config.loss.gan: unknown 'hinge'; choose from bce, wgan" in lines[0], r.stderr


def test_the_library_does_not_import_the_config_files():
  """Configs depend on the library, never the reverse; the benchmarks alone read the recipes, in one place."""
  allowed = {os.path.join('csvr_jax', 'benchmarks', 'common.py')}
  offenders = []
  for path in glob.glob(os.path.join(ROOT, 'csvr_jax', '**', '*.py'), recursive=True):
    rel = os.path.relpath(path, ROOT)
    text = open(path).read()
    if rel not in allowed and re.search(r'^\s*(from configs\b|import configs\b)|configs\.\w+\.get_config', text, re.M):
      offenders.append(rel)
  assert not offenders, offenders
