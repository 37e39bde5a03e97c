"""write_report on hand-written runs: one self-contained page (nothing fetched), every run in the summary table,
the figures embedded and the same PNGs under each run's plots/; bad inputs are one-line user errors."""

import re

import pytest
from fake_runs import make_bench, make_run

from prunekit.cli import main
from prunekit.errors import UserError
from prunekit.report import write_report
from prunekit.report.load import load_inputs


def test_report_is_self_contained_and_lists_every_run(tmp_path):
    make_bench(tmp_path / "bench", {"dense": [0.95, 0.96], "l1": [0.93, 0.94]})
    make_run(tmp_path / "solo", method="l1", cut_at=1)
    out = write_report([tmp_path / "bench", tmp_path / "solo"], tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # nothing to fetch: data: URIs and anchors only
    assert "<script" not in text
    rows = re.findall(r'<tr data-run="([^"]+)">', text)
    assert rows == ["dense/seed-0", "dense/seed-1", "l1/seed-0", "l1/seed-1", "solo"]
    images = text.count('<img src="data:image/png;base64,')
    # bench: front + time vs FLOPs, dense curves, l1 curves + widths; solo: curves + widths
    assert images == 7
    for run in ("bench/dense/seed-0", "bench/l1/seed-1", "solo"):
        assert (tmp_path / run / "plots" / "curves.png").is_file()
    assert (tmp_path / "bench" / "l1" / "seed-0" / "plots" / "widths.png").is_file()
    assert not (tmp_path / "bench" / "dense" / "seed-0" / "plots" / "widths.png").exists()
    assert (tmp_path / "bench" / "plots" / "front.png").is_file()


def test_no_plots_writes_only_the_page(tmp_path):
    make_run(tmp_path / "solo")
    write_report([tmp_path / "solo"], tmp_path / "r.html", write_plots=False)
    assert (tmp_path / "r.html").is_file() and not (tmp_path / "solo" / "plots").exists()


def test_a_directory_of_runs_is_searched_one_level_down(tmp_path):
    make_run(tmp_path / "runs" / "a")
    make_run(tmp_path / "runs" / "b")
    benches, runs = load_inputs([tmp_path / "runs"])
    assert benches == [] and [r.name for r in runs] == ["a", "b"]


def test_records_that_do_not_match_the_schema_are_left_out_with_a_note(tmp_path, capsys):
    run = make_run(tmp_path / "solo", extra=[{"kind": "level", "level": "two", "density": 0.5,
                                              "test_accuracy": 0.9}, {"kind": "mystery"}])
    _, runs = load_inputs([run])
    assert not runs[0].kind("level") and runs[0].kind("mystery")
    err = capsys.readouterr().err
    assert "field 'level' should be int" in err and "mystery" in err


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="not a directory"):
        load_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no bench.json"):
        load_inputs([tmp_path / "empty"])
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_writes_the_report_and_prints_its_path(tmp_path, capsys):
    make_run(tmp_path / "solo")
    assert main(["report", str(tmp_path / "solo"), "--out", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "r.html").resolve())


def test_driver_summaries_are_read_as_their_records(tmp_path):
    """lottery.json (prunekit lottery) and lmc.json (prunekit lmc), in the form those drivers write them."""
    from prunekit import io
    from prunekit.report.load import load_run

    lot = tmp_path / "lot"
    io.write_json(lot / "lottery.json", {"mode": "reset", "rate": 0.2, "levels": [
        {"level": 0, "run": "level_00", "kind": "ticket", "weight_density": 1.0, "test_accuracy": 0.84,
         "params": 10, "macs": 20, "train_time_s": 1.5, "train_flops": 100},
        {"level": 1, "run": "level_01_reinit", "kind": "reinit", "weight_density": 0.8, "test_accuracy": 0.83,
         "params": 10, "macs": 20, "train_time_s": 1.4, "train_flops": 90}]})
    io.write_json(lot / "lmc.json", {"alphas": [0.0, 0.5, 1.0], "start_step": 3,
                                     "errors": {"test": [0.1, 0.3, 0.1], "train": [0.0, 0.2, 0.0]},
                                     "barrier": {"test": 0.2, "train": 0.2}})
    run = load_run(lot)
    assert run.kind("level") == [
        {"kind": "level", "level": 0, "density": 1.0, "test_accuracy": 0.84, "run_dir": "level_00", "mode": "reset",
         "train_flops": 100, "train_time_s": 1.5},
        {"kind": "level", "level": 1, "density": 0.8, "test_accuracy": 0.83, "run_dir": "level_01_reinit",
         "mode": "reinit", "train_flops": 90, "train_time_s": 1.4}]
    assert run.kind("lmc") == [{"kind": "lmc", "alphas": [0.0, 0.5, 1.0], "test_error": [0.1, 0.3, 0.1],
                                "step": 3, "train_error": [0.0, 0.2, 0.0], "barrier_test": 0.2, "barrier_train": 0.2}]
    text = write_report([lot], tmp_path / "r.html", write_plots=False).read_text()
    assert "lot (driver)" in text and "Lottery-ticket levels" in text and "Linear mode connectivity" in text
