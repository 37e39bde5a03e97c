"""The markdown table of a bench.json: mean ± sd over seeds per method, and the differences beyond the spread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fmt = Callable[[float], str]


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def pct1(x: float) -> str:
    return f"{100 * x:.1f}%"


def ratio(x: float) -> str:
    return f"{x:.2f}"


def seconds(x: float) -> str:
    return f"{1000 * x:.1f}ms" if x < 1 else f"{x:.2f}s"


def si(value: float) -> str:
    """3 significant digits with an SI prefix: 40813184 -> 40.8M."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}"
    return f"{value:.3g}"


def mean_sd(stats: dict[str, Any], fmt: Fmt, sd_fmt: Fmt | None = None) -> str:
    if stats["mean"] is None:
        return "-"
    text = fmt(stats["mean"])
    if stats["sd"] is not None:
        text += f" ± {(sd_fmt or fmt)(stats['sd'])}"
    return text


def _pp(x: float) -> str:
    return f"{100 * x:.2f}"


def _pp1(x: float) -> str:
    return f"{100 * x:.1f}"


def _mark(bench: dict[str, Any], label: str, metric: str, b: str) -> str:
    for c in bench["comparisons"]:
        if c["metric"] == metric and {c["a"], c["b"]} == {label, b} and c["exceeds"]:
            return " *"
    return ""


def _delta(bench: dict[str, Any], row: dict[str, Any], ref: dict[str, Any]) -> str:
    a, b = row["stats"]["test_accuracy"]["mean"], ref["stats"]["test_accuracy"]["mean"]
    if row is ref or a is None or b is None:
        return "-"
    return f"{round(100 * (a - b), 2) + 0.0:+.2f} pp{_mark(bench, row['label'], 'test_accuracy', ref['label'])}"


def _budget(row: dict[str, Any]) -> str:
    keys = row["budget_keys"]
    return ", ".join(f"{k}={row['params'][k]}" for k in keys) if keys else "own"


def _sparse_cells(row: dict[str, Any]) -> list[str]:
    """Weight density and R_s; "1" for a row without weight masks (every weight active)."""
    s = row["stats"]
    if s["weight_density"]["mean"] is None:
        return ["1", "1"] if s["test_accuracy"]["mean"] is not None else ["-", "-"]
    return [mean_sd(s["weight_density"], lambda x: f"{x:.3f}"), mean_sd(s["itop_rate"], lambda x: f"{x:.3f}")]


def markdown_table(bench: dict[str, Any]) -> str:
    rows = bench["methods"]
    ref_label = bench["reference"]
    ref = next(r for r in rows if r["label"] == ref_label)
    sparse = any(r["stats"]["weight_density"]["mean"] is not None for r in rows)  # columns only when some row has
    lines = [
        f"| method | budget | seeds | test acc | acc vs {ref_label} | MACs (reduction) | params reduction "
        + ("| weight density | R_s " if sparse else "")
        + f"| train FLOPs vs {ref_label} | train time vs {ref_label} | s/epoch, final net "
        f"| final-net epoch vs {ref_label} |",
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if sparse else "") + "---:|---:|---:|---:|",
    ]
    for row in rows:
        s, label = row["stats"], row["label"]
        macs = "-" if s["macs"]["mean"] is None else (
            f"{si(s['macs']['mean'])} ({mean_sd(s['macs_reduction'], pct1, _pp1)})")
        cells = [
            label if label == row["method"] else f"{label} ({row['method']})", _budget(row),
            str(s["test_accuracy"]["n"]), mean_sd(s["test_accuracy"], pct, _pp), _delta(bench, row, ref), macs,
            mean_sd(s["params_reduction"], pct1, _pp1), *(_sparse_cells(row) if sparse else []),
            mean_sd(s["train_flops_ratio"], ratio) + _mark(bench, label, "train_flops_ratio", ref_label),
            mean_sd(s["train_time_ratio"], ratio) + _mark(bench, label, "train_time_ratio", ref_label),
            mean_sd(s["final_epoch_s"], seconds),
            mean_sd(s["final_epoch_ratio"], ratio) + _mark(bench, label, "final_epoch_ratio", ref_label),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"mean ± sample sd over seeds (sd in percentage points for percentages). `*`: the difference "
                  f"from {ref_label} is larger than the spread ({bench['spread_rule']}). `budget`: the suite's "
                  f"budget as given to the method; `own`: the method's own parameters set how much it prunes."
                  + (" Weight density and R_s (fraction of weights ever active) for weight-sparse methods; "
                     "their train FLOPs count the sparse network (RigL's cost model), their time is measured "
                     "(masked dense kernels)." if sparse else "")]
    lines += ["", *pairwise_lines(bench)]
    if bench["missing"]:
        lines += ["", f"Not finished (left out of the figures): {', '.join(bench['missing'])}."]
    return "\n".join(lines) + "\n"


def pairwise_lines(bench: dict[str, Any]) -> list[str]:
    """Test-accuracy difference of every pair (row minus column, percentage points), `*` beyond the spread."""
    pairs = {(c["a"], c["b"]): c for c in bench["comparisons"] if c["metric"] == "test_accuracy"}
    if not any(c["exceeds"] is not None for c in pairs.values()):
        return ["Accuracy differences against the spread: need at least 2 finished seeds per method."]
    labels = [row["label"] for row in bench["methods"]]
    lines = ["| acc difference (row - column) | " + " | ".join(labels[1:]) + " |",
             "|---|" + "---:|" * (len(labels) - 1)]
    for i, a in enumerate(labels[:-1]):
        cells = []
        for j, b in enumerate(labels[1:], start=1):
            c = pairs.get((a, b))
            if j <= i or c is None or c["difference"] is None:
                cells.append("")
            else:
                cells.append(f"{round(100 * c['difference'], 2) + 0.0:+.2f}{' *' if c['exceeds'] else ''}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    beyond = sum(1 for c in pairs.values() if c["exceeds"])
    compared = sum(1 for c in pairs.values() if c["exceeds"] is not None)
    lines += ["", f"{beyond} of {compared} pairs differ in test accuracy by more than the spread (`*`)."]
    return lines
