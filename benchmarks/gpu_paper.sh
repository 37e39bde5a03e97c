#!/usr/bin/env bash
# The ResNet-56 / CIFAR-10 paper presets side by side on one GPU (issue 15): dense, REPrune and CHEX, 160 epochs at
# batch 256 (configs/reprune-cifar10-resnet56.yaml; dense is that preset with method dense;
# configs/chex-cifar10-resnet56.yaml), as concurrent processes, each with the dataset resident on the GPU
# (data.on_device), bf16 autocast (train.amp) and channels_last (in the presets).
#
#   benchmarks/gpu_paper.sh [RESULTS_DIR]        default benchmarks/results/gpu-paper-<UTC date-time>
#
# Environment (all optional):
#   CIFAR10=PATH      the CIFAR-10 archive or directory, a path inside the checkout (the GPU machine has no
#                     ../shared): the official python batches or the JPEG image-folder archive (needs Pillow);
#                     default data/cifar10-jpeg.tar.gz. Checked before anything starts.
#   DEVICE=cuda       cpu for a smoke run (then one thread per process)
#   METHODS="dense reprune chex"   which runs (dense first in the table; savings are against it when it ran)
#   EPOCHS=N          train.epochs for every run; T_prune is scaled to 60% of it (96/160, at least 1)
#   EXTRA="--set k=v ..."          overrides for every run; method.* ones go to the pruned runs only
#   AMP=1 ON_DEVICE=1 COMPILE=0 COMPILE_MODE=default    the GPU-path switches (train.amp, data.on_device,
#                     train.compile / train.compile_mode); DETERMINISTIC=0 lets cuDNN autotune (train.deterministic)
#   THREADS=N         torch threads per process (default 4 on a GPU, 1 on the CPU)
#   CHECKPOINT_EVERY=20   epochs between checkpoints (each writes model, optimizer and supernet; the last is kept)
#   PYTHON=PATH       default .venv/bin/python if present, else python3; prunekit runs from src/ (PYTHONPATH)
#   WHEELS=DIR        wheels put on PYTHONPATH for a python that lacks them (torch_pruning, PyYAML, Pillow): those
#                     for this interpreter's version or pure ones unpacked under DIR/.unpacked, the others as zips
#
# The same command with the same RESULTS_DIR again skips finished runs and resumes unfinished ones from their last
# checkpoint (a run cut off by a time limit; its cut segment's wall time is lost, the Trainer's train time is not).
# Writes under RESULTS_DIR: env.txt (command, versions, device), <method>/ (each run directory: config.yaml,
# metrics.jsonl, summary.json, checkpoints/, model/), logs/<method>.log, <method>.wall (start/end seconds),
# summary.md and summary.json (accuracy, MACs reduction, epochs/minute, minutes; the paper's REPrune row beside).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${CIFAR10:-data/cifar10-jpeg.tar.gz}
DEVICE=${DEVICE:-cuda}
METHODS=${METHODS:-dense reprune chex}
ROOT=${1:-benchmarks/results/gpu-paper-$(date -u +%Y%m%d-%H%M%S)}
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "${WHEELS:-}" ]]; then  # wheels for this interpreter (or pure ones) unpacked, the others as zips last
    WHEEL_PATH=$("$PY" - "$WHEELS" <<'PY'
import sys, zipfile
from pathlib import Path
root, tag = Path(sys.argv[1]).resolve(), f"cp{sys.version_info[0]}{sys.version_info[1]}"
first, last = [], []
for wheel in sorted(root.glob("*.whl")):
    parts = wheel.stem.split("-")
    if parts[-3] == tag or parts[-2:] == ["none", "any"]:
        target = root / ".unpacked" / wheel.stem
        if not target.is_dir():
            zipfile.ZipFile(wheel).extractall(target)
        first.append(str(target))
    else:  # a package with a pure-Python fallback (PyYAML) still imports from the zip
        last.append(str(wheel))
print(":".join(first + last))
PY
)
    PYTHONPATH="$PYTHONPATH:$WHEEL_PATH"
fi

fail() { echo "gpu_paper.sh: $*" >&2; exit 2; }
[[ -e "$DATA" ]] || fail "no CIFAR-10 at '$DATA': copy the archive into the checkout (e.g. data/cifar10-jpeg.tar.gz) or set CIFAR10=PATH"
for method in $METHODS; do [[ $method =~ ^(dense|reprune|chex)$ ]] || fail "METHODS: unknown run '$method' (dense, reprune, chex)"; done

if [[ "$DEVICE" == cpu ]]; then THREADS=${THREADS:-1}; else THREADS=${THREADS:-4}; fi
flag() { [[ $1 == 1 ]] && echo true || echo false; }
COMMON=(--set "data.path=$DATA" --set "train.device=$DEVICE" --set "train.threads=$THREADS"
        --set "train.amp=$(flag "${AMP:-1}")" --set "data.on_device=$(flag "${ON_DEVICE:-1}")"
        --set "train.compile=$(flag "${COMPILE:-0}")" --set "train.compile_mode=${COMPILE_MODE:-default}"
        --set train.progress=never --set "train.checkpoint_every=${CHECKPOINT_EVERY:-20}")
if [[ "$DEVICE" != cpu && "${DETERMINISTIC:-0}" != 1 ]]; then COMMON+=(--set train.deterministic=false); fi
PRUNE=()
if [[ -n "${EPOCHS:-}" ]]; then
    COMMON+=(--set "train.epochs=$EPOCHS")
    PRUNE+=(--set "method.params.t_prune=$(( EPOCHS * 3 / 5 > 0 ? EPOCHS * 3 / 5 : 1 ))")
fi
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
for ((i = 0; i < ${#EXTRA_ARGS[@]}; i++)); do  # method.* overrides to the pruned runs, the rest to all
    if [[ "${EXTRA_ARGS[i]}" == --set && "${EXTRA_ARGS[i + 1]:-}" == method.* ]]; then PRUNE+=(--set "${EXTRA_ARGS[i + 1]}"); ((i += 1))
    else COMMON+=("${EXTRA_ARGS[i]}")
    fi
done

# One process checks the python, the device and the overrides, and reads the data once (an image-folder archive
# is decoded and cached), so the concurrent runs neither fail late nor all decode it.
VERSIONS=$("$PY" - "$DEVICE" configs/reprune-cifar10-resnet56.yaml "${COMMON[@]}" <<'PY'
import importlib.util, sys
missing = [m for m in ("torch", "numpy", "scipy", "yaml", "safetensors", "torch_pruning", "PIL")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing modules: {', '.join(missing)} (their wheels can come through WHEELS=DIR)")
import torch
from prunekit.config import load_config
from prunekit.data import load_data
from prunekit.errors import UserError
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit("DEVICE is cuda but torch sees no CUDA device (DEVICE=cpu for a smoke run)")
try:
    load_data(load_config(sys.argv[2], [v for k, v in zip(sys.argv[3::2], sys.argv[4::2]) if k == "--set"]).data)
except UserError as exc:
    sys.exit(f"prunekit: error: {exc}")
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {name}, python {sys.version.split()[0]}")
PY
) || fail "cannot run with this python ($PY), device or data (see above)"

mkdir -p "$ROOT/logs"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "command: METHODS='$METHODS' DEVICE=$DEVICE EPOCHS=${EPOCHS:-} EXTRA='${EXTRA:-}' $0 $*"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "overrides: ${COMMON[*]}  pruned runs also: ${PRUNE[*]:-}"
    echo "$VERSIONS"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
} > "$ROOT/env.txt"

preset() { case $1 in chex) echo configs/chex-cifar10-resnet56.yaml ;; *) echo configs/reprune-cifar10-resnet56.yaml ;; esac; }
launch() {  # launch METHOD: one training process in the background; each finished segment's wall time in METHOD.wall
    local method=$1 run=$ROOT/$1 args=("${COMMON[@]}")
    [[ -f $run/summary.json ]] && return  # finished in an earlier call
    if [[ -f $run/config.yaml ]]; then  # started in an earlier call: continue it (only execution keys may change)
        args=(--resume "$run" --set "train.device=$DEVICE" --set "train.threads=$THREADS" --set train.progress=never)
    elif [[ $method == dense ]]; then
        args=("$(preset "$method")" --out "$run" "${args[@]}" --set method.name=dense --set "method.params={}"
              --set name=dense-cifar10-resnet56)
    else args=("$(preset "$method")" --out "$run" "${args[@]}" "${PRUNE[@]}")
    fi
    (
        start=$(date +%s.%N)
        "$PY" -m prunekit.cli train "${args[@]}" >> "$ROOT/logs/$method.log" 2>&1
        echo "$start $(date +%s.%N)" >> "$ROOT/$method.wall"
    ) &
    PIDS+=($!)
}
PIDS=()
for method in $METHODS; do launch "$method"; done
status=0
for pid in "${PIDS[@]}"; do wait "$pid" || status=1; done
for method in $METHODS; do [[ -f "$ROOT/$method/summary.json" ]] || { echo "run $method failed:" >&2; tail -5 "$ROOT/logs/$method.log" >&2; status=1; }; done

"$PY" - "$ROOT" $METHODS <<'PY'
import json, sys
from pathlib import Path

root, methods = Path(sys.argv[1]), sys.argv[2:]
PAPER = {"reprune": (93.40, 60.38)}  # REPrune (Park et al., AAAI 2024) Table 2, ResNet-56: top-1 %, FLOPs reduction %
rows, dense = [], None
for m in methods:
    path = root / m / "summary.json"
    if not path.is_file():
        continue
    s = json.loads(path.read_text())
    segments = [line.split() for line in (root / f"{m}.wall").read_text().splitlines()]
    wall_s = sum(float(end) - float(start) for start, end in (seg for seg in segments if len(seg) == 2))
    row = {"run": m, "method": s["method"], "epochs": s["epochs"], "top1": 100 * s["test_accuracy"],
           "macs_m": s["macs"] / 1e6, "macs_reduction": 100 * (1 - s["macs"] / s["dense_macs"]),
           "params_m": s["params"] / 1e6, "train_min": s["train_time_s"] / 60, "wall_min": wall_s / 60,
           "train_flops": s["train_flops"], "train_time_s": s["train_time_s"]}
    row["epochs_per_min"] = s["epochs"] / row["wall_min"] if wall_s > 0 else None
    row["train_epochs_per_min"] = s["epochs"] / row["train_min"]
    row["paper_top1"], row["paper_flops_reduction"] = PAPER.get(m, (None, None))
    if m == "dense":
        dense = row
    rows.append(row)
for row in rows:
    if dense is not None and row is not dense:
        row["train_flops_saved"] = 100 * (1 - row["train_flops"] / dense["train_flops"])
        row["train_time_saved"] = 100 * (1 - row["train_time_s"] / dense["train_time_s"])


def cell(value, fmt):
    return "-" if value is None else format(value, fmt)


head = ("| run | epochs | top-1 % | MACs (M) | MACs reduction % | params (M) | epochs/min (wall) | epochs/min (train) "
        "| train min | wall min "
        "| train FLOPs saved % | train time saved % | paper top-1 % | paper FLOPs reduction % |")
lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
for r in rows:
    lines.append(f"| {r['run']} | {r['epochs']} | {r['top1']:.2f} | {r['macs_m']:.2f} | {r['macs_reduction']:.2f} | "
                 f"{r['params_m']:.3f} | {cell(r['epochs_per_min'], '.2f')} | {r['train_epochs_per_min']:.2f} | "
                 f"{r['train_min']:.2f} | {r['wall_min']:.2f} | "
                 f"{cell(r.get('train_flops_saved'), '.1f')} | {cell(r.get('train_time_saved'), '.1f')} | "
                 f"{cell(r['paper_top1'], '.2f')} | {cell(r['paper_flops_reduction'], '.2f')} |")
total = max((r["wall_min"] for r in rows), default=0.0)
lines += ["", f"Runs concurrent on one device; total {total:.2f} minutes (the longest run's wall time). "
          "epochs/min (wall) counts each run's own wall time (set-up and evaluation included; segments cut off by a "
          "time limit are not counted); train min and epochs/min (train) use the Trainer's epoch time (evaluation "
          "excluded). Environment: env.txt."]
(root / "summary.md").write_text("\n".join(lines) + "\n")
(root / "summary.json").write_text(json.dumps({"rows": rows, "total_minutes": total}, indent=1) + "\n")
print("\n".join(lines))
PY
exit $status
