#!/usr/bin/env bash
# REPrune paper preset end to end on one GPU: ResNet-56 on CIFAR-10, 160 epochs, T_prune 96, dT 2, global channel
# sparsity 0.55 (configs/reprune-cifar10-resnet56.yaml), with train.device=cuda and torch's default thread count.
#
#   benchmarks/reprune_gpu.sh [RUN_ROOT]
#
# Environment:
#   CIFAR10=PATH     CIFAR-10 (official python batches or the JPEG archive); default ../shared/data/cifar10-jpeg.tar.gz
#   PYTHON=PATH      interpreter with prunekit and a CUDA build of torch; default .venv/bin/python, else python3
#   WITH_DENSE=1     first train the same preset with method dense, so summary.json also reports the training FLOPs
#                    and time saved against it (train_flops_saved, train_time_saved)
#   EXTRA="--set train.epochs=2 --set method.params.t_prune=2"   extra overrides (e.g. a smoke test)
#
# Prints one line per run (accuracy, MACs, training time) and leaves the run directories under RUN_ROOT
# (default runs/reprune-gpu-<date>). Run only where a GPU is present; it fails fast otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3
fi
DATA=${CIFAR10:-../shared/data/cifar10-jpeg.tar.gz}
ROOT=${1:-runs/reprune-gpu-$(date +%Y%m%d-%H%M%S)}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
DENSE_ARGS=()  # EXTRA without its method.* overrides, for the dense baseline
for ((i = 0; i < ${#EXTRA_ARGS[@]}; i++)); do
    if [[ "${EXTRA_ARGS[i]}" == --set && "${EXTRA_ARGS[i + 1]:-}" == method.* ]]; then ((i += 1)); continue; fi
    DENSE_ARGS+=("${EXTRA_ARGS[i]}")
done

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA device visible to torch")'
"$PY" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))'
mkdir -p "$ROOT"

train() {  # train RUN_DIR [--set ...]
    local run=$1; shift
    "$PY" -m prunekit.cli train configs/reprune-cifar10-resnet56.yaml --out "$run" \
        --set train.device=cuda --set "data.path=$DATA" "$@"
}

report() {  # report RUN_DIR
    "$PY" - "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1] + "/summary.json"))
line = (f"{s['method']:8s} {s['model']} {s['epochs']} epochs: top-1 {100 * s['test_accuracy']:.2f}%  "
        f"MACs {s['macs'] / 1e6:.2f}M ({100 * (1 - s['macs'] / s['dense_macs']):.2f}% fewer)  "
        f"params {s['params'] / 1e6:.3f}M  train time {s['train_time_s'] / 60:.1f} min")
if "train_time_saved" in s:
    line += f"  time saved {100 * s['train_time_saved']:.1f}%  train FLOPs saved {100 * s['train_flops_saved']:.1f}%"
print(line)
PY
}

baseline=()
if [[ "${WITH_DENSE:-0}" == 1 ]]; then
    train "$ROOT/dense" --set method.name=dense --set "method.params={}" --set name=dense-cifar10-resnet56 \
        "${DENSE_ARGS[@]}"
    report "$ROOT/dense"
    baseline=(--set "baseline_run=$ROOT/dense")
fi
train "$ROOT/reprune" "${baseline[@]}" "${EXTRA_ARGS[@]}"
report "$ROOT/reprune"
