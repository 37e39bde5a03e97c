"""The report in a real headless Chromium: no script errors, nothing fetched, every image rendered at a non-zero
size, the summary table lists every run, and a screenshot is kept as a test artefact
($PRUNEKIT_TEST_ARTIFACTS, default runs/test-artifacts/). Skipped, with the reason, only where Playwright or a
Chromium is missing (.ci/run installs both)."""

import os
from pathlib import Path

import pytest
from fake_runs import make_bench, make_run

from prunekit.report import write_report

ROOT = Path(__file__).resolve().parents[2]


def browser_or_skip():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -c constraints.txt -e '.[report]')")
    from prunekit.report.browser import find_chromium

    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium found: apt-get install -y chromium chromium-headless-shell (or PRUNEKIT_CHROMIUM)")
    return path


def every_kind_of_run(root):
    """A bench (2 methods x 2 seeds) and one run with every proposed record kind, so every figure is drawn."""
    make_bench(root / "bench", {"dense": [0.95, 0.96], "l1": [0.93, 0.94]})
    extra = [{"kind": "level", "level": i, "density": 0.8 ** i, "test_accuracy": 0.9 - 0.002 * i * i,
              "mode": "reset"} for i in range(6)]
    extra += [{"kind": "round", "round": i + 1, "test_accuracy": 0.5 + 0.05 * i, "upload_bytes": 10 ** 6}
              for i in range(5)]
    extra += [{"kind": "lmc", "alphas": [i / 10 for i in range(11)], "step": 0, "barrier_test": 0.05,
               "test_error": [0.1 + 0.05 * (1 - abs(i - 5) / 5) for i in range(11)]}]
    extra += [{"kind": "update", "step": 100 * (i + 1), "density": 0.1, "itop_rate": 0.1 + 0.05 * i}
              for i in range(5)]
    make_run(root / "everything", method="lottery", cut_at=2, extra=extra)
    return [root / "bench", root / "everything"]


def test_report_renders_in_headless_chromium(tmp_path):
    executable = browser_or_skip()
    from prunekit.report.browser import check_page

    out = write_report(every_kind_of_run(tmp_path), tmp_path / "report.html", write_plots=False)  # PNGs: test_report
    artefacts = Path(os.environ.get("PRUNEKIT_TEST_ARTIFACTS", ROOT / "runs" / "test-artifacts"))
    artefacts.mkdir(parents=True, exist_ok=True)
    shot = artefacts / "report-screenshot.png"
    check = check_page(out, shot, executable=executable)
    print(f"screenshot: {shot}")
    assert check.errors == []
    assert check.external_requests == []
    # bench: front, time vs FLOPs, dense curves, l1 curves + widths; the other run: all six run figures
    assert len(check.images) == 11
    for image in check.images:
        assert image["complete"] and image["natural_width"] > 0 and image["natural_height"] > 0, image["alt"]
        assert image["width"] > 0 and image["height"] > 0, image["alt"]
    assert all(s["width"] > 0 and s["height"] > 0 for s in check.svgs)
    assert check.run_names == ["dense/seed-0", "dense/seed-1", "l1/seed-0", "l1/seed-1", "everything"]
    captions = " ".join(i["alt"] for i in check.images)
    for title in ("Accuracy vs MACs", "Training time vs training FLOPs", "Training curves", "Channel widths",
                  "Lottery-ticket levels", "Linear mode connectivity", "Federated rounds", "Dynamic sparse"):
        assert title in captions, title
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_broken_image_is_caught(tmp_path):
    """The check itself: a page with a corrupt image and a script error fails it."""
    executable = browser_or_skip()
    from prunekit.report.browser import check_page

    page = tmp_path / "bad.html"
    page.write_text('<html><body><img alt="x" src="data:image/png;base64,AAAA">'
                    "<script>undefined_function()</script></body></html>")
    check = check_page(page, executable=executable)
    assert check.images[0]["natural_width"] == 0
    assert any("undefined_function" in e for e in check.errors)
