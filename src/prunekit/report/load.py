"""What a report reads: run directories (metrics.jsonl, summary.json, config.yaml) and bench directories
(bench.json and the run directories it names). Nothing else is opened, and nothing read is executed."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit import io
from prunekit.config import read_yaml
from prunekit.errors import UserError
from prunekit.report.records import KINDS, validate_record


@dataclass
class RunData:
    path: Path
    name: str
    config: dict[str, Any] | None
    summary: dict[str, Any] | None
    records: list[dict[str, Any]]
    label: str | None = None  # the bench row it belongs to
    seed: int | None = None

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]


@dataclass
class BenchData:
    path: Path
    bench: dict[str, Any]
    runs: list[RunData] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.bench.get("suite", self.path.name))

    def groups(self) -> list[tuple[str, list[RunData]]]:
        """(label, its runs) in bench order."""
        order = [row["label"] for row in self.bench["methods"]]
        return [(label, [r for r in self.runs if r.label == label]) for label in order]


def lottery_levels(data: dict[str, Any]) -> list[dict[str, Any]]:
    """lottery.json (prunekit lottery) as `level` records: the tickets under the driver's mode, each control
    (reinit, random_prune) under its own name."""
    return [{"kind": "level", "level": row["level"], "density": row["weight_density"],
             "test_accuracy": row["test_accuracy"], "run_dir": row["run"],
             "mode": data.get("mode", "ticket") if row.get("kind", "ticket") == "ticket" else row["kind"],
             **{k: row[k] for k in ("train_flops", "train_time_s") if k in row}}
            for row in data.get("levels", [])]


def lmc_path(data: dict[str, Any]) -> list[dict[str, Any]]:
    """lmc.json (prunekit lmc) as one `lmc` record."""
    errors, barrier = data.get("errors", {}), data.get("barrier", {})
    record = {"kind": "lmc", "alphas": data["alphas"], "test_error": errors["test"], "step": data["start_step"]}
    record.update({k: v for k, v in (("train_error", errors.get("train")), ("barrier_test", barrier.get("test")),
                                     ("barrier_train", barrier.get("train"))) if v is not None})
    return [record]


# Drivers that summarise many runs in their own JSON file: read as the records docs/RECORDS.md defines.
DRIVER_FILES: dict[str, Any] = {"lottery.json": lottery_levels, "lmc.json": lmc_path}


def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("metrics.jsonl", "summary.json", *DRIVER_FILES))


def driver_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for name, convert in DRIVER_FILES.items():
        if (path / name).is_file():
            data = io.read_json(path / name)
            try:
                records += convert(data)
            except (KeyError, TypeError) as exc:
                print(f"prunekit report: {path / name}: not in the expected form ({exc!r}); left out", file=sys.stderr)
    kept = []
    for record in records:
        problems = validate_record(record)
        if problems:
            print(f"prunekit report: {path}: {problems[0]}; left out", file=sys.stderr)
        else:
            kept.append(record)
    return kept


def read_records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl, checked against the schema (docs/RECORDS.md). A record that does not match it is left out
    with one note on stderr per file (a run written by an older or newer prunekit still gets a report); a kind
    the schema does not know is kept and ignored by the figures."""
    if not path.is_file():
        return []
    records, bad = [], []
    for number, record in enumerate(io.read_jsonl(path), start=1):
        problems = validate_record(record, allow_unknown=True)
        if problems:
            bad.append(f"line {number}: {problems[0]}")
        else:
            records.append(record)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        print(f"prunekit report: {path}: {bad[0]}{more}; left out (see docs/RECORDS.md)", file=sys.stderr)
    strange = sorted({str(r.get("kind")) for r in records} - set(KINDS))
    if strange:
        print(f"prunekit report: {path}: record kinds not in docs/RECORDS.md, ignored: {', '.join(strange)}",
              file=sys.stderr)
    return records


def load_run(path: Path, name: str | None = None) -> RunData:
    config = read_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else None
    summary = io.read_json(path / "summary.json") if (path / "summary.json").is_file() else None
    records = read_records(path / "metrics.jsonl") + driver_records(path)
    return RunData(path, name or path.name, config, summary, records)


def load_bench(path: Path) -> BenchData:
    bench = io.read_json(path / "bench.json")
    if not isinstance(bench, dict) or "methods" not in bench:
        raise UserError(f"{path / 'bench.json'}: not a bench.json written by prunekit bench")
    data = BenchData(path, bench)
    for row in bench["methods"]:
        for run in row["runs"]:
            run_dir = Path(run["run_dir"])
            run_dir = run_dir if run_dir.is_absolute() else path / run_dir
            if is_run_dir(run_dir):
                loaded = load_run(run_dir, f"{row['label']}/seed-{run['seed']}")
                loaded.label, loaded.seed = row["label"], run["seed"]
                data.runs.append(loaded)
    return data


def load_inputs(paths: list[str | Path]) -> tuple[list[BenchData], list[RunData]]:
    """Bench directories and run directories; a directory that is neither is searched one level down."""
    benches: list[BenchData] = []
    runs: list[RunData] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise UserError(f"{path}: not a directory (give run or bench directories)")
        if (path / "bench.json").is_file():
            benches.append(load_bench(path))
        elif is_run_dir(path):
            runs.append(load_run(path))
        else:
            found = sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))
            if not found:
                raise UserError(f"{path}: no bench.json, metrics.jsonl or summary.json here or one level down")
            runs += [load_run(p) for p in found]
    _unique_names(runs)
    return benches, runs


def _unique_names(runs: list[RunData]) -> None:
    """Runs from different places with the same directory name get their parent's name in front."""
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        if seen[run.name] > 1:
            run.name = f"{run.path.parent.name}/{run.path.name}"
