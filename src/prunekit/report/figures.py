"""The report's figures, drawn with matplotlib's Agg canvas (no display, no global backend switch).

Each figure function takes the runs of one subject (a single run, or every seed of one bench row) or a bench and
returns a Figure, or None when the data it needs is absent. `RUN_FIGURES` and `BENCH_FIGURES` list them in the
order the report shows them; adding a figure means adding a function and one line there.
"""

from __future__ import annotations

import io as _io
import math
from collections.abc import Callable
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter
from PIL import Image

from prunekit.report.load import BenchData, RunData

DPI = 90
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
          "#bcbd22"]


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG: Agg's pixels quantized to a 256-colour palette, which makes these line plots and heat
    maps 2-3 times smaller than matplotlib's own PNG with no visible change."""
    fig.canvas.draw()
    image = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba()).convert("RGB")
    buffer = _io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _seed_label(run: RunData, runs: list[RunData]) -> str:
    return f"seed {run.seed}" if run.seed is not None else (run.name if len(runs) > 1 else "")


# ---------------------------------------------------------------------------------------------- one subject
def training_curves(runs: list[RunData]) -> Figure | None:
    """Loss, accuracy, learning rate and MACs per epoch; dotted lines where a decision changed the network."""
    runs = [r for r in runs if r.kind("epoch")]
    if not runs:
        return None
    fig = new_figure(11, 2.9)
    axes = fig.subplots(1, 4)
    for i, run in enumerate(runs):
        color, label = COLORS[i % len(COLORS)], _seed_label(run, runs)
        epochs = run.kind("epoch")
        x = [r["epoch"] + 1 for r in epochs]
        axes[0].plot(x, [r["train_loss"] for r in epochs], "--", color=color, alpha=0.8)
        axes[0].plot(x, [r["test_loss"] for r in epochs], "-", color=color, label=label or None)
        axes[1].plot(x, [100 * r["train_accuracy"] for r in epochs], "--", color=color, alpha=0.8)
        axes[1].plot(x, [100 * r["test_accuracy"] for r in epochs], "-", color=color, label=label or None)
        if epochs and "val_accuracy" in epochs[0]:
            axes[1].plot(x, [100 * r["val_accuracy"] for r in epochs], ":", color=color)
        axes[2].plot(x, [r["lr"] for r in epochs], color=color)
        axes[3].plot(x, [r["macs"] / 1e6 for r in epochs], color=color, drawstyle="steps-mid")
    for d in runs[0].kind("decision"):
        for ax in axes:
            ax.axvline(d["epoch"] + 1.5, color="#999999", linestyle=":", linewidth=0.8)
    titles = ["loss (dashed: train, solid: test)", "accuracy % (dashed: train)", "learning rate",
              "MACs per sample (M)"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if len(runs) > 1:
        axes[1].legend(fontsize=7)
    return fig


def width_matrix(run: RunData) -> tuple[list[str], list[list[float]], dict[str, int]] | None:
    """Channels kept per group at the end of every epoch, from the decision records. Before the first decision
    the network is the dense one: its width is shown where a decision's `removed` gives it (kept + removed),
    NaN where no record does. A decision after epoch e takes effect in epoch e + 1; a step-level decision in
    epoch e shows from epoch e (the width at its end)."""
    decisions = [d for d in run.kind("decision") if isinstance(d.get("kept"), dict)]
    n = len(run.kind("epoch"))
    if not decisions or not n:
        return None
    groups: list[str] = []
    full: dict[str, int] = {}
    dense: dict[str, int] = {}  # widths known exactly from kept + removed
    for d in decisions:
        removed = d.get("removed") if isinstance(d.get("removed"), dict) else {}
        for g, k in d["kept"].items():
            if g not in full:
                groups.append(g)
            full[g] = max(full.get(g, 0), k + removed.get(g, 0))
            if g in removed:
                dense[g] = max(dense.get(g, 0), k + removed[g])
    effective = sorted(((d["epoch"] if d.get("at") == "step" else d["epoch"] + 1), i) for i, d in
                       enumerate(decisions))
    matrix = [[math.nan] * n for _ in groups]
    current: dict[str, int] = dict(dense)
    pointer = 0
    for e in range(n):
        while pointer < len(effective) and effective[pointer][0] <= e:
            current.update(decisions[effective[pointer][1]]["kept"])
            pointer += 1
        for row, g in enumerate(groups):
            matrix[row][e] = current.get(g, math.nan)
    return groups, matrix, full


def channel_widths(runs: list[RunData]) -> Figure | None:
    """Heat map of the channels kept per group over training (the first run of the subject)."""
    run = next((r for r in runs if width_matrix(r) is not None), None)
    if run is None:
        return None
    result = width_matrix(run)
    assert result is not None
    groups, matrix, full = result
    n = len(matrix[0])
    fraction = [[v / full[g] if full[g] else math.nan for v in row] for g, row in zip(groups, matrix, strict=True)]
    fig = new_figure(min(11, max(6.5, 3 + 0.28 * n)), 1.5 + 0.26 * len(groups))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    image = ax.imshow(fraction, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
                      extent=(0.5, n + 0.5, len(groups) - 0.5, -0.5))
    if n * len(groups) <= 700:
        for row, values in enumerate(matrix):
            for e, v in enumerate(values):
                if not math.isnan(v):
                    ax.text(e + 1, row, str(int(v)), ha="center", va="center", fontsize=5.5,
                            color="white" if fraction[row][e] < 0.6 else "black")
    ax.set_yticks(range(len(groups)), groups, fontsize=7)
    ax.set_xlabel("epoch", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="x", labelsize=7)
    seed = f", seed {run.seed}" if run.seed is not None else ""
    ax.set_title(f"channels kept per group{seed} (colour: kept / widest recorded; grey: width not "
                 f"recorded)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01).ax.tick_params(labelsize=7)
    return fig


def lottery_levels(runs: list[RunData]) -> Figure | None:
    """Test accuracy against the weights remaining, one line per retraining mode (and seed)."""
    series = [(run, run.kind("level")) for run in runs if run.kind("level")]
    if not series:
        return None
    fig = new_figure(5.5, 3.4)
    ax = fig.subplots()
    for i, (run, levels) in enumerate(series):
        for j, mode in enumerate(sorted({str(r.get("mode", "")) for r in levels})):
            rows = sorted((r for r in levels if str(r.get("mode", "")) == mode), key=lambda r: -r["density"])
            label = " ".join(p for p in (mode, _seed_label(run, runs)) if p) or None
            ax.plot([100 * r["density"] for r in rows], [100 * r["test_accuracy"] for r in rows], "o-",
                    color=COLORS[(i + j) % len(COLORS)], markersize=3, label=label)
    ax.set_xscale("log")
    ticks = sorted({round(100 * r["density"], 1) for r in series[0][1]}, reverse=True)
    ax.set_xticks(ticks[:: max(1, len(ticks) // 8)])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=7)
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)", fontsize=8)
    ax.set_ylabel("test accuracy (%)", fontsize=8)
    ax.set_title("lottery ticket: accuracy vs weights remaining", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def lmc_paths(runs: list[RunData]) -> Figure | None:
    """Error along the straight line between two trained copies (linear mode connectivity)."""
    paths = [(run, r) for run in runs for r in run.kind("lmc")]
    if not paths:
        return None
    fig = new_figure(5.5, 3.4)
    ax = fig.subplots()
    for i, (_run, r) in enumerate(paths):
        color = COLORS[i % len(COLORS)]
        name = f"k={r['step']}" if "step" in r else f"path {i + 1}"
        if "barrier_test" in r:
            name += f" (barrier {100 * r['barrier_test']:.1f} pp)"
        ax.plot(r["alphas"], [100 * e for e in r["test_error"]], "-", color=color, label=f"test, {name}")
        if "train_error" in r:
            ax.plot(r["alphas"], [100 * e for e in r["train_error"]], "--", color=color)
    ax.set_xlabel("interpolation alpha", fontsize=8)
    ax.set_ylabel("error (%) (dashed: train)", fontsize=8)
    ax.set_title("linear mode connectivity: error along the path", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def federated_rounds(runs: list[RunData]) -> Figure | None:
    """Global test accuracy against rounds and against the cumulative upload."""
    series = [(run, run.kind("round")) for run in runs if run.kind("round")]
    if not series:
        return None
    fig = new_figure(10, 3.2)
    by_round, by_bytes = fig.subplots(1, 2)
    for i, (run, rounds) in enumerate(series):
        color, label = COLORS[i % len(COLORS)], _seed_label(run, runs) or None
        rounds = sorted(rounds, key=lambda r: r["round"])
        accuracy = [100 * r["test_accuracy"] for r in rounds]
        by_round.plot([r["round"] for r in rounds], accuracy, color=color, label=label)
        if all("upload_bytes" in r for r in rounds):
            total, cumulative = 0, []
            for r in rounds:
                total += r["upload_bytes"]
                cumulative.append(total / 1e6)
            by_bytes.plot(cumulative, accuracy, color=color, label=label)
    by_round.set_xlabel("round", fontsize=8)
    by_bytes.set_xlabel("uploaded so far (MB, all clients)", fontsize=8)
    for ax, title in ((by_round, "federated: test accuracy vs rounds"), (by_bytes, "test accuracy vs upload")):
        ax.set_ylabel("test accuracy (%)", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    if len(series) > 1:
        by_round.legend(fontsize=7)
    return fig


def sparse_updates(runs: list[RunData]) -> Figure | None:
    """Density and in-time over-parameterization rate over the mask updates of dynamic sparse training."""
    series = [(run, run.kind("update")) for run in runs if run.kind("update")]
    if not series:
        return None
    fig = new_figure(10, 3.0)
    density_ax, itop_ax = fig.subplots(1, 2)
    for i, (run, updates) in enumerate(series):
        color, label = COLORS[i % len(COLORS)], _seed_label(run, runs) or None
        steps = [r["step"] for r in updates]
        density_ax.plot(steps, [r["density"] for r in updates], color=color, label=label)
        if all("itop_rate" in r for r in updates):
            itop_ax.plot(steps, [r["itop_rate"] for r in updates], color=color, label=label)
    for ax, title in ((density_ax, "density after each mask update"), (itop_ax, "R_s (weights ever active)")):
        ax.set_xlabel("step", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    return fig


RunFigure = Callable[[list[RunData]], Figure | None]
RUN_FIGURES: list[tuple[str, str, RunFigure]] = [
    ("curves", "Training curves", training_curves),
    ("widths", "Channel widths over training", channel_widths),
    ("lottery", "Lottery-ticket levels", lottery_levels),
    ("lmc", "Linear mode connectivity", lmc_paths),
    ("federated", "Federated rounds", federated_rounds),
    ("dst", "Dynamic sparse updates", sparse_updates),
]


# ---------------------------------------------------------------------------------------------- benches
def _rows_with(bench: BenchData, *keys: str) -> list[dict[str, Any]]:
    return [row for row in bench.bench["methods"] if all(row["stats"][k]["mean"] is not None for k in keys)]


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (fewer MACs, higher accuracy), by MACs."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def accuracy_front(bench: BenchData) -> Figure | None:
    """One point per method: mean test accuracy against mean MACs, error bars one sd over seeds; seeds as dots;
    the line joins the methods no other method beats on both."""
    rows = _rows_with(bench, "test_accuracy", "macs")
    if not rows:
        return None
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    points = []
    for i, row in enumerate(rows):
        s, color = row["stats"], COLORS[i % len(COLORS)]
        x, y = s["macs"]["mean"] / 1e6, 100 * s["test_accuracy"]["mean"]
        points.append((x, y))
        ax.errorbar(x, y, xerr=(s["macs"]["sd"] or 0) / 1e6, yerr=100 * (s["test_accuracy"]["sd"] or 0),
                    fmt="o", color=color, capsize=3, label=row["label"])
        seeds = [r["metrics"] for r in row["runs"] if r["metrics"]]
        ax.scatter([m["macs"] / 1e6 for m in seeds], [100 * m["test_accuracy"] for m in seeds], s=8,
                   color=color, alpha=0.4)
    front = pareto(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "-", color="#555555", linewidth=0.8,
            zorder=0)
    ax.set_xlabel("MACs per sample (M)", fontsize=8)
    ax.set_ylabel("test accuracy (%)", fontsize=8)
    ax.set_title(f"{bench.name}: accuracy vs MACs (mean ± sd over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def time_vs_flops(bench: BenchData) -> Figure | None:
    """Measured training time against training FLOPs, both as ratios to the reference (same seed)."""
    rows = _rows_with(bench, "train_flops_ratio", "train_time_ratio")
    if not rows:
        return None
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    for i, row in enumerate(rows):
        s = row["stats"]
        ax.errorbar(s["train_flops_ratio"]["mean"], s["train_time_ratio"]["mean"],
                    xerr=s["train_flops_ratio"]["sd"] or 0, yerr=s["train_time_ratio"]["sd"] or 0, fmt="o",
                    color=COLORS[i % len(COLORS)], capsize=3, label=row["label"])
    low = min(0.0, *ax.get_xlim(), *ax.get_ylim())
    high = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([low, high], [low, high], ":", color="#777777", linewidth=0.8, label="time falls as FLOPs")
    ax.set_xlabel(f"training FLOPs / {bench.bench['reference']}", fontsize=8)
    ax.set_ylabel(f"training time / {bench.bench['reference']}", fontsize=8)
    ax.set_title(f"{bench.name}: training time vs training FLOPs", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


BenchFigure = Callable[[BenchData], Figure | None]
BENCH_FIGURES: list[tuple[str, str, BenchFigure]] = [
    ("front", "Accuracy vs MACs", accuracy_front),
    ("time_vs_flops", "Training time vs training FLOPs", time_vs_flops),
]


def runs_front(runs: list[RunData]) -> Figure | None:
    """Several separate runs: final test accuracy against MACs, one labelled point per run (runs whose summary has
    no MACs, e.g. federated ones, are left out)."""
    done = [r for r in runs if r.summary and "macs" in r.summary and "test_accuracy" in r.summary]
    if len(done) < 2:
        return None
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    for i, run in enumerate(done):
        s = run.summary or {}
        ax.scatter(s["macs"] / 1e6, 100 * s["test_accuracy"], color=COLORS[i % len(COLORS)], label=run.name)
    ax.set_xlabel("MACs per sample (M)", fontsize=8)
    ax.set_ylabel("test accuracy (%)", fontsize=8)
    ax.set_title("accuracy vs MACs, one point per run", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    return fig
