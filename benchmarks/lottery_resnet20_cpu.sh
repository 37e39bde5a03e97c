#!/usr/bin/env bash
# Renda et al. 2020's retraining comparison and Frankle et al. 2020's instability, CPU-sized (issue 10):
#   benchmarks/lottery_resnet20_cpu.sh OUT_ROOT
# 1. lr_rewind (k = 0: the trained, pruned weights retrained on the full LR schedule), which also trains the dense
#    level 0; 2. finetune and reset (= weight rewinding to 0) on copies of that level 0 and init (level 0 is the
#    same run for every mode: same config, same seed, deterministic), so all three prune the same trained network
#    by the same mask; 3. LMC instability of the dense network at k = 0, 1 and 2 epochs of a 6-epoch schedule.
# One thread; about 50 minutes on the 2-core VM. Results: OUT_ROOT/*/lottery.json, OUT_ROOT/lmc-*/lmc.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROOT=${1:?usage: $0 OUT_ROOT}
CFG=configs/lottery/cifar10-resnet20-cpu.yaml
export OMP_NUM_THREADS=1
mkdir -p "$ROOT"
"$PY" -m prunekit lottery "$CFG" --mode lr_rewind --out "$ROOT/lr_rewind"
for mode in finetune reset; do
    if [[ ! -e "$ROOT/$mode/level_00/summary.json" ]]; then
        mkdir -p "$ROOT/$mode"
        cp -r "$ROOT/lr_rewind/level_00" "$ROOT/$mode/"
        cp "$ROOT/lr_rewind/init.safetensors" "$ROOT/$mode/"
    fi
    "$PY" -m prunekit lottery "$CFG" --mode "$mode" --out "$ROOT/$mode"
done
# fine-tuning at a usable LR: the cosine schedule's final LR is about 0 (4.9e-7), Renda et al. fine-tune at 0.001
if [[ ! -e "$ROOT/finetune-lr1e-3/level_00/summary.json" ]]; then
    mkdir -p "$ROOT/finetune-lr1e-3"
    cp -r "$ROOT/lr_rewind/level_00" "$ROOT/finetune-lr1e-3/"
    cp "$ROOT/lr_rewind/init.safetensors" "$ROOT/finetune-lr1e-3/"
fi
"$PY" -m prunekit lottery "$CFG" --mode finetune --set lottery.finetune_lr=0.001 --out "$ROOT/finetune-lr1e-3"
for k in 0 1ep 2ep; do
    "$PY" -m prunekit lmc "$CFG" --at "$k" --points 11 --train-batches 16 --set train.epochs=6 --out "$ROOT/lmc-$k"
done
"$PY" benchmarks/lottery_resnet20_table.py "$ROOT"
