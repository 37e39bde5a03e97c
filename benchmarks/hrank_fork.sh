#!/bin/bash
# HRank's first 9 epochs are the dense trajectory (no method activity before its decision after epoch 10), the
# same as the BN-scale one-shot run's (same seed, same data order): copy that run's epoch-9 checkpoint, put
# HRank's resolved config in, and resume it once the PruneTrain run has finished (two runs at a time).
# The record of what was run on 2026-11-21 (paths are that machine's; see benchmarks/RESULTS.md section 2).
set -e
cd /work/main && source .venv/bin/activate
B=/work/bench/bn-resnet20; H=/work/bench/hrank-resnet20
until [ -f $B/checkpoints/latest.json ] && grep -q '"epoch": 9' $B/checkpoints/latest.json; do sleep 3; done
mkdir -p $H/checkpoints
cp -r $B/checkpoints/epoch-0009 $H/checkpoints/
cp $B/checkpoints/latest.json $H/checkpoints/
python - <<'PY'
import json
from prunekit import io
from prunekit.config import load_config
H = "/work/bench/hrank-resnet20"
cfg = load_config("configs/hrank-cifar10-resnet20.yaml",
                  ["train.threads=1", "baseline_run=/work/bench/dense-resnet20"])
io.write_yaml(f"{H}/config.yaml", cfg.to_dict())
records = [r for r in io.read_jsonl("/work/bench/bn-resnet20/metrics.jsonl") if r.get("epoch", -1) <= 8]
assert all(r["kind"] == "epoch" for r in records) and len(records) == 9, records
io.write_text(f"{H}/metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
PY
echo "$(date -Is) forked hrank from bn epoch 9" >> /work/bench/lanes.log
while pgrep -f "out /work/bench/prunetrain-resnet20" > /dev/null; do sleep 5; done
echo "$(date -Is) start hrank (resume)" >> /work/bench/lanes.log
rc=0; prunekit train --resume $H > /work/bench/hrank-resnet20.log 2>&1 || rc=$?
echo "$(date -Is) end hrank rc=$rc" >> /work/bench/lanes.log
