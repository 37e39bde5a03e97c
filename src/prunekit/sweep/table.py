"""sweep.csv (one row per grid point), sweep.md (rows: the first axis, or every axis but the last; columns: the
last axis; cells: one summary metric) and sweep.png (the metric against the last axis, one line per row)."""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path

from prunekit import io
from prunekit.sweep.runner import Outcome

COLUMNS = ("test_accuracy", "best_test_accuracy", "upload_bits", "download_bits", "weight_density",
           "train_time_s", "method")


def write_csv(outcomes: list[Outcome], path: Path) -> None:
    axes = list(outcomes[0].point.labels) if outcomes else []
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*axes, "status", "run_dir", *COLUMNS])
    for o in outcomes:
        writer.writerow([*o.point.labels.values(), o.status, o.run_dir.name,
                         *(o.summary.get(c, "") for c in COLUMNS)])
    io.write_text(path, buffer.getvalue())


def layout(outcomes: list[Outcome], metric: str) -> tuple[list[str], list[str], dict[tuple[str, str], object]]:
    """(row labels, column labels, {(row, col): value}) in grid order."""
    rows: list[str] = []
    cols: list[str] = []
    cells: dict[tuple[str, str], object] = {}
    for o in outcomes:
        labels = list(o.point.labels.values())
        row, col = (" ".join(labels[:-1]) or "-"), labels[-1]
        rows += [row] if row not in rows else []
        cols += [col] if col not in cols else []
        cells[(row, col)] = o.summary.get(metric) if o.status not in ("failed", "pending") else o.status
    return rows, cols, cells


def markdown(outcomes: list[Outcome], metric: str) -> str:
    rows, cols, cells = layout(outcomes, metric)
    names = list(outcomes[0].point.labels) if outcomes else []
    corner = f"{' '.join(names[:-1]) or '-'} \\ {names[-1] if names else ''}"

    def fmt(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))

    lines = [f"| {corner} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(fmt(cells.get((r, c))) for c in cols) + " |")
    return f"{metric}\n\n" + "\n".join(lines) + "\n"


def plot(outcomes: list[Outcome], metric: str, path: Path) -> None:
    from prunekit.report.figures import new_figure, png_bytes

    rows, cols, cells = layout(outcomes, metric)
    fig = new_figure(6, 3.5)
    ax = fig.subplots()
    for r in rows:
        xs = [i for i, c in enumerate(cols) if isinstance(cells.get((r, c)), int | float)]
        ax.plot(xs, [cells[(r, cols[i])] for i in xs], marker="o", label=r)
    ax.set_xticks(range(len(cols)), cols)
    names = list(outcomes[0].point.labels) if outcomes else [""]
    ax.set_xlabel(names[-1], fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.grid(alpha=0.3)
    if len(rows) > 1:
        ax.legend(fontsize=7)
    io.write_bytes(path, png_bytes(fig))


def write_outputs(outcomes: list[Outcome], out: Path, metric: str = "test_accuracy") -> None:
    write_csv(outcomes, out / "sweep.csv")
    io.write_text(out / "sweep.md", markdown(outcomes, metric))
    plot(outcomes, metric, out / "sweep.png")
