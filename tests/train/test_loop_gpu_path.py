"""The GPU path, checked on the CPU: a dataset resident on the device (data.on_device) trains bitwise like the host
loader, and torch.compile of the training module (train.compile) gives the eager losses and is compiled again for
each new subnet a decision makes."""

import pytest
import torch

from prunekit import io
from prunekit.config import load_config
from prunekit.train.trainer import Trainer


def reprune_config(*sets):
    """The quickstart-reprune preset cut to 3 epochs on 256 digits, decisions at the start and after epochs 1-2."""
    base = ["train.epochs=3", "method.params.t_prune=2", "method.params.interval=1", "data.train_subset=256",
            "data.test_subset=64"]
    return load_config("configs/quickstart-reprune.yaml", base + list(sets))


TIME_KEYS = {"epoch_time_s", "data_time_s", "train_time_s", "select_seconds"}


def without_times(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def weights(run):
    return io.load_tensors(run / "model" / "model.safetensors")


def epoch_losses(run):
    return [r["train_loss"] for r in io.read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"]


def test_on_device_data_trains_bitwise_like_the_host_loader(tmp_path):
    Trainer(reprune_config(), tmp_path / "host", quiet=True).fit()
    trainer = Trainer(reprune_config("data.on_device=true"), tmp_path / "device", quiet=True)
    trainer.fit()
    assert trainer.train_loader.resident and trainer.plain_train_loader.dataset is trainer.train_loader.dataset
    host, device = weights(tmp_path / "host"), weights(tmp_path / "device")
    assert host.keys() == device.keys()
    assert all(torch.equal(host[k], device[k]) for k in host)
    assert (without_times(io.read_jsonl(tmp_path / "host" / "metrics.jsonl"))
            == without_times(io.read_jsonl(tmp_path / "device" / "metrics.jsonl")))


def compiled_against_eager(tmp_path, monkeypatch, backend):
    """Train eager and compiled; returns (eager run, compiled run, how many modules were compiled)."""
    Trainer(reprune_config(), tmp_path / "eager", quiet=True).fit()
    real_compile, compiled = torch.compile, []

    def compile_with(module, **kwargs):
        compiled.append(module)
        return real_compile(module, **(kwargs if backend == "inductor" else {"backend": backend}))

    monkeypatch.setattr(torch, "compile", compile_with)
    Trainer(reprune_config("train.compile=true"), tmp_path / "compiled", quiet=True).fit()
    return tmp_path / "eager", tmp_path / "compiled", compiled


def check_compiled_run(eager, compiled, modules):
    decisions = [r for r in io.read_jsonl(compiled / "metrics.jsonl") if r["kind"] == "decision"]
    shapes = {r["macs_after"] for r in decisions} | {decisions[0]["macs_before"]}
    assert len(shapes) >= 3  # the subnet really changed shape twice after the first prune
    # the supernet, then every subnet a plan materialized: each new module is compiled, none reused
    assert len(modules) == 1 + sum("macs_after" in r for r in decisions)
    assert len({id(m) for m in modules}) == len(modules)
    assert epoch_losses(compiled) == pytest.approx(epoch_losses(eager), rel=1e-4)
    summary, reference = io.read_json(compiled / "summary.json"), io.read_json(eager / "summary.json")
    assert summary["macs"] == reference["macs"] < summary["dense_macs"]
    assert summary["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-4)


def test_compile_matches_eager_and_survives_decisions(tmp_path, monkeypatch):
    """aot_eager: dynamo traces forward and backward (what inductor would be given) without the C++ build."""
    check_compiled_run(*compiled_against_eager(tmp_path, monkeypatch, "aot_eager"))


@pytest.mark.slow
def test_inductor_compile_matches_eager_and_survives_decisions(tmp_path, monkeypatch):
    """The real default backend (about a minute on a cold inductor cache)."""
    check_compiled_run(*compiled_against_eager(tmp_path, monkeypatch, "inductor"))


class Interrupt(Exception):
    pass


def test_a_run_resumes_bitwise_with_its_data_moved_on_device(tmp_path):
    """data.on_device is a resumable key: it changes where batches are built, not which."""
    cfg = reprune_config("train.checkpoint_every_steps=5")
    Trainer(cfg, tmp_path / "full", quiet=True).fit()

    def kill(step):
        if step == 7:  # mid-epoch 1 (4 steps an epoch), after the checkpoint at step 5
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(cfg, tmp_path / "cut", quiet=True, on_step=kill).fit()
    resumed = Trainer.resume(tmp_path / "cut", ["data.on_device=true"], quiet=True)
    resumed.fit()
    assert resumed.train_loader.resident
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)
    assert io.read_yaml(tmp_path / "cut" / "config.yaml")["data"]["on_device"] is True
