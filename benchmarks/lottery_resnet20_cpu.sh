#!/usr/bin/env bash
# Renda et al. 2020's retraining comparison and Frankle et al. 2020's instability, CPU-sized (issue 10):
#   benchmarks/lottery_resnet20_cpu.sh OUT_ROOT
# 1. lr_rewind (k = 0: the trained, pruned weights retrained on the full LR schedule), which also trains the dense
#    level 0; 2. finetune (at the schedule's final LR, and at lottery.finetune_lr 0.001) and reset (= weight
#    rewinding to 0) on copies of that level 0 and init (level 0 is the same run for every mode: same config, same
#    seed, deterministic), so all of them prune the same trained network by the same mask; 3. LMC instability of
#    the dense network at k = 0, 1 and 2 epochs of a 6-epoch schedule.
# One thread; about 2 hours on the 2-core VM (2026-12-02, one core to itself for most of it).
# Results: OUT_ROOT/*/lottery.json, OUT_ROOT/lmc-*/lmc.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROOT=${1:?usage: $0 OUT_ROOT}
CFG=configs/lottery/cifar10-resnet20-cpu.yaml
export OMP_NUM_THREADS=1
mkdir -p "$ROOT"
share_level0() {  # the dense level 0 and theta_0 of the lr_rewind run, copied into another mode's directory
    if [[ ! -e "$1/level_00/summary.json" ]]; then
        mkdir -p "$1"
        cp -r "$ROOT/lr_rewind/level_00" "$1/"
        cp "$ROOT/lr_rewind/init.safetensors" "$1/"
    fi
}
"$PY" -m prunekit lottery "$CFG" --mode lr_rewind --out "$ROOT/lr_rewind"
for mode in finetune reset; do
    share_level0 "$ROOT/$mode"
    "$PY" -m prunekit lottery "$CFG" --mode "$mode" --out "$ROOT/$mode"
done
# fine-tuning at a usable LR: the cosine schedule's final LR is about 0 (4.9e-7), Renda et al. fine-tune at 0.001
share_level0 "$ROOT/finetune-lr1e-3"
"$PY" -m prunekit lottery "$CFG" --mode finetune --set lottery.finetune_lr=0.001 --out "$ROOT/finetune-lr1e-3"
for k in 0 1ep 2ep; do
    "$PY" -m prunekit lmc "$CFG" --at "$k" --points 11 --train-batches 16 --set train.epochs=6 --out "$ROOT/lmc-$k"
done
"$PY" benchmarks/lottery_resnet20_table.py "$ROOT"
