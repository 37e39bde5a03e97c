"""ChannelPlan: the channel indices each group keeps. Groups the plan does not name keep all their channels."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from prunekit.channels.groups_base import ChannelGroup
from prunekit.channels.widths import WidthRounder
from prunekit.errors import UserError


@dataclass
class ChannelPlan:
    """keep[group name] = sorted, unique channel indices that survive."""

    keep: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def full(cls, groups: Iterable[ChannelGroup]) -> ChannelPlan:
        """The plan that keeps every channel of every group."""
        return cls({g.name: list(range(g.size)) for g in groups})

    def kept(self, group: ChannelGroup) -> list[int]:
        """The channels `group` keeps: the plan's list, or all of them when the plan does not name the group."""
        if group.name not in self.keep:
            return list(range(group.size))
        return list(self.keep[group.name])

    def kept_counts(self, groups: Iterable[ChannelGroup]) -> dict[str, int]:
        return {g.name: len(self.keep[g.name]) if g.name in self.keep else g.size for g in groups}

    def validate(self, groups: Iterable[ChannelGroup], min_channels: int = 1) -> None:
        """Raise a UserError unless every entry names a known group and keeps unique, sorted, in-range indices,
        at least `min_channels` of them (or the whole group when it is smaller than that)."""
        sizes = {g.name: g.size for g in groups}
        for name, indices in self.keep.items():
            if name not in sizes:
                raise UserError(f"channel plan names unknown group {name!r}; known groups: "
                                f"{', '.join(list(sizes)[:8])}{' ...' if len(sizes) > 8 else ''}")
            size = sizes[name]
            if any(not isinstance(i, int) or isinstance(i, bool) for i in indices):
                raise UserError(f"channel plan for group {name!r} must list integer indices")
            if len(set(indices)) != len(indices):
                raise UserError(f"channel plan for group {name!r} repeats an index")
            if list(indices) != sorted(indices):
                raise UserError(f"channel plan for group {name!r} must list indices in increasing order")
            if indices and (indices[0] < 0 or indices[-1] >= size):
                raise UserError(f"channel plan for group {name!r} has an index outside [0, {size})")
            if len(indices) < min(min_channels, size):
                raise UserError(f"channel plan for group {name!r} keeps {len(indices)} channels; "
                                f"at least {min(min_channels, size)} required")

    def rounded(self, groups: Iterable[ChannelGroup], round_to: int | WidthRounder,
                scores: Mapping[str, torch.Tensor] | None = None,
                macs_of: Callable[[Mapping[str, int]], float] | None = None,
                budget: float | None = None) -> ChannelPlan:
        """A plan whose kept counts are multiples of `round_to` (fast kernels on vector units), or, given a
        `channels.widths.WidthRounder`, widths on this device's fast grids within a MACs budget.

        Integer rule: a count is rounded UP to the next multiple of `round_to`, capped at the group size (so
        rounding never removes a channel the plan chose to keep; a group smaller than `round_to` keeps
        everything). The channels added back are those not kept with the highest `scores[name]` (ties: lowest
        index), or, without scores for that group, the lowest indices not kept. Groups the plan does not name
        stay full.

        Hardware rule (`WidthRounder.round_counts`): counts go to the nearest fast width, then groups step down
        until `macs_of(counts)` is within `budget` (default: the MACs of this plan's counts); a count that goes
        down drops the kept channels with the lowest scores (ties: highest index). The rounding's outcome is
        in `round_to.last_info`.
        """
        groups = list(groups)
        if isinstance(round_to, WidthRounder):
            if macs_of is None:
                raise ValueError("hardware rounding needs macs_of (counts -> MACs)")
            self.validate(groups, min_channels=0)
            counts = {g.name: len(self.keep[g.name]) for g in groups if g.name in self.keep}
            new_counts, round_to.last_info = round_to.round_counts(counts, macs_of, budget)
            return self.with_counts(groups, new_counts, scores)
        if round_to < 1:
            raise UserError(f"round_to must be >= 1, got {round_to}")
        self.validate(groups, min_channels=0)
        counts = {g.name: min(g.size, -(-len(self.keep[g.name]) // round_to) * round_to)
                  for g in groups if g.name in self.keep}
        return self.with_counts(groups, counts, scores)

    def with_counts(self, groups: Iterable[ChannelGroup], counts: Mapping[str, int],
                    scores: Mapping[str, torch.Tensor] | None = None) -> ChannelPlan:
        """This plan with group `name` keeping exactly `counts[name]` channels (other named groups unchanged):
        channels added are the highest-`scores` ones not kept (ties: lowest index; no scores: lowest indices),
        channels dropped the lowest-`scores` kept ones (ties: highest index; no scores: highest indices)."""
        new_keep = {name: list(kept) for name, kept in self.keep.items()}
        for group in groups:
            if group.name not in counts:
                continue
            kept = self.kept(group)
            target = int(counts[group.name])
            if not 0 <= target <= group.size:
                raise UserError(f"group {group.name!r} cannot keep {target} of {group.size} channels")
            best_first = _best_first(_group_scores(scores, group))
            if target > len(kept):
                kept_set = set(kept)
                candidates = sorted((i for i in range(group.size) if i not in kept_set), key=best_first)
                kept = sorted(kept + candidates[:target - len(kept)])
            elif target < len(kept):
                kept = sorted(sorted(kept, key=best_first)[:target])
            new_keep[group.name] = kept
        return ChannelPlan(new_keep)

    def to_json(self) -> dict[str, Any]:
        return {"keep": {name: list(indices) for name, indices in self.keep.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChannelPlan:
        keep = data.get("keep") if isinstance(data, Mapping) else None
        if not isinstance(keep, Mapping):
            raise UserError("channel plan JSON must be an object with a 'keep' mapping")
        parsed: dict[str, list[int]] = {}
        for name, indices in keep.items():
            if not isinstance(indices, list) or any(not isinstance(i, int) or isinstance(i, bool)
                                                    for i in indices):
                raise UserError(f"channel plan JSON: group {name!r} must map to a list of integers")
            parsed[str(name)] = list(indices)
        return cls(parsed)


def _best_first(score: torch.Tensor | None) -> Callable[[int], tuple[float, int]]:
    """Sort key: highest score first, ties (or no scores) lowest index first."""
    if score is None:
        return lambda i: (0.0, i)
    return lambda i: (-float(score[i]), i)


def _group_scores(scores: Mapping[str, torch.Tensor] | None, group: ChannelGroup) -> torch.Tensor | None:
    if scores is None or group.name not in scores:
        return None
    score = scores[group.name].detach().flatten().double().cpu()
    if score.numel() != group.size:
        raise UserError(f"scores for group {group.name!r} have {score.numel()} entries, expected {group.size}")
    return score
