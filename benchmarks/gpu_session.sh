#!/usr/bin/env bash
# The GPU timings of docs/speed.md, in one go, for a machine with one CUDA GPU lent for a few minutes:
#
#     OUT=/tmp/gpu bash benchmarks/gpu_session.sh [SECONDS]     # stops starting new steps after SECONDS (default 480; the five steps took 460 s on an H100)
#
# Steps, most wanted first, each with its own time limit; everything printed also goes to $OUT/log.txt, and each
# small study's study.json (its provenance holds the wall time) to $OUT/study_cuda_jobsN.json.
#   1. the machine: GPU, CPU cores, torch;
#   2. a small whole study from nothing on the GPU (4 runs: seeds 5 6 x AutoEncoder and VAE on MNIST, 20 epochs,
#      full evaluation), with --jobs 1 and then --jobs 2 (two processes sharing the GPU), like the CPU table;
#   3. one run's evaluation on the GPU (benchmarks/evaluate_run.py);
#   4. what bf16 costs in nats and buys in time where the hardware multiplies bf16 natively (benchmarks/precision.py);
#   5. the training tables (benchmarks/speed.py --use_cuda, without the Pythae peer, which is not installed there).
set -u
OUT=${OUT:?set OUT to a folder for the logs}
BUDGET=${1:-480}
START=$SECONDS
mkdir -p "$OUT"
: > "$OUT/log.txt"
export PYTHONUNBUFFERED=1
log() { echo "$@" | tee -a "$OUT/log.txt"; }
step() {  # step LIMIT_SECONDS COMMAND...: runs it unless the budget is spent
    local limit=$1; shift
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 30 ]; then log "== skipped (budget spent): $*"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    log "== [$((SECONDS - START)) s] $* (limit ${limit} s)"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/log.txt"
    log "== rc=${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

log "== code: $(git rev-parse HEAD 2>/dev/null || echo 'no git'), changed files: $(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
step 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step 20 python3 -c "import os, torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), os.cpu_count(), 'CPU cores')"
for jobs in 1 2; do
    dir=/tmp/gpu_jobs$jobs
    rm -rf $dir  # from nothing, also when the machine is still warm from an earlier call
    step 200 python3 study.py --seeds 5 6 --datasets mnist --checkpoint_dir $dir --logdir $dir/logs -o $dir/out \
        --readme none --jobs $jobs --device cuda
    [ -f $dir/out/study.json ] && cp $dir/out/study.json "$OUT/study_cuda_jobs$jobs.json"
done
step 90 python3 benchmarks/evaluate_run.py --device cuda --threads "$(nproc)"
step 240 python3 benchmarks/precision.py --device cuda --seeds 0 1
step 150 python3 benchmarks/speed.py --use_cuda --peer_pairs 0
log "== total $((SECONDS - START)) s"
