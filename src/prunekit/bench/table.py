"""The markdown table of a bench.json: mean ± sd over seeds per method, and the differences beyond the spread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fmt = Callable[[float], str]


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def ratio(x: float) -> str:
    return f"{x:.2f}x"


def seconds(x: float) -> str:
    return f"{x:.2f}s" if x < 10 else f"{x:.1f}s"


def mean_sd(stats: dict[str, Any], fmt: Fmt, sd_fmt: Fmt | None = None) -> str:
    if stats["mean"] is None:
        return "-"
    text = fmt(stats["mean"])
    if stats["sd"] is not None:
        text += f" ± {(sd_fmt or fmt)(stats['sd'])}"
    return text


def _pp(x: float) -> str:
    return f"{100 * x:.2f}"


def _mark(bench: dict[str, Any], label: str, metric: str, b: str) -> str:
    for c in bench["comparisons"]:
        if c["metric"] == metric and {c["a"], c["b"]} == {label, b} and c["exceeds"]:
            return " *"
    return ""


def _delta(bench: dict[str, Any], row: dict[str, Any], ref: dict[str, Any]) -> str:
    a, b = row["stats"]["test_accuracy"]["mean"], ref["stats"]["test_accuracy"]["mean"]
    if row is ref or a is None or b is None:
        return "-"
    return f"{100 * (a - b):+.2f} pp{_mark(bench, row['label'], 'test_accuracy', ref['label'])}"


def _budget(row: dict[str, Any]) -> str:
    keys = row["budget_keys"]
    return ", ".join(f"{k}={row['params'][k]}" for k in keys) if keys else "own"


def markdown_table(bench: dict[str, Any]) -> str:
    rows = bench["methods"]
    ref_label = bench["reference"]
    ref = next(r for r in rows if r["label"] == ref_label)
    lines = [
        f"| method | budget | seeds | test acc | acc vs {ref_label} | MACs (reduction) | params reduction "
        f"| train FLOPs vs {ref_label} | train time vs {ref_label} | s/epoch, final net "
        f"| final-net epoch vs {ref_label} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s, label = row["stats"], row["label"]
        macs = "-" if s["macs"]["mean"] is None else (
            f"{s['macs']['mean'] / 1e6:.3g}M ({mean_sd(s['macs_reduction'], pct, _pp)})")
        cells = [
            label if label == row["method"] else f"{label} ({row['method']})", _budget(row),
            str(s["test_accuracy"]["n"]), mean_sd(s["test_accuracy"], pct, _pp), _delta(bench, row, ref), macs,
            mean_sd(s["params_reduction"], pct, _pp),
            mean_sd(s["train_flops_ratio"], ratio) + _mark(bench, label, "train_flops_ratio", ref_label),
            mean_sd(s["train_time_ratio"], ratio) + _mark(bench, label, "train_time_ratio", ref_label),
            mean_sd(s["final_epoch_s"], seconds),
            mean_sd(s["final_epoch_ratio"], ratio) + _mark(bench, label, "final_epoch_ratio", ref_label),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"mean ± sample sd over seeds (sd in percentage points for percentages). `*`: the difference "
                  f"from {ref_label} is larger than the spread ({bench['spread_rule']}). `budget`: the suite's "
                  f"budget as given to the method; `own`: the method's own parameters set how much it prunes."]
    lines += ["", *pairwise_lines(bench)]
    if bench["missing"]:
        lines += ["", f"Not finished (left out of the figures): {', '.join(bench['missing'])}."]
    return "\n".join(lines) + "\n"


def pairwise_lines(bench: dict[str, Any]) -> list[str]:
    """Accuracy differences between methods that are larger than the spread."""
    pairs = [c for c in bench["comparisons"] if c["metric"] == "test_accuracy" and c["exceeds"] is not None]
    beyond = [c for c in pairs if c["exceeds"]]
    if not pairs:
        return ["Accuracy differences against the spread: need at least 2 finished seeds per method."]
    if not beyond:
        return [f"No accuracy difference between two methods exceeds the spread ({len(pairs)} pairs compared)."]
    text = "; ".join(f"{c['a']} vs {c['b']} {100 * c['difference']:+.2f} pp (spread {100 * c['spread']:.2f})"
                     for c in beyond)
    return [f"Accuracy differences larger than the spread ({len(beyond)} of {len(pairs)} pairs): {text}."]
