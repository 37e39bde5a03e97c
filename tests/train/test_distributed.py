"""Two CPU processes under torchrun (gloo): replicas stay bitwise identical through pruning decisions, the result
matches one process of the same global batch, and a run whose process is killed resumes from its checkpoint."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prunekit import io
from prunekit.config import load_config
from prunekit.train.trainer import Trainer

SETS = ["data.name=synthetic", "data.synthetic_size=256", "data.synthetic_shape=[3,16,16]", "model.name=small_cnn",
        "train.batch_size=32", "train.threads=1", "optim.lr=0.05", "data.crop_padding=2"]
REPRUNE = ["method.name=reprune", "method.params.sparsity=0.5", "method.params.t_prune=2",
           "method.params.interval=1"]


def torchrun(run_dir: Path, sets: list[str], nproc: int = 2, resume: bool = False) -> subprocess.Popen:
    config = run_dir.parent / "ddp.yaml"
    config.write_text("name: ddp\n")
    args = (["--resume", str(run_dir)] if resume
            else [str(config), "--out", str(run_dir)] + [a for s in sets for a in ("--set", s)])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "prunekit", "train", *args, "--quiet", "--nproc", str(nproc)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


RIGL = ["method.name=rigl", "method.params.sparsity=0.8", "method.params.update_every=3"]


@pytest.mark.parametrize("method", [[], REPRUNE, RIGL], ids=["dense", "reprune", "rigl"])
def test_two_processes_keep_replicas_identical_and_match_one_process(tmp_path, method):
    sets = SETS + ["train.epochs=3"] + method
    code, output = finish(torchrun(tmp_path / "two", sets))
    assert code == 0, output[-2000:]
    two = io.read_json(tmp_path / "two" / "summary.json")
    assert two["processes"] == 2 and two["replicas_identical"] is True
    one = Trainer(load_config(None, sets), tmp_path / "one", quiet=True).fit()
    decisions = [r for r in io.read_jsonl(tmp_path / "two" / "metrics.jsonl") if r["kind"] == "decision"]
    if not method:
        # Same global batches, gradients averaged over the two halves; BatchNorm normalises each half on its own,
        # so the runs are not bitwise equal. Stated tolerance: 5 points of test accuracy, 10% of the final loss.
        assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.05
        assert two["train_flops"] == one["train_flops"]  # the ledger counts the global batches
        assert abs(two["test_loss"] - one["test_loss"]) <= 0.1 * one["test_loss"]
    elif method is REPRUNE:
        # Each run's allocation follows its own BN scales, so only the total kept (the sparsity) must agree.
        kept = lambda run: sum(  # noqa: E731  (channels kept by the last plan)
            [r for r in io.read_jsonl(tmp_path / run / "metrics.jsonl") if "kept" in r][-1]["kept"].values())
        assert kept("two") == kept("one")
        assert len(decisions) == 3  # initial plan + one per epoch up to t_prune, logged once (rank 0)
    else:  # the same masks on every replica, at the target density
        assert two["weight_density"] == pytest.approx(one["weight_density"], abs=1e-9)
        assert any(r["at"] == "step" for r in decisions)


def test_a_killed_process_stops_the_run_and_it_resumes_from_the_checkpoint(tmp_path):
    sets = SETS + ["train.epochs=10"] + REPRUNE
    code, output = finish(torchrun(tmp_path / "full", sets))
    assert code == 0, output[-2000:]
    proc = torchrun(tmp_path / "cut", sets)
    latest = tmp_path / "cut" / "checkpoints" / "latest.json"
    deadline = time.time() + 180
    while not (latest.exists() and io.read_json(latest)["epoch"] >= 2):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.02)
    agents = children(proc.pid)  # prunekit train --nproc 2 -> torchrun -> two training processes
    workers = [pid for agent in agents for pid in children(agent)]
    assert len(workers) == 2, (agents, workers)
    os.kill(max(workers), signal.SIGKILL)  # one training process dies mid-run
    code, output = finish(proc)
    assert code != 0 and "resume" in output
    assert not (tmp_path / "cut" / "summary.json").exists()
    code, output = finish(torchrun(tmp_path / "cut", [], resume=True))
    assert code == 0, output[-2000:]
    a = io.load_tensors(tmp_path / "full" / "model" / "model.safetensors")
    b = io.load_tensors(tmp_path / "cut" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert io.read_json(tmp_path / "cut" / "summary.json")["replicas_identical"] is True
