"""One self-contained HTML page: inline CSS, figures as base64 PNG, no script and nothing fetched when opened."""

from __future__ import annotations

import base64
import html
from typing import Any

import yaml

from prunekit.bench.table import si

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px;
       padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 22px 0 6px; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 12.5px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; } td { white-space: nowrap; }
.wide { overflow-x: auto; } th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 8px 0 14px; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; } pre { background: #f7f7f7; padding: 8px; overflow-x: auto;
font-size: 12px; } details { margin: 4px 0 10px; } nav a { margin-right: 12px; } .note { color: #555; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def image(png: bytes, alt: str, caption: str, size: tuple[int, int]) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}" width="{size[0]}" '
            f'height="{size[1]}"><figcaption>{esc(caption)}</figcaption></figure>')


def _cell(text: str) -> str:
    stripped = text.strip()
    numeric = bool(stripped) and (stripped[0].isdigit() or stripped[0] in "+-") and stripped != "-"
    return f'<td class="num">{esc(stripped)}</td>' if numeric else f"<td>{esc(stripped)}</td>"


def markdown_table(markdown: str) -> str:
    """A markdown document of `| a | b |` table lines and paragraphs, as HTML (only what bench.md uses)."""
    out, rows = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([c for c in line.strip().strip("|").split("|")])
            continue
        if rows:
            head, body = rows[0], [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
            out.append('<div class="wide"><table><tr>' + "".join(f"<th>{esc(c.strip())}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in body) + "</table></div>")
            rows = []
        if line.strip() and not line.startswith("#"):
            out.append(f'<p class="note">{esc(line.strip())}</p>')
    return "\n".join(out)


FORMATS = {"pct": lambda v: f"{100 * v:.2f}%", "si": si, "sec": lambda v: f"{v:.1f}", "int": str}


def _fmt(value: Any, kind: str) -> str:
    return "-" if value is None else FORMATS[kind](value)


SUMMARY_COLUMNS = [("test acc", "test_accuracy", "pct"), ("MACs", "macs", "si"), ("params", "params", "si"),
                   ("train FLOPs", "train_flops", "si"), ("train time (s)", "train_time_s", "sec"),
                   ("epochs", "epochs", "int")]


def summary_table(runs: list[Any]) -> str:
    """Every run given or named by a bench, one row each (a run without summary.json shows as unfinished)."""
    names = ["run", "method", "seed", *(c for c, _, _ in SUMMARY_COLUMNS)]
    head = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in names) + "</tr>"
    rows = []
    for run in runs:
        s = run.summary or {}
        seed = run.seed if run.seed is not None else (run.config or {}).get("train", {}).get("seed", "-")
        method = s.get("method") or (run.config or {}).get("method", {}).get("name", "-")
        cells = "".join(_cell(_fmt(s.get(key), kind)) for _, key, kind in SUMMARY_COLUMNS)
        status = "" if run.summary else (" (driver)" if run.kind("level") or run.kind("lmc") else " (unfinished)")
        rows.append(f'<tr data-run="{esc(run.name)}"><td>{esc(run.name)}{status}</td><td>{esc(method)}</td>'
                    f"{_cell(str(seed))}{cells}</tr>")
    return f'<table id="summary-table">{head}{"".join(rows)}</table>'


def config_block(run: Any) -> str:
    if run.config is None:
        return '<p class="note">no config.yaml</p>'
    text = yaml.safe_dump(run.config, sort_keys=False)
    return f"<details><summary>resolved config of {esc(run.name)}</summary><pre>{esc(text)}</pre></details>"


def page(title: str, meta: str, nav: list[tuple[str, str]], body: list[str]) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(text)}</a>' for anchor, text in nav)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>\n'
            f'<body><h1>{esc(title)}</h1><p class="meta">{esc(meta)}</p><nav>{links}</nav>\n'
            + "\n".join(body) + "\n</body></html>\n")
