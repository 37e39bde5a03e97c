"""`prunekit measure --model NAME`: parameters, MACs, FLOPs and latency."""

from __future__ import annotations

import argparse
import json
import sys

from prunekit.cli.common import build_model, model_args, positive_int


def run(args: argparse.Namespace) -> int:
    from prunekit.measure import count_macs, count_params, measure_latency

    model, shape, torch = build_model(args.model, args.input, args.num_classes)
    model.eval()
    x = torch.randn(args.batch_size, *shape)
    macs = count_macs(model, x)
    result = {"model": args.model, "input": list(shape), "params": count_params(model), "macs": macs,
              "flops": 2 * macs}
    if not args.no_latency:
        lat = measure_latency(model, x, threads=args.threads, channels_last=args.channels_last)
        result.update({"latency_ms": lat.median_ms, "latency_p10_ms": lat.p10_ms, "latency_p90_ms": lat.p90_ms,
                       "batch_size": lat.batch_size, "threads": lat.threads, "channels_last": lat.channels_last})
        if lat.noisy:
            print(f"warning: latency varied {lat.spread:.1f}x between calls (p10 {lat.p10_ms:.2f} ms, p90 "
                  f"{lat.p90_ms:.2f} ms); other processes are probably using the CPU, so the median is not "
                  "reliable", file=sys.stderr)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value:,}" if isinstance(value, int) else f"{key:>16}: {value}")
        print("(MACs per sample of one forward pass; FLOPs = 2 x MACs)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    measure = sub.add_parser("measure", help="parameters, MACs, FLOPs and latency of a model")
    model_args(measure)
    measure.add_argument("--batch-size", type=positive_int, default=1)
    measure.add_argument("--threads", type=positive_int)
    measure.add_argument("--channels-last", action="store_true")
    measure.add_argument("--no-latency", action="store_true")
    measure.set_defaults(func=run)
