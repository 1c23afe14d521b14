#!/usr/bin/env bash
# The evidence study's GPU variant (configs/study.py:gpu; docs/study.md) on one lent GPU, resumable across calls:
# each call runs the study until BUDGET_S, then packs what it finished into $OUT/state.tgz; the next call carries
# that file back as $STATE_IN and goes on (finished jobs are not redone; an interrupted job starts over). The data
# are regenerated on each machine (seeded: the same videos everywhere; ~1-2 min on 16 cores).
#
#   mkdir -p .gpu_study && cp <previous call's state.tgz> .gpu_study/   # from the second call on
#   bash launch/gpu_study.sh        # device tool: carry [".whl", ".gpu_study"], timeout_s 600
#
# Wheels: the lent machines have JAX, flax, optax, orbax, chex, OpenCV, scikit-learn, matplotlib and pyarrow but
# not Grain, ArrayRecord, PyAV, TFDS (and its small deps), tensorboardX, ml_collections or simplejpeg;
# `bash launch/gpu_wheels.sh` puts them (cp312, ~45 MB) in .whl/, installed into /tmp/site here when present
# (launch/device_wheels.sh).
# Env: CONFIG (default configs/study.py:gpu), STUDY_ARGS (config overrides, shell-quoted; default below), BUDGET_S
# (default 540: the study is stopped then, leaving time to pack inside a 600 s call), WORKDIR (default
# runs/study_gpu), DATA_DIR (default data/study), STATE_IN / CACHE_IN (default .gpu_study/state.tgz and
# jax_cache.tgz: a previous call's). $OUT gets (7 files at most): log.txt (the study's console), env.txt,
# state.tgz (the workdir without checkpoints: outcomes, logs, and once every job is done results.json, report.md and
# the plots),
# jax_cache.tgz (compiled programs, when under 16 MB: a later call on the same kind of GPU skips the compiles),
# job_logs.txt (the tail of each job's log), and report.md and summary.md when the study finished.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_study_out}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-540}
CONFIG=${CONFIG:-configs/study.py:gpu}
WORKDIR=${WORKDIR:-runs/study_gpu}
DATA_DIR=${DATA_DIR:-data/study}
STATE_IN=${STATE_IN:-.gpu_study/state.tgz}
CACHE_IN=${CACHE_IN:-.gpu_study/jax_cache.tgz}
# The first question for the GPU (docs/study.md, point 1): with 2,000 training videos, does pretraining teach the
# backbone motion? Motion variant, the three rows that answer it, frozen evaluations (the finetune rows and the
# scene variant are later calls' work: STUDY_ARGS="" WORKDIR=runs/study_gpu_all STATE_IN=.gpu_study/all/state.tgz
# runs the whole :gpu study; it needs its own workdir and state, as its evaluations differ: study_settings.json).
DEFAULT_ARGS=("--config.study.datasets={'motion': 0.0}" "--config.study.methods=('CSVR', 'Context only', 'Random init')"
              "--config.study.evaluations=('frozen',)")
if [ -n "${STUDY_ARGS+set}" ]; then eval "ARGS=($STUDY_ARGS)"; else ARGS=("${DEFAULT_ARGS[@]}"); fi
START=$(date +%s)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
unset JAX_COMPILATION_CACHE_DIR  # the study's own cache, $DATA_DIR/jax_cache: returned as jax_cache.tgz
. launch/device_wheels.sh
install_wheels "${WHEELS:-.whl}"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; nproc;
  $PY -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())';
  # a missing wheel shows here
  $PY -c 'import grain, tensorflow_datasets, av, csvr_jax.study.run' && echo 'csvr_jax.study imports';
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
mkdir -p "$WORKDIR" "$DATA_DIR/jax_cache"
if [ -f "$STATE_IN" ]; then
  tar xzf "$STATE_IN" -C "$WORKDIR" && echo "resumed: $(find "$WORKDIR" -path '*/outcomes/*.json' | wc -l) outcome files"
fi
if [ -f "$CACHE_IN" ]; then
  tar xzf "$CACHE_IN" -C "$DATA_DIR/jax_cache" && echo "restored $(ls "$DATA_DIR/jax_cache" | wc -l) compiled programs"
fi

# The study, stopped by SIGINT at the budget (a KeyboardInterrupt: checkpoints and outcome files are written
# atomically, so whatever finished is kept), then killed 20 s later if it has not exited.
LEFT=$((START + BUDGET_S - $(date +%s)))
timeout -k 20 -s INT "$LEFT" $PY -m csvr_jax.main --config="$CONFIG" --workdir="$WORKDIR" \
  --config.study.data_dir="$DATA_DIR" "${ARGS[@]}" 2>&1 | grep -v -e 'slow_operation_alarm' | tee "$OUT/log.txt"
echo "study exited after $(( $(date +%s) - START ))s" | tee -a "$OUT/log.txt"

# State for the next call: everything but checkpoints, exports and event files (what finished jobs leave is their
# outcome files and results.json). An unfinished job starts over next time, so its checkpoints are not needed, and
# the outcome files it has written are left out too (one row = one pretraining run).
$PY -c "import sys; from csvr_jax.study import jobs; print('\n'.join(jobs.partial_outcomes(sys.argv[1])))" \
  "$WORKDIR" | sed "s|^$WORKDIR/|./|" > /tmp/gpu_study_partial.txt
tar czf "$OUT/state.tgz" -C "$WORKDIR" --exclude=checkpoints --exclude=export --exclude=tb --exclude=finetune \
  --exclude-from=/tmp/gpu_study_partial.txt .
tar czf "$OUT/jax_cache.tgz" -C "$DATA_DIR/jax_cache" .
if [ "$(stat -c %s "$OUT/jax_cache.tgz")" -gt 16000000 ]; then
  rm "$OUT/jax_cache.tgz" && echo "compile cache over 16 MB: not returned"
fi
for f in "$WORKDIR"/logs/*.log; do [ -f "$f" ] && { echo "== $f"; grep -v -e '^\s*$' "$f" | tail -n 15; }; done \
  > "$OUT/job_logs.txt" 2>&1
for f in report.md summary.md; do
  [ -f "$WORKDIR/$f" ] && cp "$WORKDIR/$f" "$OUT/"
done
ls -la "$OUT"
echo "total $(( $(date +%s) - START ))s"
