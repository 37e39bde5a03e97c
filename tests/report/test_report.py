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
