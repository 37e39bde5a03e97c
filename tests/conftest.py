"""Test-wide settings: one torch thread keeps the suite predictable on a 2-core machine (and avoids
oversubscription when several test processes share the cores). The tiny test networks in tests/channels/zoo.py
are importable from every test directory (`from zoo import ...`) under pytest's importlib mode."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / "channels"))

torch.set_num_threads(1)


import pytest  # noqa: E402

TIME_KEYS = {"epoch_time_s", "data_time_s", "wall_s", "train_time_s", "select_seconds"}  # wall-clock figures


class Interrupt(Exception):
    """Raised from `on_step` to simulate a run killed mid-epoch."""


def without_times(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


@pytest.fixture
def check_exact_resume(tmp_path):
    """Run `cfg` uninterrupted into tmp_path/full; run it again into tmp_path/cut, killed at global step
    `kill_step(steps_per_epoch)`, and resume. Asserts bitwise-equal final weights and equal metrics (times aside);
    returns the cut run's directory."""
    from prunekit import io
    from prunekit.train.trainer import Trainer

    def check(cfg, kill_step):
        Trainer(cfg, tmp_path / "full", quiet=True).fit()
        records = io.read_jsonl(tmp_path / "full" / "metrics.jsonl")
        steps_per_epoch = next(r["step"] for r in records if r["kind"] == "epoch")
        stop_at = kill_step(steps_per_epoch)

        def kill(step):
            if step == stop_at:
                raise Interrupt

        with pytest.raises(Interrupt):
            Trainer(cfg, tmp_path / "cut", quiet=True, on_step=kill).fit()
        cut_dir = tmp_path / "cut"
        checkpoint_epoch = io.read_json(cut_dir / "checkpoints" / "latest.json")["epoch"]
        assert checkpoint_epoch == stop_at // steps_per_epoch  # the kill really was mid-run
        Trainer.resume(cut_dir, quiet=True).fit()
        full = io.load_tensors(tmp_path / "full" / "model" / "model.safetensors")
        cut = io.load_tensors(cut_dir / "model" / "model.safetensors")
        assert full.keys() == cut.keys()
        for name in full:
            assert torch.equal(full[name], cut[name]), name
        assert without_times(records) == without_times(io.read_jsonl(cut_dir / "metrics.jsonl"))
        return cut_dir

    return check
