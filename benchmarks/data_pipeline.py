"""Data pipeline timings on this machine: CIFAR-10 (JPEG) decode, cache-hit load, and augmented batches.

    python benchmarks/data_pipeline.py [--archive ../shared/data/cifar10-jpeg.tar.gz] [--threads 1]

The decode is measured with an empty temporary cache directory (so it really decodes); the second load reads
the cache that the first wrote. Batch time: median over 50 batches of 128 with random crop + flip + normalise.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from prunekit.config import DataConfig
from prunekit.data import BatchLoader, load_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_archive = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
    parser.add_argument("--archive", default=str(default_archive.resolve()))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the batch timing")
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as cache_dir:
        cfg = DataConfig(name="cifar10", path=args.archive, cache_dir=cache_dir)
        start = time.perf_counter()
        splits = load_data(cfg)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        again = load_data(cfg)
        cached_s = time.perf_counter() - start
        assert torch.equal(again.train.images, splits.train.images)

    loader = BatchLoader(splits.train, 128, mean=splits.mean, std=splits.std, shuffle=True, augment=True)
    times = []
    batches = loader.iterate(epoch=0)
    for _ in range(args.batches + 1):
        start = time.perf_counter()
        next(batches)
        times.append(time.perf_counter() - start)
    batch_ms = statistics.median(times[1:]) * 1e3  # the first call also draws the epoch's permutation

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"archive: {args.archive}")
    print(f"train {len(splits.train)} / test {len(splits.test)} images, shape {splits.shape}")
    print(f"train mean {tuple(round(m, 4) for m in splits.mean)}, std {tuple(round(s, 4) for s in splits.std)}")
    print(f"decode (cold cache): {decode_s:.2f} s")
    print(f"load (cache hit):    {cached_s:.2f} s")
    print(f"BatchLoader, batch 128, crop+flip+normalise, median of {args.batches}: {batch_ms:.2f} ms/batch "
          f"(first batch incl. epoch draws: {times[0] * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
