"""How close are a checkpoint's channels to PruneTrain's sparsity threshold?

For every conv weight in a run's checkpoint: the smallest per-filter (output channel) and per-input-channel
max |w|, and how many filters fall below 1e-2 and 1e-3. PruneTrain removes a channel only when every weight of it
is below its threshold (1e-4) on both sides, so this shows how far a run is from its first removal.

    python benchmarks/channel_magnitudes.py /work/bench/<run>/checkpoints/step-<N>   # one checkpoint directory
"""

from __future__ import annotations

import sys
from pathlib import Path

from prunekit.io import load_tensors


def main(checkpoint: str) -> None:
    tensors = load_tensors(Path(checkpoint) / "model.safetensors")
    print("| conv weight | min filter max abs(w) | filters < 1e-2 | filters < 1e-3 | min input-channel max abs(w) |")
    print("|---|---:|---:|---:|---:|")
    for name, weight in tensors.items():
        if weight.dim() != 4:
            continue
        per_filter = weight.abs().amax(dim=(1, 2, 3))
        per_input = weight.abs().amax(dim=(0, 2, 3))
        below_2, below_3 = int((per_filter < 1e-2).sum()), int((per_filter < 1e-3).sum())
        print(f"| {name} | {per_filter.min():.1e} | {below_2} | {below_3} | {per_input.min():.1e} |")


if __name__ == "__main__":
    main(sys.argv[1])
