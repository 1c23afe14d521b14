#!/usr/bin/env bash
# One prepared GPU benchmark run (issue 9): JAX finetune steps of r3d_18 and r2plus1d_18 against torchvision
# (eager and torch.compile'd) on the same card, XLA layout variants, then the CSVR pretraining step in both
# gan_update modes. Finishes inside BUDGET_S seconds (default 500): steps that would not fit are skipped.
#   OUT=runs/gpu_bench bash launch/gpu_bench.sh        (DRY_RUN=1 prints the benchmark commands only)
# Writes under $OUT: bench.json (all results, ratios across runs), summary.txt (table, convolution layouts,
# per-kernel device time), log.txt, env.txt, and the optimized HLO of the r3d_18 steps (*.hlo.txt.gz).
# Needs JAX with CUDA, torch and torchvision. Wheels in $WHEELS (default .benchwhl/: ml_collections and
# simplejpeg, which the pretraining step imports) are installed into /tmp/site first when present.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_bench}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-500}
BATCH=${BATCH:-32}
PRETRAIN_BATCH=${PRETRAIN_BATCH:-16}   # the paper's pretraining batch, one GPU
START=$(date +%s)
RAW=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
WHEELS=${WHEELS:-.benchwhl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv;
  $PY -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())';
  $PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)';
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# SHAPE / TIMING override the clip shape and step counts (tiny values make a CPU check of this script).
read -r -a SHAPE <<< "${SHAPE:---crop=112 --frames=16 --width=1.0}"
read -r -a TIMING <<< "${TIMING:---steps=15 --warmup=3 --repeats=3}"
COMMON=(--dtype=bfloat16 "${SHAPE[@]}" "${TIMING[@]}")
NHWC=--xla_gpu_force_conv_nhwc=true

# run NAME EST_S XLA_FLAGS ARGS...: one benchmark process, skipped when EST_S no longer fits the budget.
run() {
  local name=$1 est=$2 xla=$3; shift 3
  local left=$((START + BUDGET_S - $(date +%s)))
  if [ "$left" -lt "$est" ]; then
    echo "### skip $name (needs ~${est}s, ${left}s left)" | tee -a "$OUT/log.txt"; return 0
  fi
  echo "### $name (XLA_FLAGS='$xla', ${left}s left)" | tee -a "$OUT/log.txt"
  if [ "${DRY_RUN:-0}" = 1 ]; then echo "+ $PY -m csvr_jax.bench ${COMMON[*]} $*"; return 0; fi
  XLA_FLAGS="$xla" timeout "$left" $PY -m csvr_jax.bench "${COMMON[@]}" --json_out="$RAW/$name.json" "$@" \
    2>&1 | grep -v -e '^\*\*\*' -e 'slow_operation_alarm' | tee -a "$OUT/log.txt"
  $PY -m csvr_jax.benchmarks.bench_report "$OUT/bench.json" "$OUT/summary.txt" "$RAW"/*.json > /dev/null 2>&1
}

# faster of two finetune variants of an arch, by clips/s in the merged results (for the later steps).
best_flags() {
  $PY - "$OUT/bench.json" "$1" "$NHWC" <<'EOF'
import json, sys
rep, arch, nhwc = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
r = {x['label']: x['clips_per_s'] for x in rep['results']
     if x.get('impl') == 'jax' and x.get('arch') == arch and 'clips_per_s' in x}
print(nhwc if r.get('nhwc', 0) > r.get('xla_default', 0) else '')
EOF
}

# In order of what the issue needs most; EST_S is a guess for an H100/H200 (compiles included).
FT=(--what=finetune_step --batch="$BATCH")
run r3d_default 150 "" "${FT[@]}" --arch=r3d_18 --reference=torch --profile --hlo_dir="$OUT" --label=xla_default
run r2p1d_default 150 "" "${FT[@]}" --arch=r2plus1d_18 --reference=torch --profile --label=xla_default
run r3d_nhwc 40 "$NHWC" "${FT[@]}" --arch=r3d_18 --profile --hlo_dir="$OUT" --label=nhwc
run r2p1d_nhwc 40 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 --profile --label=nhwc
BEST=$(best_flags r3d_18 2>/dev/null)
run pretrain 90 "$BEST" --what=pretrain_step --arch=r3d_18 --batch="$PRETRAIN_BATCH" --gan_update=one_stage,alternating \
  --label="pretrain${BEST:+_nhwc}"
run r2p1d_native 40 "" "${FT[@]}" --arch=r2plus1d_18 --conv_impl=native --label=xla_default
run r2p1d_native_nhwc 40 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 --conv_impl=native --label=nhwc
run r3d_b64 40 "$BEST" --what=finetune_step --batch=64 --arch=r3d_18 --label="b64${BEST:+_nhwc}"

$PY -m csvr_jax.benchmarks.bench_report "$OUT/bench.json" "$OUT/summary.txt" "$RAW"/*.json 2>&1 | tee -a "$OUT/log.txt"
echo "total $(( $(date +%s) - START ))s"
