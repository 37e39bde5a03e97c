"""Training-cost ledger arithmetic against a hand computation, segments, and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from prunekit.errors import UserError
from prunekit.measure import TrainingCostLedger


def test_epochs_and_segments_by_hand():
    ledger = TrainingCostLedger()
    first = ledger.record_epoch(0, macs_per_sample=100, samples=50, wall_s=2.0)
    # training FLOPs = 3 x forward FLOPs = 3 x 2 x MACs per sample x samples
    assert first["train_flops"] == 3 * 2 * 100 * 50 == 30_000
    # epoch 1: pruned after 20 samples, from 100 MACs to 60 MACs per sample for the other 30
    ledger.record_segment(1, macs_per_sample=100, samples=20)
    second = ledger.record_epoch(1, macs_per_sample=60, samples=30, wall_s=1.5)
    assert second["train_flops"] == 6 * (100 * 20 + 60 * 30) == 22_800
    assert second["samples"] == 50
    assert second["segments"] == [{"macs_per_sample": 100, "samples": 20}, {"macs_per_sample": 60, "samples": 30}]
    assert second["cumulative_train_flops"] == 52_800
    assert second["cumulative_train_time_s"] == pytest.approx(3.5)
    assert ledger.totals() == {"train_flops": 52_800, "train_time_s": pytest.approx(3.5)}


def test_json_round_trip_keeps_open_segments():
    ledger = TrainingCostLedger()
    ledger.record_epoch(0, 10, 5, 0.25)
    ledger.record_segment(1, 10, 2)
    restored = TrainingCostLedger.from_json(json.loads(json.dumps(ledger.to_json())))
    assert restored.totals() == ledger.totals()
    record = restored.record_epoch(1, 4, 3, 0.5)
    assert record["train_flops"] == 6 * (10 * 2 + 4 * 3)
    assert restored.totals()["train_flops"] == 6 * 10 * 5 + 6 * (10 * 2 + 4 * 3)


def test_rejects_out_of_order_and_negative_entries():
    ledger = TrainingCostLedger()
    ledger.record_epoch(3, 1, 1, 0.1)
    with pytest.raises(ValueError):
        ledger.record_epoch(3, 1, 1, 0.1)
    ledger.record_segment(4, 1, 1)
    with pytest.raises(ValueError):
        ledger.record_epoch(5, 1, 1, 0.1)  # epoch 4 is still open
    with pytest.raises(ValueError):
        ledger.record_segment(4, -1, 1)


def test_malformed_json_is_a_user_error():
    with pytest.raises(UserError):
        TrainingCostLedger.from_json({"epochs": [{"epoch": 0}]})
