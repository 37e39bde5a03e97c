"""A 2-round federation on Flower's simulation engine (Ray), 2 clients on a digits subset: the run directory
is complete, round lines carry the bits, the saved model loads with prunekit.load and scores the summary's
accuracy, the mask keeps the target density, and readjusting clients changed the mask."""

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

import prunekit  # noqa: E402
from prunekit import io  # noqa: E402
from prunekit.config import DataConfig  # noqa: E402
from prunekit.data import BatchLoader, load_data  # noqa: E402
from prunekit.federated.runner import federate  # noqa: E402

CONFIG = """
name: fed-test
data: {name: digits, augment: false, train_subset: 300, test_subset: 100}
model: {name: small_cnn, kwargs: {widths: [4, 8, 8]}}
optim: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0}
schedule: {name: constant}
train: {batch_size: 32, threads: 1}
federated: {clients: 2, rounds: 2, local_epochs: 2, partition: dirichlet, beta: 1.0, sparsity: 0.5,
            readjust_ratio: 0.3, readjust_interval: 1, ratio_decay: constant, decay_end: 1.0}
"""


def test_two_rounds_on_the_simulation_engine(tmp_path):
    config = tmp_path / "fed.yaml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    summary = federate(config, out=str(run), quiet=True)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "model/pruned.json", "model/masks.safetensors"):
        assert (run / name).is_file(), name
    rounds = [r for r in io.read_jsonl(run / "metrics.jsonl") if r["kind"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["clients_replied"] == 2 and not r["failures"] for r in rounds)
    assert all(r["density"] == pytest.approx(0.5, abs=0.01) for r in rounds)
    assert rounds[1]["cum_upload_bits"] == rounds[0]["upload_bits"] + rounds[1]["upload_bits"]
    assert sum(r["connections_changed"] for r in rounds) > 0  # clients readjusted their masks
    assert summary["method"] == "feddst" and summary["upload_bits"] == rounds[1]["cum_upload_bits"]

    model = prunekit.load(run)
    masks = io.load_tensors(run / "model" / "masks.safetensors")
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask.bool()] == 0)
    assert np.mean([m.float().mean().item() for m in masks.values()]) == pytest.approx(0.5, abs=0.01)
    splits = load_data(DataConfig(name="digits", augment=False, train_subset=300, test_subset=100))
    loader = BatchLoader(splits.test, 512, mean=splits.mean, std=splits.std, shuffle=False, augment=False)
    assert prunekit.evaluate(model, loader)[1] == pytest.approx(summary["test_accuracy"])
