"""Width timing (measure/width_timing.py): the layers timed for each group match the subnet's layers (checked by
materializing), the cache round-trips, and a bad or mismatched cache file is measured again. The timings are
injected (no real timing here, except one tiny call of time_op that checks only its keys)."""

import json
import math

import pytest
import torch

from prunekit.channels import ChannelPlan, channel_groups, materialize
from prunekit.measure.width_timing import (
    WidthTimer,
    cache_root,
    candidate_widths,
    group_ops,
    input_shapes,
    time_op,
)
from prunekit.models import create_model


def fake_timer(calls):
    """A staircase of 8 over the op's varying dim, recording which ops were timed."""
    def timer(op, widths):
        calls.append(op.key)
        return {w: 1e-3 * math.ceil(op.dim_at(w) / 8) for w in widths}
    return timer


def small():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x = torch.zeros(2, 1, 8, 8)
    return model, x, channel_groups(model, x, policy="all")


def test_ops_rebuild_the_layers_the_subnet_has_at_each_width():
    model, x, groups = small()
    shapes = input_shapes(model, x)
    modules = dict(model.named_modules())
    for group in groups:
        ops = group_ops(model, group, shapes)
        assert ops, group.name
        for width in (1, group.size // 2, group.size):
            subnet = materialize(model, ChannelPlan({group.name: list(range(width))}), groups)
            sub_shapes = input_shapes(subnet, x)
            sub_modules = dict(subnet.named_modules())
            layers = {p.module for p in group.slices if p.tensor == "weight" and
                      isinstance(modules[p.module], torch.nn.Conv2d | torch.nn.Linear)}
            assert len(ops) == len(layers)
            built = sorted((tuple(op.build(width, 3, torch.device("cpu"), torch.contiguous_format)[0].weight.shape),
                            tuple(op.build(width, 3, torch.device("cpu"), torch.contiguous_format)[1].shape[1:]))
                           for op in ops)
            expected = sorted((tuple(sub_modules[name].weight.shape), sub_shapes[name]) for name in layers)
            assert built == expected, (group.name, width)


def test_candidate_widths():
    assert candidate_widths(5) == [1, 2, 3, 4, 5]
    wide = candidate_widths(258)
    assert wide[:64] == list(range(1, 65)) and 72 in wide and 68 not in wide and wide[-2:] == [256, 258]


def test_cache_round_trip_reads_instead_of_timing(tmp_path):
    model, x, groups = small()
    calls = []
    first = WidthTimer(16, cache_dir=tmp_path, op_timer=fake_timer(calls)).group_tables(model, groups, x)
    assert calls and len(calls) == len(set(calls))  # identical layers would be timed once
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    again = []
    second = WidthTimer(16, cache_dir=tmp_path, op_timer=fake_timer(again)).group_tables(model, groups, x)
    assert again == [] and second == first
    # the group's time is the sum of its layers' times (staircase of 8 over each layer's varying dim)
    name = groups[0].name
    ops = group_ops(model, groups[0], input_shapes(model, x))
    assert first[name][3] == pytest.approx(sum(1e-3 * math.ceil(op.dim_at(3) / 8) for op in ops))
    # another batch is another key, so another file
    WidthTimer(32, cache_dir=tmp_path, op_timer=fake_timer(again)).group_tables(model, groups, x)
    assert again and len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("content", ["{not json", json.dumps({"key": {"device": "other"}, "ops": {}}),
                                     json.dumps([1, 2]), json.dumps({"key": None, "ops": {"x": {"a": 1}}})])
def test_bad_or_mismatched_cache_is_measured_again_and_rewritten(tmp_path, content):
    model, x, groups = small()
    timer = WidthTimer(16, cache_dir=tmp_path, op_timer=fake_timer([]))
    path = timer.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    with pytest.warns(UserWarning, match="measuring again"):
        tables = timer.group_tables(model, groups, x)
    assert timer.measured and set(tables) == {g.name for g in groups}
    data = json.loads(path.read_text())
    assert data["key"] == timer.key()
    calls = []
    assert WidthTimer(16, cache_dir=tmp_path, op_timer=fake_timer(calls)).group_tables(model, groups, x) == tables
    assert calls == []


def test_cache_root_follows_prunekit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert WidthTimer(8).cache_path().parent == tmp_path / "widths"


def test_time_op_returns_one_positive_time_per_width():
    model, x, groups = small()
    op = group_ops(model, groups[0], input_shapes(model, x))[0]
    times = time_op(op, [1, 2], batch=2, device=torch.device("cpu"), memory_format=torch.contiguous_format,
                    rounds=1)
    assert set(times) == {1, 2} and all(t > 0 for t in times.values())
