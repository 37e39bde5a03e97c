"""bench.md: one row per method with mean ± sample sd (checked against NumPy), `*` exactly where the difference
exceeds the spread, and the pairwise accuracy matrix."""

import numpy as np
from fake_runs import make_bench

from prunekit.bench.table import markdown_table, si


def cells(table, label):
    line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_rows_and_marks(tmp_path):
    acc = {"dense": [0.95, 0.96, 0.97], "close": [0.949, 0.962, 0.968], "far": [0.80, 0.81, 0.82]}
    table = markdown_table(make_bench(tmp_path, acc))
    far = cells(table, "far")
    mean, sd = np.mean(acc["far"]), np.std(acc["far"], ddof=1)
    assert far[2] == "3" and far[3] == f"{100 * mean:.2f}% ± {100 * sd:.2f}"
    assert far[4] == f"{100 * (mean - np.mean(acc['dense'])):+.2f} pp *"
    close = cells(table, "close")
    assert close[4].endswith("pp") and "*" not in close[4]
    assert cells(table, "dense")[4] == "-"
    matrix = [line for line in table.splitlines() if line.startswith(("| dense |", "| close |"))][-2:]
    header = next(line for line in table.splitlines() if line.startswith("| acc difference"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["close", "far"]
    dense_row, close_row = ([c.strip() for c in line.strip().strip("|").split("|")] for line in matrix)
    assert dense_row[1] == f"{100 * (np.mean(acc['dense']) - np.mean(acc['close'])):+.2f}"  # within the spread
    assert dense_row[2] == f"{100 * (np.mean(acc['dense']) - np.mean(acc['far'])):+.2f} *"
    assert close_row[1] == "" and close_row[2].endswith("*")
    assert "2 of 3 pairs differ" in table  # dense-far and close-far


def test_si():
    assert [si(v) for v in (999, 40_813_184, 1.5e12, 0.5)] == ["999", "40.8M", "1.5T", "0.5"]


def test_density_and_rs_columns_appear_only_with_a_weight_sparse_row(tmp_path):
    from fake_runs import make_run, spec

    from prunekit import io
    from prunekit.bench.aggregate import build_bench

    assert "R_s" not in markdown_table(make_bench(tmp_path / "plain", {"dense": [0.9], "l1": [0.8]}))
    dense = make_run(tmp_path / "dense" / "seed-0")
    rigl = make_run(tmp_path / "rigl" / "seed-0", method="rigl", extra=[
        {"kind": "update", "step": 4, "epoch": 0, "method": "rigl", "density": 0.1, "itop_rate": 0.25}])
    io.write_json(rigl / "summary.json", {**io.read_json(rigl / "summary.json"), "weight_density": 0.1})
    suite = type("Suite", (), {"name": "s", "description": "", "reference": "dense", "seeds": [0], "budget": {}})
    table = markdown_table(build_bench(suite, [spec("dense", 0, dense), spec("rigl", 0, rigl)], tmp_path))
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert header[7:9] == ["weight density", "R_s"]
    assert cells(table, "rigl")[7:9] == ["0.100", "0.250"] and cells(table, "dense")[7:9] == ["1", "1"]
