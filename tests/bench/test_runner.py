"""Benches with real (tiny) training: every method x seed runs once, a second call skips them all, an interrupted
run resumes, a run killed before its first checkpoint starts again, changed settings are refused, `--jobs 2`
runs subprocesses with one thread each, and a failing run does not stop the others."""

import pytest
import yaml

from prunekit import io
from prunekit.bench import run_bench
from prunekit.bench.runner import run_state
from prunekit.cli import main
from prunekit.errors import UserError
from prunekit.train.trainer import Trainer

BASE = {"name": "tiny", "data": {"name": "synthetic", "synthetic_size": 64, "synthetic_shape": [3, 8, 8],
                                 "crop_padding": 1},
        "model": {"name": "small_cnn"}, "train": {"epochs": 2, "batch_size": 32, "threads": 1},
        "optim": {"lr": 0.05}}
L1 = {"name": "l1_filter", "params": {"prune_epoch": 0, "rate": 0.5, "min_channels": 1}}


def suite_file(tmp_path, methods=None, **extra):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    suite = {"name": "tiny", "base": "base.yaml", "seeds": [0, 1], "methods": methods or [{"name": "dense"}, L1],
             **extra}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    return tmp_path / "suite.yaml"


class Interrupt(Exception):
    pass


def test_every_run_once_then_all_skipped(tmp_path):
    lines = []
    path = suite_file(tmp_path)
    result = run_bench(path, out=tmp_path / "out", say=lines.append)
    assert [o.status for o in result.outcomes] == ["trained"] * 4
    assert [o.key for o in result.outcomes] == ["dense/seed-0", "dense/seed-1", "l1_filter/seed-0",
                                                "l1_filter/seed-1"]
    assert lines[1].startswith("[1/4] dense/seed-0: trained in") and "left" in lines[1]
    assert lines[-1].startswith("[4/4]") and "all done" in lines[-1]
    bench = io.read_json(tmp_path / "out" / "bench.json")
    l1 = bench["methods"][1]
    assert l1["stats"]["test_accuracy"]["n"] == 2 and l1["stats"]["macs_reduction"]["mean"] > 0.3
    summaries = [io.read_json(tmp_path / "out" / "l1_filter" / f"seed-{s}" / "summary.json") for s in (0, 1)]
    assert [r["metrics"]["test_accuracy"] for r in l1["runs"]] == [s["test_accuracy"] for s in summaries]
    assert "| l1_filter |" in (tmp_path / "out" / "bench.md").read_text()

    again = run_bench(path, out=tmp_path / "out", say=lambda _: None)
    assert [o.status for o in again.outcomes] == ["skipped"] * 4
    assert again.bench["methods"] == bench["methods"]


def test_interrupted_run_resumes_and_a_run_killed_before_its_first_checkpoint_restarts(tmp_path):
    path = suite_file(tmp_path, methods=[{"name": "dense"}], seeds=[0, 1, 2])
    out = tmp_path / "out"
    from prunekit.bench.suite import load_suite, resolve_runs

    suite, root = load_suite(path)
    specs = {s.key: s for s in resolve_runs(suite, root, out)}

    def kill(step):
        if step == 3:  # second epoch, after the first checkpoint
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(specs["dense/seed-0"].config, specs["dense/seed-0"].run_dir, quiet=True, on_step=kill).fit()
    assert run_state(specs["dense/seed-0"].run_dir) == "resume"
    early = specs["dense/seed-1"].run_dir
    early.mkdir(parents=True)
    io.write_yaml(early / "config.yaml", specs["dense/seed-1"].config.to_dict())
    assert run_state(early) == "restart"

    result = run_bench(path, out=out, say=lambda _: None)
    assert [o.status for o in result.outcomes] == ["trained"] * 3
    resumed = io.read_jsonl(specs["dense/seed-0"].run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in resumed if r["kind"] == "epoch"] == [0, 1]
    Trainer(specs["dense/seed-0"].config, tmp_path / "uninterrupted", quiet=True).fit()
    fresh = io.read_json(tmp_path / "uninterrupted" / "summary.json")
    assert result.outcomes[0].summary["test_accuracy"] == fresh["test_accuracy"]  # the trainer resumes exactly


def test_changed_settings_and_foreign_files_are_refused(tmp_path):
    path = suite_file(tmp_path, methods=[{"name": "dense"}], seeds=[0])
    run_bench(path, out=tmp_path / "out", say=lambda _: None)
    with pytest.raises(UserError, match=r"other settings \(train.epochs differs\)"):
        run_bench(path, out=tmp_path / "out", extra_set=["train.epochs=3"], say=lambda _: None)
    run_bench(path, out=tmp_path / "out", extra_set=["train.threads=2"], say=lambda _: None)  # execution only
    foreign = tmp_path / "other" / "dense" / "seed-0"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        run_bench(path, out=tmp_path / "other", say=lambda _: None)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_jobs_run_as_one_thread_subprocesses_and_a_failure_does_not_stop_the_others(tmp_path, capsys):
    late_cut = {"name": "l1_filter", "label": "late", "params": {"prune_epoch": 5, "rate": 0.5}}  # > epochs
    path = suite_file(tmp_path, methods=[{"name": "dense"}, late_cut], seeds=[0])
    out = tmp_path / "out"
    code = main(["bench", str(path), "--out", str(out), "--jobs", "2", "--set", "train.threads=2"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "late/seed-0" in captured.err
    assert "FAILED" in captured.out and "dense/seed-0: trained" in captured.out
    saved = yaml.safe_load((out / "dense" / "seed-0" / "config.yaml").read_text())
    assert saved["train"]["threads"] == 1  # --jobs > 1 forces one thread per run
    assert (out / "logs" / "dense_seed-0.log").is_file()
    assert "prune_epoch" in (out / "logs" / "late_seed-0.log").read_text()
    bench = io.read_json(out / "bench.json")
    assert bench["missing"] == ["late/seed-0"] and bench["methods"][0]["stats"]["test_accuracy"]["n"] == 1
