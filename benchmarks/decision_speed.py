"""How long does one REPrune decision (Alg. 1 on every internal conv) take on ResNet-50, before and after the fast path?

"old" is Alg. 1 as computed before commit 636af27: public `scipy.cluster.hierarchy.linkage(method="ward")` and
`fcluster(criterion="distance")` per input channel, and the greedy solver that compares the whole (filters x
channels) element matrix at every pick (copied below verbatim). "new" is `prunekit.criteria.reprune.reprune_keep`.
Both run on the same weights (ResNet-50, prunekit's default init, seed 0) for each of the 32 internal convs
(conv1 and conv2 of the 16 bottlenecks), at one layer sparsity, one thread, interleaved (the order alternates each
repeat), and the selections (pick order, cut height, clusters per channel) are checked equal. Reported: per-layer
and whole-decision medians over the repeats with the min-max spread (the machine may be shared).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decision_speed.py [--repeats 3] [--sparsity 0.5] [--layers layer4]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402

from prunekit.criteria.reprune import keep_count, reprune_keep  # noqa: E402
from prunekit.models import create_model  # noqa: E402


def greedy_before(labels: np.ndarray, n_pick: int, rng: np.random.Generator) -> list[int]:
    """The greedy max-coverage solver before the CSR update (verbatim but for the returned value)."""
    n_items, n_channels = labels.shape
    element = np.empty((n_items, n_channels), dtype=np.int64)
    total = 0
    for j in range(n_channels):
        _, inverse = np.unique(labels[:, j], return_inverse=True)
        element[:, j] = inverse.reshape(-1) + total
        total += int(inverse.max()) + 1 if n_items else 0
    covered = np.zeros(total, dtype=bool)
    gain = np.full(n_items, n_channels, dtype=np.int64)
    available = np.ones(n_items, dtype=bool)
    order: list[int] = []
    for _ in range(n_pick):
        best = gain[available].max()
        candidates = np.flatnonzero(available & (gain == best))
        pick = int(candidates[rng.integers(len(candidates))])
        order.append(pick)
        available[pick] = False
        fresh_channels = np.flatnonzero(~covered[element[pick]])
        if fresh_channels.size:
            fresh = element[pick, fresh_channels]
            covered[fresh] = True
            gain -= (element[:, fresh_channels] == fresh).sum(axis=1)
    return order


def keep_before(weight: torch.Tensor, n_keep: int, seed: int) -> tuple[list[int], float, list[int]]:
    """`reprune_keep` (all filters active) as it was: (pick order, cut height, clusters per channel)."""
    n = weight.shape[0]
    kernels = weight.detach().to(torch.float64).reshape(n, weight.shape[1], -1).permute(1, 0, 2).numpy()
    dendrograms = [linkage(points, method="ward") for points in kernels]
    height = max(float(z[n - n_keep - 1, 2]) for z in dendrograms)
    labels = np.stack([fcluster(z, t=height, criterion="distance") for z in dendrograms], axis=1)
    order = greedy_before(labels, n_keep, np.random.default_rng(seed))
    return order, height, [int(c) for c in labels.max(axis=0)]


def internal_convs(layer_filter: str) -> list[tuple[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = create_model("resnet50")
    convs = [(f"{name}.{conv}", getattr(block, conv).weight.detach().clone())
             for name, block in model.named_modules() if name.count(".") == 1 and hasattr(block, "conv3")
             for conv in ("conv1", "conv2")]
    return [(name, w) for name, w in convs if layer_filter in name]


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the whole decision")
    parser.add_argument("--sparsity", type=float, default=0.5, help="layer sparsity s^l of every conv")
    parser.add_argument("--layers", default="", help="only convs whose name contains this (e.g. layer4)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes for the new path's multi-dimensional (3x3) clusterings (reprune_keep workers)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    convs = internal_convs(args.layers)
    times: dict[str, dict[str, list[float]]] = {name: {"old": [], "new": []} for name, _ in convs}
    for repeat in range(args.repeats):
        for name, weight in convs:
            n_keep = keep_count(weight.shape[0], args.sparsity)
            runs = {}
            for path in (("old", "new") if repeat % 2 == 0 else ("new", "old")):
                if path == "old":
                    runs[path] = timed(keep_before, weight, n_keep, repeat)
                else:
                    runs[path] = timed(reprune_keep, weight, n_keep, repeat, None, args.workers)
                times[name][path].append(runs[path][0])
            new = runs["new"][1]
            if (new.pick_order, new.cut_height, new.clusters_per_channel) != runs["old"][1]:
                raise SystemExit(f"{name}: selections differ between old and new")
        print(f"repeat {repeat + 1}/{args.repeats} done, selections equal", flush=True)

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):7.3f} [{min(values):.3f}-{max(values):.3f}]"

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, 1 thread, "
          f"new path with {args.workers} worker process(es); "
          f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}")
    print(f"{'conv':22} {'shape':18} {'old s (median [min-max])':>28} {'new s':>24} {'speed-up':>8}")
    for name, weight in convs:
        t = times[name]
        print(f"{name:22} {str(tuple(weight.shape)):18} {spread(t['old']):>28} {spread(t['new']):>24} "
              f"{statistics.median(t['old']) / statistics.median(t['new']):8.2f}")
    whole = {path: [sum(times[n][path][r] for n, _ in convs) for r in range(args.repeats)] for path in ("old", "new")}
    speedup = statistics.median(whole["old"]) / statistics.median(whole["new"])
    print(f"{'whole decision':41} {spread(whole['old']):>28} {spread(whole['new']):>24} {speedup:8.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"sparsity": args.sparsity, "repeats": args.repeats, "workers": args.workers,
                       "per_layer": times, "whole": whole}, handle)


if __name__ == "__main__":
    main()
