#!/usr/bin/env bash
# One prepared GPU benchmark run (issue 9): JAX finetune steps of r3d_18 and r2plus1d_18 against torchvision
# (eager and torch.compile'd) on the same card, XLA layout variants, then the CSVR pretraining step in both
# gan_update modes. Finishes inside BUDGET_S seconds (default 500): steps that would not fit are skipped.
#   OUT=runs/gpu_bench bash launch/gpu_bench.sh        (DRY_RUN=1 prints the benchmark commands only)
# Writes under $OUT: bench.json (all results, ratios across runs), summary.txt (table, convolution layouts,
# per-kernel device time), log.txt, env.txt, the optimized HLO of the r3d_18 steps (*.hlo.txt.gz) and
# autotune_cache.tgz (XLA's autotune results, to carry into the next call: see below).
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

# Autotuning is most of the pretraining step's compile time: on an H200 (2026-11-26) its joint-stage programs were
# still compiling after 440 s with XLA's defaults, and compiled in 62 s with --xla_gpu_enable_triton_gemm=false
# --xla_gpu_autotune_level=2 (csvr_jax's defaults since; PRETRAIN_XLA below names them explicitly). JAX's persistent cache keeps XLA's per-fusion autotune results
# as each is found, so the work survives a killed run: $OUT/autotune_cache.tgz comes back after every run, and a
# later call that carries it as $AUTOTUNE_IN (default .gpu_cache/autotune_cache.tgz) starts from those results.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/csvr_jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
export JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES=xla_gpu_per_fusion_autotune_cache_dir
AUTOTUNE_DIR=$JAX_COMPILATION_CACHE_DIR/xla_gpu_per_fusion_autotune_cache_dir
AUTOTUNE_IN=${AUTOTUNE_IN:-.gpu_cache/autotune_cache.tgz}
mkdir -p "$AUTOTUNE_DIR"
if [ -f "$AUTOTUNE_IN" ]; then
  tar xzf "$AUTOTUNE_IN" -C "$AUTOTUNE_DIR" && echo "restored $(find "$AUTOTUNE_DIR" -type f | wc -l) autotune results"
fi
save_autotune() { tar czf "$OUT/autotune_cache.tgz" -C "$AUTOTUNE_DIR" . 2>/dev/null; }
# Progress of autotuning (one cache file per tuned convolution or fusion) and the GPU's load, every 20 s: tells
# whether a long compile is autotuning (files appear) or something else.
( while sleep 20; do
    echo "$(( $(date +%s) - START ))s autotune_results=$(find "$AUTOTUNE_DIR" -type f | wc -l)" \
      "gpu=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | tr -d '\n')"
  done >> "$OUT/progress.txt" ) &
MONITOR=$!
trap 'kill $MONITOR 2>/dev/null' EXIT

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
  save_autotune
}

# In order of what the issue needs most; EST_S is a guess for an H200 (compiles included; measured there on
# 2026-11-26: one finetune variant 20-55 s, torch eager + compile 50-60 s per arch, the full CSVR pretraining
# step > 130 s for its first mode; its programs now compile in parallel threads). STEPS selects a subset, e.g. STEPS="pretrain" REF= for a rerun.
# The XLA default of csvr_jax is --xla_gpu_force_conv_nhwc=true (csvr_jax/xla_flags.py); =false is XLA's own
# heuristic (NCDHW 3D convolutions on Hopper), the naive port's baseline.
STEPS=${STEPS:-r3d_default r2p1d_default r3d_nhwc r2p1d_nhwc pretrain r3d_pad8_ref pretrain_branches r2p1d_pad8 r3d_pad8 r2p1d_native r2p1d_native_nhwc r3d_b64}
want() { [[ " $STEPS " == *" $1 "* ]]; }
FT=(--what=finetune_step --batch="$BATCH")
REF=${REF---reference=torch}   # REF= skips the torch reference (e.g. a rerun on the same machine)
XLA_OWN=--xla_gpu_force_conv_nhwc=false
want r3d_default && run r3d_default 150 "$XLA_OWN" "${FT[@]}" --arch=r3d_18 $REF --profile --hlo_dir="$OUT" \
  --label=xla_default
want r2p1d_default && run r2p1d_default 150 "$XLA_OWN" "${FT[@]}" --arch=r2plus1d_18 $REF --profile \
  --label=xla_default
want r3d_nhwc && run r3d_nhwc 40 "$NHWC" "${FT[@]}" --arch=r3d_18 --profile --hlo_dir="$OUT" --label=nhwc
want r2p1d_nhwc && run r2p1d_nhwc 40 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 --profile --label=nhwc
# The pretraining step's compile: 62 small dots (heads, InfoNCE, device-side blur and colour jitter) would each
# get Triton GEMM autotuning (dozens of kernel configs compiled per dot) - cuBLAS serves them instead; autotune
# level 2 (XLA's default is 4) still initialises buffers but skips re-initialising and cross-checking every
# candidate algorithm against a reference. Neither changes the maths.
PRETRAIN_XLA="$NHWC ${PRETRAIN_XLA_EXTRA---xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=2}"
PRETRAIN=(--what=pretrain_step --arch=r3d_18 --batch="$PRETRAIN_BATCH" --gan_update=one_stage,alternating)
want pretrain && run pretrain 240 "$PRETRAIN_XLA" "${PRETRAIN[@]}" --pretrain_branches=false --label=pretrain_nhwc
# fold_pad8 against torch in the same process (the R3D-18 stem reads RGB: 3 channels, cuDNN pads them).
want r3d_pad8_ref && run r3d_pad8_ref 110 "$NHWC" "${FT[@]}" --arch=r3d_18 --conv_impl=fold_pad8 $REF --label=nhwc
want r2p1d_pad8_ref && run r2p1d_pad8_ref 110 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 --conv_impl=fold_pad8 $REF \
  --label=nhwc
# The single-branch stages alone (per-branch breakdown; most of their convolutions are tuned by then).
want pretrain_branches && run pretrain_branches 120 "$PRETRAIN_XLA" "${PRETRAIN[@]}" --pretrain_joint=false \
  --pretrain_branches=true --label=pretrain_nhwc
# The finetune step with csvr_jax's defaults against torch in the same process run (a rerun of the ratios).
want r3d_nhwc_ref && run r3d_nhwc_ref 120 "$NHWC" "${FT[@]}" --arch=r3d_18 $REF --label=nhwc
want r2p1d_nhwc_ref && run r2p1d_nhwc_ref 120 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 $REF --label=nhwc
# Zero-channel padding of odd channel counts (backbone_layers.CONV_IMPLS 'fold_pad8'): removes cuDNN's
# nhwcAddPaddingKernel (4.2 ms of R(2+1)D-18's 40.5 ms step on 2026-11-26); not yet measured.
want r2p1d_pad8 && run r2p1d_pad8 40 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 --conv_impl=fold_pad8 --label=nhwc
want r3d_pad8 && run r3d_pad8 40 "$NHWC" "${FT[@]}" --arch=r3d_18 --conv_impl=fold_pad8 --label=nhwc
want r2p1d_native && run r2p1d_native 40 "$XLA_OWN" "${FT[@]}" --arch=r2plus1d_18 --conv_impl=native \
  --label=xla_default
want r2p1d_native_nhwc && run r2p1d_native_nhwc 40 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 --conv_impl=native \
  --label=nhwc
# Space-to-depth RGB stems (backbone_layers.CONV_IMPLS 'fold_s2d'): the 3-channel (3,7,7) stem ran on cuDNN's
# sm80 'indexed' kernels (~2.4 ms fprop + 1.6 ms wgrad of R3D-18's 24 ms step on 2026-11-26).
want r3d_s2d_ref && run r3d_s2d_ref 120 "$NHWC" "${FT[@]}" --arch=r3d_18 --conv_impl=fold_s2d $REF --profile \
  --label=nhwc
want r2p1d_s2d_ref && run r2p1d_s2d_ref 120 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 --conv_impl=fold_s2d $REF \
  --profile --label=nhwc
want pretrain_s2d && run pretrain_s2d 240 "$PRETRAIN_XLA" "${PRETRAIN[@]}" --pretrain_branches=false \
  --conv_impl=fold_s2d --label=pretrain_nhwc_s2d
want r3d_s2d && run r3d_s2d 40 "$NHWC" "${FT[@]}" --arch=r3d_18 --conv_impl=fold_s2d --label=nhwc
want r3d_b64 && run r3d_b64 40 "$NHWC" --what=finetune_step --batch=64 --arch=r3d_18 --label=b64_nhwc

$PY -m csvr_jax.benchmarks.bench_report "$OUT/bench.json" "$OUT/summary.txt" "$RAW"/*.json 2>&1 | tee -a "$OUT/log.txt"
echo "total $(( $(date +%s) - START ))s"
