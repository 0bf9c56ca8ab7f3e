#!/usr/bin/env bash
# One GPU, ~8 minutes: the most informative runs of the `gpu` profile on SST-2 (see README,
# "Profile `gpu`"). Needs the MiniLM folder and the data unpacked by the caller:
#   MOVPRUNE_MINILM_DIR=<minilm folder> MOVPRUNE_DATA_DIR=<data folder> bash scripts/gpu_sst2.sh [SECONDS]
# Runs go 6 at a time; whatever has finished after SECONDS (default 460) is in results/gpu/runs.
set -u
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
timeout "${1:-460}" python scripts/gpu_sst2.py
echo "exit $?"
