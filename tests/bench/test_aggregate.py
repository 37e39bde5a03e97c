"""bench.json figures against direct computations on hand-written runs: per-run ratios paired by seed, the
final-network epoch time, mean and sample sd (NumPy), and the exceeds-the-spread screen."""

import numpy as np
import pytest
from fake_runs import DENSE_MACS, make_bench, make_run, spec

from prunekit import io
from prunekit.bench.aggregate import build_bench, compare, run_metrics, spread


def test_run_metrics_by_hand(tmp_path):
    dense = make_run(tmp_path / "dense", epochs=4, seconds=2.0)
    pruned = make_run(tmp_path / "pruned", epochs=4, cut_at=1, keep=0.5, seconds=2.0)
    m = run_metrics(pruned, dense)
    d, p = io.read_json(dense / "summary.json"), io.read_json(pruned / "summary.json")
    assert m["train_flops_ratio"] == pytest.approx(p["train_flops"] / d["train_flops"])
    assert m["train_flops_ratio"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)  # two dense epochs, two at half
    assert m["train_time_ratio"] == pytest.approx((2 + 2 + 1 + 1) / 8)
    assert m["macs_reduction"] == pytest.approx(0.5) and m["macs"] == DENSE_MACS // 2
    assert m["final_epochs"] == [2, 3] and m["final_epoch_s"] == pytest.approx(1.0)
    assert m["final_epoch_ratio"] == pytest.approx(0.5)  # dense's median over the same epochs is 2 s
    assert run_metrics(tmp_path / "missing", dense) is None
    alone = run_metrics(pruned, None)
    assert "train_flops_ratio" not in alone and alone["test_accuracy"] == p["test_accuracy"]


def test_spread_matches_numpy():
    values = [0.91, 0.935, 0.9]
    s = spread(values)
    assert s["mean"] == pytest.approx(np.mean(values)) and s["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (s["min"], s["max"], s["n"]) == (0.9, 0.935, 3)
    assert spread([0.5])["sd"] is None and spread([])["mean"] is None
    assert spread([None, 0.5, float("nan")])["n"] == 1


def test_compare_is_the_sum_of_sds_screen():
    a, b = spread([0.90, 0.92]), spread([0.95, 0.96])
    c = compare(a, b, paired=False)
    width = np.std([0.90, 0.92], ddof=1) + np.std([0.95, 0.96], ddof=1)
    assert c["difference"] == pytest.approx(0.91 - 0.955) and c["spread"] == pytest.approx(width)
    assert c["exceeds"] is bool(abs(0.91 - 0.955) > width) is True
    assert compare(spread([0.9, 0.95]), spread([0.92, 0.93]), paired=False)["exceeds"] is False
    ratio = compare(spread([0.7, 0.72, 0.71]), None, paired=True)
    assert ratio["difference"] == pytest.approx(-0.29) and ratio["exceeds"] is True
    assert compare(spread([0.9]), b, paired=False)["exceeds"] is None  # one seed: no spread to compare with


def test_bench_rows_pair_every_run_with_its_seed(tmp_path):
    bench = make_bench(tmp_path, {"dense": [0.95, 0.96, 0.97], "l1": [0.90, 0.91, 0.93]})
    dense, l1 = bench["methods"]
    assert [r["run_dir"] for r in l1["runs"]] == ["l1/seed-0", "l1/seed-1", "l1/seed-2"]
    ratios = [r["metrics"]["train_time_ratio"] for r in l1["runs"]]
    expected = []
    for seed in range(3):
        base = io.read_json(tmp_path / "dense" / f"seed-{seed}" / "summary.json")["train_time_s"]
        expected.append(io.read_json(tmp_path / "l1" / f"seed-{seed}" / "summary.json")["train_time_s"] / base)
    assert ratios == pytest.approx(expected)
    assert l1["stats"]["train_time_ratio"]["mean"] == pytest.approx(np.mean(expected))
    assert dense["stats"]["train_time_ratio"]["sd"] == 0.0
    accuracy = [c for c in bench["comparisons"] if c["metric"] == "test_accuracy"]
    assert [(c["a"], c["b"]) for c in accuracy] == [("dense", "l1")]
    assert accuracy[0]["difference"] == pytest.approx(np.mean([0.95, 0.96, 0.97]) - np.mean([0.90, 0.91, 0.93]))
    assert bench["missing"] == []


def test_unfinished_runs_are_listed_and_left_out(tmp_path):
    bench = make_bench(tmp_path, {"dense": [0.95, 0.96], "l1": [0.90, 0.91]})
    (tmp_path / "l1" / "seed-1" / "summary.json").unlink()
    specs = [spec(label, seed, tmp_path / label / f"seed-{seed}") for label in ("dense", "l1") for seed in (0, 1)]
    suite = type("S", (), {"name": "s", "description": "", "reference": "dense", "seeds": [0, 1], "budget": {}})
    bench = build_bench(suite, specs, tmp_path)
    assert bench["missing"] == ["l1/seed-1"]
    assert bench["methods"][1]["stats"]["test_accuracy"]["n"] == 1


def test_weight_sparse_runs_report_density_rs_and_sparse_flops(tmp_path):
    dense = make_run(tmp_path / "dense", epochs=4, seconds=2.0)
    updates = [{"kind": "update", "step": s, "epoch": 1, "method": "rigl", "density": 0.1, "itop_rate": r}
               for s, r in ((4, 0.2), (8, 0.31))]
    rigl = make_run(tmp_path / "rigl", method="rigl", epochs=4, seconds=1.9, extra=updates)
    summary = io.read_json(rigl / "summary.json")
    summary.update(weight_density=0.1004, sparse_train_flops=int(0.18 * summary["train_flops"]),
                   sparse_train_flops_ratio=0.18)
    io.write_json(rigl / "summary.json", summary)
    m = run_metrics(rigl, dense)
    assert m["weight_density"] == 0.1004 and m["itop_rate"] == 0.31  # the last update's R_s
    dense_flops = io.read_json(dense / "summary.json")["train_flops"]
    assert m["train_flops_ratio"] == pytest.approx(int(0.18 * dense_flops) / dense_flops)  # same architecture
    assert m["train_time_ratio"] == pytest.approx(1.9 / 2.0)
    plain = run_metrics(dense, dense)
    assert "weight_density" not in plain and plain["train_flops_ratio"] == 1.0
