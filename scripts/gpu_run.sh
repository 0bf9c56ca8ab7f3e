#!/usr/bin/env bash
# One timed GPU job (docs/gpu.md), from the repository root of an offline GPU machine, with
# `device_payload/` (MiniLM in fp16 + data.tar.xz, built by scripts/make_device_payload.sh) and `.whl/`
# (datasets and its two pure-Python dependencies, absent there) carried along:
#   1. benchmarks/bench_gpu_step.py: masked vs dense training step, sync-free vs bracket top-k;
#   2. scripts/gpu_sst2.sh: the `gpu` profile's most informative SST-2 runs, for the seconds left;
#      or, with GPU_JOB=minilm, scripts/gpu_minilm.py: the `minilm` profile's missing runs of GPU_TASKS
#      (default squad,sick), 6 at a time.
# Everything worth keeping is copied to $OUT (records, logs), also when the runs are cut short.
# Usage: [SKIP_BENCH=1] [GPU_SST2_ONLY=dense,l0] [GPU_JOB=minilm GPU_TASKS=squad GPU_MINILM_ONLY=squad-] bash scripts/gpu_run.sh [SECONDS (540)]
set -u
start=$(date +%s)
touch /tmp/gpu_run_started
total=${1:-540}
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl >"$out/pip.log" 2>&1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p /tmp/data && tar xJf device_payload/data.tar.xz -C /tmp/data
export MOVPRUNE_MINILM_DIR=$PWD/device_payload/minilm MOVPRUNE_DATA_DIR=/tmp/data
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers, datasets; print(torch.__version__, transformers.__version__, datasets.__version__)" | tee -a "$out/gpu.txt"

[ -n "${SKIP_BENCH:-}" ] || timeout 150 python3 benchmarks/bench_gpu_step.py --steps 30 --repeats 3 2>&1 \
    | grep -v -e "Loading weights" -e "^Notes" -e "^- MISSING" -e "UNEXPECTED" | tee "$out/bench_gpu_step.log"

left=$(( total - ($(date +%s) - start) - 25 ))
job=${GPU_JOB:-sst2}
store=results/gpu/runs
[ "$job" = minilm ] && store="results/minilm/runs results/squad_windows/runs"
if [ "$left" -gt 60 ]; then
    if [ "$job" = minilm ]; then
        timeout "$left" python3 scripts/gpu_minilm.py >"$out/gpu_$job.log" 2>&1
    else
        bash scripts/gpu_sst2.sh "$left" >"$out/gpu_$job.log" 2>&1
    fi
fi
# at most 8 files come back from $OUT: the records made here travel as one archive
find $store -type f -newer /tmp/gpu_run_started 2>/dev/null | tar czf "$out/records.tar.gz" -T -
tar tzf "$out/records.tar.gz"
tr '\r' '\n' <"$out/gpu_$job.log" 2>/dev/null | grep -a "trained " | sed 's/.*trained /trained /' 
echo "gpu_run done after $(( $(date +%s) - start )) s"
