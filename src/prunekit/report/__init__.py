"""`prunekit report RUN_OR_BENCH_DIR... --out report.html`: one self-contained HTML page of runs and benches, and
the same figures as PNG files under each run's (and bench's) plots/.

The report reads only metrics.jsonl, summary.json, config.yaml and bench.json (the record kinds are in
docs/RECORDS.md and `prunekit.report.records`). `write_report(paths, out)` is the whole command as a function.
"""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunekit import io

try:  # the figures need matplotlib (the `report` extra); fail at import, where callers check for it
    import matplotlib  # noqa: F401
except ImportError as exc:
    raise ImportError("prunekit.report needs matplotlib: pip install -c constraints.txt 'prunekit[report]'") from exc


def _name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


class _Writer:
    """Renders figures once, embeds them in the page and writes them as PNGs where asked."""

    def __init__(self, write_plots: bool) -> None:
        self.write_plots = write_plots
        self.count = 0

    def figure(self, fig: Any, alt: str, caption: str, png_paths: list[Path]) -> str:
        from prunekit.report import figures, html

        png = figures.png_bytes(fig)
        width, height = (int(round(v * fig.dpi)) for v in fig.get_size_inches())
        for path in png_paths if self.write_plots else []:
            try:
                io.write_bytes(path, png)
            except OSError as exc:  # a read-only run directory still gets its report
                print(f"prunekit report: could not write {path} ({exc})", file=sys.stderr)
        self.count += 1
        return html.image(png, alt, caption, (width, height))

    def run_figures(self, runs: list[Any], title: str, plots_dirs: list[Path], prefix: str = "") -> list[str]:
        from prunekit.report.figures import RUN_FIGURES

        parts = []
        for key, caption, draw in RUN_FIGURES:
            fig = draw(runs)
            if fig is not None:
                paths = [d / f"{prefix}{key}.png" for d in plots_dirs]
                parts.append(self.figure(fig, f"{title}: {caption}", f"{title}: {caption}", paths))
        return parts


def _own_plots(writer: _Writer, runs: list[Any]) -> None:
    """Each run's own figures under RUN/plots/ (the report shows a bench row's seeds together instead)."""
    from prunekit.report.figures import RUN_FIGURES, png_bytes

    for run in runs if writer.write_plots else []:
        for key, _caption, draw in RUN_FIGURES:
            fig = draw([run])
            if fig is not None:
                try:
                    io.write_bytes(run.path / "plots" / f"{key}.png", png_bytes(fig))
                except OSError as exc:
                    print(f"prunekit report: could not write {run.path / 'plots'} ({exc})", file=sys.stderr)


def _bench_section(writer: _Writer, bench: Any, anchor: str) -> str:
    from prunekit.bench.table import markdown_table
    from prunekit.report import html
    from prunekit.report.figures import BENCH_FIGURES

    plots = bench.path / "plots"
    parts = [f'<section id="{anchor}"><h2>Bench {html.esc(bench.name)}</h2>',
             f'<p>{html.esc(bench.bench.get("description", "").rstrip("."))}. Seeds: '
             f'{html.esc(", ".join(map(str, bench.bench.get("seeds", []))))}; reference: '
             f'{html.esc(bench.bench["reference"])}. Directory: {html.esc(bench.path)}</p>',
             html.markdown_table(markdown_table(bench.bench))]
    for key, caption, draw in BENCH_FIGURES:
        fig = draw(bench)
        if fig is not None:
            parts.append(writer.figure(fig, f"{bench.name}: {caption}", caption, [plots / f"{key}.png"]))
    for label, runs in bench.groups():
        parts.append(f"<h3>{html.esc(label)} ({len(runs)} run{'s' if len(runs) != 1 else ''})</h3>")
        parts += writer.run_figures(runs, f"{bench.name} / {label}", [plots], prefix=f"{_name(label)}-")
        if runs:
            parts.append(html.config_block(runs[0]))
    _own_plots(writer, bench.runs)
    parts.append("</section>")
    return "\n".join(parts)


def _runs_section(writer: _Writer, runs: list[Any]) -> str:
    from prunekit.report import html
    from prunekit.report.figures import runs_front

    parts = ['<section id="runs"><h2>Runs</h2>']
    fig = runs_front(runs)
    if fig is not None:
        parts.append(writer.figure(fig, "accuracy vs MACs of the runs", "final test accuracy vs MACs", []))
    for run in runs:
        parts.append(f"<h3>{html.esc(run.name)}</h3><p class=\"note\">{html.esc(run.path)}</p>")
        parts += writer.run_figures([run], run.name, [run.path / "plots"])
        parts.append(html.config_block(run))
    parts.append("</section>")
    return "\n".join(parts)


def write_report(paths: list[str | Path], out: str | Path, *, write_plots: bool = True,
                 say: Callable[[str], None] | None = None) -> Path:
    """Write the HTML report of the run and bench directories in `paths` to `out`; returns `out`."""
    from prunekit import __version__
    from prunekit.report import html
    from prunekit.report.load import load_inputs

    benches, runs = load_inputs(list(paths))
    writer = _Writer(write_plots)
    all_runs = [r for b in benches for r in b.runs] + runs
    nav = [("summary", "Summary")] + [(f"bench-{i}", f"Bench {b.name}") for i, b in enumerate(benches)]
    body = ['<section id="summary"><h2>Summary</h2>', html.summary_table(all_runs), "</section>"]
    body += [_bench_section(writer, bench, f"bench-{i}") for i, bench in enumerate(benches)]
    if runs:
        nav.append(("runs", "Runs"))
        body.append(_runs_section(writer, runs))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"{len(all_runs)} runs, {len(benches)} bench(es); prunekit {__version__}; written {when}. "
            f"Read from metrics.jsonl, summary.json, config.yaml and bench.json only.")
    out = Path(out)
    io.write_text(out, html.page("prunekit report", meta, nav, body))
    if say is not None:
        say(f"wrote {out} ({len(all_runs)} runs, {writer.count} figures)")
    return out


__all__ = ["write_report"]
