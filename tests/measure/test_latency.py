"""Latency measurements: the fields are sane and nothing is left changed (no timing thresholds)."""

from __future__ import annotations

import torch

from prunekit.measure import LatencyResult, measure_latency, measure_train_step
from prunekit.models import create_model


def _fields_are_sane(result: LatencyResult, batch_size: int, repeats: int) -> None:
    assert 0 < result.p10_ms <= result.median_ms <= result.p90_ms
    assert result.batch_size == batch_size and result.repeats == repeats
    assert result.threads >= 1 and result.device == "cpu"
    assert set(result.to_json()) >= {"median_ms", "p10_ms", "p90_ms", "batch_size", "threads", "channels_last"}


def test_measure_latency_fields_and_restores_state():
    model = create_model("small_cnn", in_channels=1).train()
    threads_before = torch.get_num_threads()
    result = measure_latency(model, torch.randn(4, 1, 8, 8), warmup=1, repeats=5, threads=1)
    _fields_are_sane(result, batch_size=4, repeats=5)
    assert result.threads == 1 and not result.channels_last
    assert torch.get_num_threads() == threads_before
    assert model.training


def test_measure_latency_channels_last_leaves_the_model_alone():
    model = create_model("small_cnn", in_channels=1)
    result = measure_latency(model, torch.randn(2, 1, 8, 8), warmup=0, repeats=3, channels_last=True)
    _fields_are_sane(result, batch_size=2, repeats=3)
    assert result.channels_last
    assert model.features.conv1.weight.is_contiguous()  # still NCHW


def test_measure_train_step_works_on_a_copy():
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    labels = torch.tensor([0, 1, 2, 3])
    result = measure_train_step(model, torch.randn(4, 1, 8, 8), labels, warmup=1, repeats=3, lr=0.1)
    _fields_are_sane(result, batch_size=4, repeats=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_spread_flags_unsteady_timings():
    def result(p10: float, p90: float) -> LatencyResult:
        return LatencyResult(median_ms=p10, p10_ms=p10, p90_ms=p90, batch_size=1, threads=1, channels_last=False,
                             repeats=10)

    assert result(2.0, 2.4).spread == 1.2 and not result(2.0, 2.4).noisy
    assert result(2.9, 278.0).noisy  # seen on this machine with another process holding the cores


def test_measure_train_step_adds_the_extra_loss_to_every_step():
    model = create_model("small_cnn", in_channels=1)
    calls = []

    def penalty(trained):
        assert trained is not model  # the copy that trains
        calls.append(1)
        return sum(p.square().sum() for p in trained.parameters())

    measure_train_step(model, torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)), warmup=1, repeats=3,
                       extra_loss=penalty)
    assert len(calls) == 4
