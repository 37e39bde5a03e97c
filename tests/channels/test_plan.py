"""ChannelPlan: validation, rounding, JSON round trip (hand-computed expectations)."""

from __future__ import annotations

import json

import pytest
import torch

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.errors import UserError


def group(name: str, size: int) -> ChannelGroup:
    return ChannelGroup(name=name, size=size, producers=(name,), consumers=(), norms=(), bn=None, internal=True,
                        macs_share=0.0)


GROUPS = [group("a", 8), group("b", 20), group("c", 5)]


def test_kept_lists_the_plan_entry_or_every_channel() -> None:
    plan = ChannelPlan({"a": [1, 4, 6]})
    assert plan.kept(GROUPS[0]) == [1, 4, 6] and plan.kept(GROUPS[2]) == [0, 1, 2, 3, 4]
    plan.kept(GROUPS[0]).append(7)  # a copy: the plan is not changed through it
    assert plan.keep["a"] == [1, 4, 6] and ChannelPlan().kept(GROUPS[1]) == list(range(20))


def test_full_keeps_everything() -> None:
    assert ChannelPlan.full(GROUPS).keep == {"a": list(range(8)), "b": list(range(20)), "c": list(range(5))}


@pytest.mark.parametrize("keep,message", [
    ({"zz": [0]}, "unknown group"),
    ({"a": [1, 1]}, "repeats"),
    ({"a": [2, 1]}, "increasing"),
    ({"a": [0, 8]}, "outside"),
    ({"a": [-1, 0]}, "outside"),
    ({"a": []}, "at least 1"),
    ({"a": [0.5]}, "integer"),
])
def test_validate_rejects(keep: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        ChannelPlan(keep).validate(GROUPS)


def test_validate_min_channels() -> None:
    ChannelPlan({"a": [0, 3]}).validate(GROUPS, min_channels=2)
    with pytest.raises(UserError, match="at least 3"):
        ChannelPlan({"a": [0, 3]}).validate(GROUPS, min_channels=3)
    ChannelPlan({"c": [0, 1, 2, 3, 4]}).validate(GROUPS, min_channels=8)  # smaller group: all of it suffices


def test_rounded_up_to_multiple_with_lowest_missing_indices() -> None:
    plan = ChannelPlan({"a": [1, 6, 7], "b": [0, 2, 4, 6, 8, 10, 12, 14, 16], "c": [3]})
    rounded = plan.rounded(GROUPS, 4)
    assert rounded.keep["a"] == [0, 1, 6, 7]                      # 3 -> 4: adds index 0
    assert rounded.keep["b"] == [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16]  # 9 -> 12: adds 1, 3, 5
    assert rounded.keep["c"] == [0, 1, 2, 3]                      # 1 -> 4 (capped at 5 anyway)
    assert plan.rounded(GROUPS, 8).keep["c"] == [0, 1, 2, 3, 4]  # 1 -> 8, capped at the group size 5
    exact = ChannelPlan({"a": [0, 1, 2, 3]})
    assert exact.rounded(GROUPS, 4).keep == exact.keep             # already a multiple: unchanged
    assert "b" not in exact.rounded(GROUPS, 4).keep               # unnamed groups stay full


def test_rounded_adds_back_highest_scores() -> None:
    plan = ChannelPlan({"a": [1, 6, 7]})
    scores = {"a": torch.tensor([0.0, 9.0, 0.5, 3.0, 0.1, 2.0, 9.0, 9.0])}
    assert plan.rounded(GROUPS, 4, scores).keep["a"] == [1, 3, 6, 7]
    assert plan.rounded(GROUPS, 6, scores).keep["a"] == [1, 2, 3, 5, 6, 7]
    with pytest.raises(UserError, match="entries"):
        plan.rounded(GROUPS, 4, {"a": torch.ones(3)})
    with pytest.raises(UserError, match="round_to"):
        plan.rounded(GROUPS, 0)


def test_json_round_trip_through_text() -> None:
    plan = ChannelPlan({"a": [0, 5], "b": [19]})
    again = ChannelPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    with pytest.raises(UserError):
        ChannelPlan.from_json({"keep": {"a": "0,1"}})
    with pytest.raises(UserError):
        ChannelPlan.from_json({"plan": {}})
