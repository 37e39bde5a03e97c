#!/usr/bin/env bash
# The REPrune ResNet-56 paper preset on one GPU, with WITH_DENSE=1 its dense baseline beside it (concurrently):
# benchmarks/gpu_paper.sh with METHODS="reprune" or "dense reprune". Its environment applies (CIFAR10, DEVICE,
# EPOCHS, EXTRA, PYTHON, ...), and so does its results directory (the first argument).
set -euo pipefail
if [[ "${WITH_DENSE:-0}" == 1 ]]; then export METHODS="dense reprune"; else export METHODS=reprune; fi
exec "$(dirname "$0")/gpu_paper.sh" "$@"
