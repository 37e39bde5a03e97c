"""Report figures: the channel-width matrix against a hand-worked example, the Pareto front against brute force,
and every figure drawn exactly when its records exist (PNG bytes from the Agg canvas)."""

import itertools
import math
import random

from fake_runs import make_bench, make_run

from prunekit.report.figures import (
    BENCH_FIGURES,
    RUN_FIGURES,
    accuracy_front,
    channel_widths,
    pareto,
    png_bytes,
    runs_front,
    training_curves,
    width_matrix,
)
from prunekit.report.load import RunData, load_bench, load_run


def run_with(records, name="r"):
    return RunData(path=None, name=name, config=None, summary=None, records=records)


def epochs(n):
    return [{"kind": "epoch", "epoch": e} for e in range(n)]


def test_width_matrix_by_hand():
    decisions = [
        {"kind": "decision", "epoch": -1, "method": "m", "kept": {"a": 6, "b": 10}},  # before epoch 0
        {"kind": "decision", "epoch": 1, "method": "m", "kept": {"a": 4, "b": 10}},  # after epoch 1 -> from 2
        {"kind": "decision", "epoch": 2, "method": "m", "at": "step", "kept": {"a": 3, "b": 8},
         "removed": {"a": 1, "b": 2}},  # inside epoch 2 -> shows from 2
    ]
    groups, matrix, full = width_matrix(run_with(epochs(4) + decisions))
    assert groups == ["a", "b"]
    assert matrix == [[6, 6, 3, 3], [10, 10, 8, 8]]
    assert full == {"a": 6, "b": 10}  # widest of kept (+ removed): 6 vs 3 + 1, 10 vs 8 + 2


def test_width_matrix_before_the_first_decision_is_the_dense_width_when_known():
    one_shot = {"kind": "decision", "epoch": 1, "method": "m", "kept": {"a": 2, "b": 5}, "removed": {"a": 2}}
    groups, matrix, _ = width_matrix(run_with(epochs(3) + [one_shot]))
    assert matrix[0] == [4, 4, 2]  # a: 2 kept + 2 removed before the cut
    assert math.isnan(matrix[1][0]) and math.isnan(matrix[1][1]) and matrix[1][2] == 5  # b: width unknown before


def test_no_decisions_no_width_figure():
    assert width_matrix(run_with(epochs(3))) is None
    assert channel_widths([run_with(epochs(3))]) is None


def test_pareto_against_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(rng.randint(1, 8))]
        points = list(dict.fromkeys(points))  # distinct points
        expected = {i for i, (x, y) in enumerate(points)
                    if not any((x2 <= x and y2 >= y) and (x2, y2) != (x, y) for x2, y2 in points)}
        assert set(pareto(points)) == expected, points
        front = [points[i] for i in pareto(points)]
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in itertools.pairwise(front))


def test_figures_drawn_exactly_when_their_records_exist(tmp_path):
    plain = load_run(make_run(tmp_path / "plain"))
    for key, _title, draw in RUN_FIGURES:
        fig = draw([plain])
        assert (fig is not None) == (key == "curves"), key
    extra = [{"kind": "level", "level": 0, "density": 1.0, "test_accuracy": 0.9},
             {"kind": "level", "level": 1, "density": 0.8, "test_accuracy": 0.91},
             {"kind": "round", "round": 1, "test_accuracy": 0.5, "upload_bytes": 10},
             {"kind": "lmc", "alphas": [0, 0.5, 1], "test_error": [0.1, 0.3, 0.1]},
             {"kind": "update", "step": 10, "density": 0.1, "itop_rate": 0.2}]
    full = load_run(make_run(tmp_path / "full", cut_at=1, extra=extra))
    for key, _title, draw in RUN_FIGURES:
        fig = draw([full])
        assert fig is not None, key
        assert png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_figures(tmp_path):
    make_bench(tmp_path / "b", {"dense": [0.95, 0.96], "l1": [0.93, 0.94]})
    bench = load_bench(tmp_path / "b")
    for _key, _title, draw in BENCH_FIGURES:
        assert draw(bench) is not None
    ax = accuracy_front(bench).axes[0]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"dense", "l1"}
    assert training_curves(bench.runs[:2]).axes[1].get_legend() is not None  # two seeds, one legend
    assert runs_front(bench.runs) is not None and runs_front(bench.runs[:1]) is None
