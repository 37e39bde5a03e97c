"""benchmarks/gpu_paper.sh on the CPU with a tiny budget: the three concurrent runs on a tiny CIFAR-10 archive in the
official format (written here), and the summary table it writes."""

import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from prunekit.data.cifar import CIFAR10_CLASSES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_paper.sh"


def tiny_cifar10(tmp_path, per_batch=8, test=10):
    """cifar-10-batches-py (5 training batches of `per_batch` random images, a test batch) as a .tar.gz."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    def batch(n, name):
        return {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch, f"training batch {i} of 5"), 2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test, "testing batch 1 of 1"), 2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, 2))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def run_script(out, **env):
    full = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", **env}
    return subprocess.run(["bash", str(SCRIPT), str(out)], env=full, capture_output=True, text=True, timeout=600)


def test_gpu_paper_script_runs_three_presets_concurrently_on_cpu(tmp_path):
    archive = tiny_cifar10(tmp_path)
    # one epoch of two steps; small_cnn keeps the set-up of the three processes short (the presets' ResNet-56 is
    # what a GPU run trains)
    extra = "--set model.name=small_cnn --set train.batch_size=20 --set train.eval_batch_size=50"
    done = run_script(tmp_path / "out", CIFAR10=str(archive), EPOCHS="1", EXTRA=extra)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    for method in ("dense", "reprune", "chex"):
        for name in ("config.yaml", "metrics.jsonl", "summary.json"):
            assert (out / method / name).is_file(), (method, name)
        summary = json.loads((out / method / "summary.json").read_text())
        assert summary["method"] == method and summary["epochs"] == 1
    config = (out / "reprune" / "config.yaml").read_text()
    assert "on_device: true" in config and "amp: true" in config and "channels_last: true" in config
    table = (out / "summary.md").read_text().splitlines()
    rows = {line.split(" | ")[0].strip("| "): line for line in table if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"run", "dense", "reprune", "chex"}
    assert "| 93.40 | 60.38 |" in rows["reprune"]  # the paper's figures beside REPrune's
    data = json.loads((out / "summary.json").read_text())
    by_run = {r["run"]: r for r in data["rows"]}
    dense = json.loads((out / "dense" / "summary.json").read_text())
    assert by_run["dense"]["macs_reduction"] == 0.0
    assert by_run["reprune"]["macs_reduction"] > 0 and by_run["reprune"]["train_flops_saved"] > 0
    assert by_run["dense"]["top1"] == 100 * dense["test_accuracy"]
    assert data["total_minutes"] == max(r["wall_min"] for r in data["rows"]) > 0
    assert "torch" in (out / "env.txt").read_text()

    # again into the same directory: finished runs are skipped, an unfinished one resumes from its checkpoint
    first = json.loads((out / "chex" / "summary.json").read_text())
    (out / "chex" / "summary.json").unlink()
    again = run_script(out, CIFAR10=str(archive), EPOCHS="1", EXTRA=extra)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len((out / "dense.wall").read_text().splitlines()) == 1
    assert len((out / "chex.wall").read_text().splitlines()) == 2
    assert "resuming" in (out / "logs" / "chex.log").read_text()
    assert json.loads((out / "chex" / "summary.json").read_text())["test_accuracy"] == first["test_accuracy"]


def test_gpu_paper_script_fails_fast_without_data(tmp_path):
    done = run_script(tmp_path / "out", CIFAR10=str(tmp_path / "missing.tar.gz"))
    assert done.returncode == 2 and "no CIFAR-10 at" in done.stderr
    assert not (tmp_path / "out").exists()
    done = run_script(tmp_path / "out", CIFAR10=str(tmp_path), METHODS="dense hrank")
    assert done.returncode == 2 and "unknown run 'hrank'" in done.stderr
