#!/usr/bin/env bash
# One prepared GPU benchmark run of the library's own steps (issue 16): the `--mode=finetune` step of r3d_18 and
# r2plus1d_18 with and without device augmentation against torchvision doing the same work (eager and
# torch.compile'd, csvr_jax/benchmarks/torch_reference.py), then the `--mode=pretrain` step (steps.StepFns, joint
# stage, one-stage and alternating) with the tgan2 and the dense video GAN. Finishes inside BUDGET_S seconds
# (default 540): steps that would not fit are skipped, so on a 15-minute device lease run it as two calls:
#   STEPS="ft_r3d ft_r2p1d" OUT=runs/gpu_bench bash launch/gpu_bench.sh
#   STEPS="pretrain pretrain_dense" OUT=runs/gpu_bench AUTOTUNE_IN=runs/gpu_bench/autotune_cache.tgz bash ...
# DRY_RUN=1 prints the benchmark commands only; GAN_UPDATE=one_stage skips the alternating pretraining mode (the
# 2026-11-27 calls: docs/performance.md). The steps run in the order below whatever the order in STEPS.
# Writes under $OUT: bench.json (all results, ratios across runs),
# summary.txt (table, convolution layouts, per-kernel device time), log.txt, env.txt, the optimized HLO of the
# r3d_18 finetune steps (*.hlo.txt.gz) and autotune_cache.tgz (XLA's autotune results, to carry into the next
# call: see below).
# Needs JAX with CUDA, torch and torchvision (the lent machines' python3 has them). Wheels in $WHEELS (default
# .benchwhl/: ml_collections and simplejpeg, which the lent machines lack; `pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .benchwhl ml_collections simplejpeg`
# here) are installed into /tmp/site first when present.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_bench}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-540}
BATCH=${BATCH:-32}
PRETRAIN_BATCH=${PRETRAIN_BATCH:-16}   # the paper's pretraining batch, one GPU
START=$(date +%s)
RAW=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
. launch/device_wheels.sh
install_wheels "${WHEELS:-.benchwhl}"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv;
  $PY -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())';
  $PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)';
  $PY -c 'import csvr_jax.benchmarks.steps' && echo 'csvr_jax.benchmarks imports';  # a missing wheel shows here
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

# In order of what the issue needs most; EST_S is a guess for an H200, compiles included (2026-11-26, the old
# re-implemented finetune step: one JAX variant 20-55 s, torch eager + compile 50-60 s per arch; the joint CSVR
# pretraining step > 130 s for its first mode). STEPS selects a subset (the two calls in the header), REF= skips
# the torch reference. csvr_jax's XLA default is --xla_gpu_force_conv_nhwc=true (csvr_jax/xla_flags.py); =false is
# XLA's own heuristic (NCDHW 3D convolutions on Hopper), the naive port's baseline.
STEPS=${STEPS:-ft_r3d ft_r2p1d pretrain pretrain_dense pretrain_branches ft_r3d_fi ft_r3d_xla_layouts ft_r3d_fold}
want() { [[ " $STEPS " == *" $1 "* ]]; }
NHWC=--xla_gpu_force_conv_nhwc=true
REF=${REF---reference=torch}
# The finetune step as `--mode=finetune` runs it (configs/ucf101_finetune.py: conv_impl fold_s2d, dropout 0.3, SGD),
# without (the model's cost) and with the device augmentation, each against torch doing the same.
FT=(--what=finetune_step --batch="$BATCH" --augment=none,device)
want ft_r3d && run ft_r3d 220 "$NHWC" "${FT[@]}" --arch=r3d_18 $REF --profile --hlo_dir="$OUT"
want ft_r2p1d && run ft_r2p1d 220 "$NHWC" "${FT[@]}" --arch=r2plus1d_18 $REF --profile
# The pretraining step of configs/k400.py. Its compile: 62 small dots (heads, InfoNCE, device-side blur and colour
# jitter) would each get Triton GEMM autotuning - cuBLAS serves them instead; autotune level 2 (XLA's default is
# 4) skips re-initialising and cross-checking every candidate. Neither changes the maths; both are csvr_jax's
# defaults (csvr_jax/xla_flags.py), named here so that the log says what ran.
PRETRAIN_XLA="$NHWC --xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=2"
PRETRAIN=(--what=pretrain_step --arch=r3d_18 --batch="$PRETRAIN_BATCH" --gan_update="${GAN_UPDATE:-one_stage,alternating}")
want pretrain && run pretrain 200 "$PRETRAIN_XLA" "${PRETRAIN[@]}" --video_gan=tgan2
want pretrain_dense && run pretrain_dense 200 "$PRETRAIN_XLA" "${PRETRAIN[@]}" --video_gan=dense
# The single-branch stages alone (per-branch breakdown; most of their convolutions are tuned by then).
want pretrain_branches && run pretrain_branches 150 "$PRETRAIN_XLA" "${PRETRAIN[@]}" --video_gan=tgan2 \
  --pretrain_joint=false --pretrain_branches=true
# Finetuning from the integrated feature f_i (V-Network + pose encoder + integration layer; no torch counterpart).
want ft_r3d_fi && run ft_r3d_fi 60 "$NHWC" --what=finetune_step --batch="$BATCH" --arch=r3d_18 --features=fi \
  --augment=device
# Baselines of the layout choices: XLA's own layouts, and conv_impl 'fold' (no channel padding, no s2d stem).
want ft_r3d_xla_layouts && run ft_r3d_xla_layouts 60 --xla_gpu_force_conv_nhwc=false "${FT[@]}" --arch=r3d_18 \
  --label=xla_layouts
want ft_r3d_fold && run ft_r3d_fold 60 "$NHWC" "${FT[@]}" --arch=r3d_18 --conv_impl=fold

$PY -m csvr_jax.benchmarks.bench_report "$OUT/bench.json" "$OUT/summary.txt" "$RAW"/*.json 2>&1 | tee -a "$OUT/log.txt"
echo "total $(( $(date +%s) - START ))s"
