"""Launch scripts: valid bash, and the commands they would run pass the CLI's own checks (--dry_run)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ['launch/single_gpu.sh', 'launch/slurm_multinode.sbatch', 'launch/tpu_vm_pod.sh',
           'launch/gpu_bench.sh']


@pytest.mark.parametrize('script', SCRIPTS)
def test_bash_syntax(script):
  assert os.path.exists(os.path.join(ROOT, script)), script
  subprocess.run(['bash', '-n', script], cwd=ROOT, check=True)


@pytest.mark.parametrize('script', SCRIPTS[:3])
def test_dry_run_goes_through_the_cli(script):
  env = dict(os.environ, DRY_RUN='1', PYTHON=sys.executable, CONFIG='configs/k400.py:smoke', WORKDIR='/tmp/x')
  r = subprocess.run(['bash', script, '--config.train.batch_size=16'], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, r.stdout + r.stderr
  assert 'csvr_jax.main' in r.stdout
  assert 'dry run: mode=pretrain' in r.stdout and 'batch=16' in r.stdout, r.stdout


def test_bad_override_fails_the_dry_run():
  env = dict(os.environ, DRY_RUN='1', PYTHON=sys.executable, CONFIG='configs/k400.py:smoke')
  r = subprocess.run(['bash', 'launch/single_gpu.sh', '--config.no_such=1'], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode != 0 and 'no_such' in r.stderr
