"""prunekit sweep: grid parsing, one run directory per combination, tables, and a resumed sweep that re-runs
only the unfinished combination (a run killed after its checkpoint: summary.json missing)."""

import csv

import pytest

from prunekit.errors import UserError
from prunekit.sweep.grid import parse_axis, points
from prunekit.sweep.runner import run_sweep
from prunekit.sweep.table import markdown, write_outputs

CONFIG = """
name: sweep-test
data: {name: synthetic, synthetic_size: 64, synthetic_shape: [1, 8, 8], num_classes: 2, augment: false}
model: {name: small_cnn, kwargs: {widths: [4, 4, 4]}}
optim: {lr: 0.01}
train: {epochs: 1, batch_size: 32, threads: 1}
"""


def test_grid_parsing_and_combined_keys():
    a = parse_axis("federated.partition+federated.beta=iid+0.5,dirichlet+0.1")
    b = parse_axis("federated.readjust_ratio=0.0,0.3")
    grid = points([a, b])
    assert len(grid) == 4
    assert grid[0].overrides == ["federated.partition=iid", "federated.beta=0.5", "federated.readjust_ratio=0.0"]
    assert grid[0].labels == {"federated.partition+federated.beta": "iid+0.5", "federated.readjust_ratio": "0.0"}
    for bad in ("nokey", "a+b=1,2+3", "a=1,1"):
        with pytest.raises(UserError):
            parse_axis(bad)


def test_sweep_resumes_only_the_unfinished_run(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "sweep"
    axes = [parse_axis("optim.lr=0.01"), parse_axis("train.seed=0,1")]
    first = run_sweep(config, axes, out, jobs=2, progress=lambda s: None)
    assert [o.status for o in first] == ["done"] * 2
    kept = {o.run_dir.name: (o.run_dir / "summary.json").stat().st_mtime_ns for o in first}
    victim = first[1].run_dir
    (victim / "summary.json").unlink()  # killed after its checkpoint, before the summary
    again = run_sweep(config, axes, out, jobs=1, progress=lambda s: None)
    assert [o.status for o in again] == ["skipped", "done"]
    for o in again:
        if o.run_dir != victim:
            assert (o.run_dir / "summary.json").stat().st_mtime_ns == kept[o.run_dir.name]
    write_outputs(again, out)
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 2 and rows[0]["optim.lr"] == "0.01" and rows[0]["train.seed"] == "0"
    assert (out / "sweep.png").stat().st_size > 0
    table = markdown(again, "test_accuracy").splitlines()
    assert table[2].startswith("| optim.lr \\ train.seed | 0 | 1 |")
    assert table[4].startswith("| 0.01 | ") and len(table) == 5
