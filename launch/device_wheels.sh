# Sourced by the lent-GPU scripts (gpu_bench.sh, gpu_study.sh): install_wheels DIR installs every wheel in DIR (the
# packages the lent machines lack, carried with the call) into /tmp/site with --no-deps and puts it on PYTHONPATH;
# nothing happens when DIR holds no wheel (a machine that has everything, or a CPU check of the script).
install_wheels() {
  if ls "$1"/*.whl >/dev/null 2>&1; then
    ${PY:-python3} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$1"/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
  fi
}
