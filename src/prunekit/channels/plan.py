"""ChannelPlan: the channel indices each group keeps. Groups the plan does not name keep all their channels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from prunekit.channels.groups_base import ChannelGroup
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

    def rounded(self, groups: Iterable[ChannelGroup], round_to: int,
                scores: Mapping[str, torch.Tensor] | None = None) -> ChannelPlan:
        """A plan whose kept counts are multiples of `round_to` (fast kernels on vector units).

        Rule: a count is rounded UP to the next multiple of `round_to`, capped at the group size (so rounding
        never removes a channel the plan chose to keep; a group smaller than `round_to` keeps everything). The
        channels added back are those not kept with the highest `scores[name]` (ties: lowest index), or, without
        scores for that group, the lowest indices not kept. Groups the plan does not name stay full.
        """
        if round_to < 1:
            raise UserError(f"round_to must be >= 1, got {round_to}")
        groups = list(groups)
        self.validate(groups, min_channels=0)
        new_keep: dict[str, list[int]] = {}
        for group in groups:
            if group.name not in self.keep:
                continue
            kept = self.keep[group.name]
            target = min(group.size, -(-len(kept) // round_to) * round_to)
            missing = target - len(kept)
            if missing <= 0:
                new_keep[group.name] = list(kept)
                continue
            kept_set = set(kept)
            candidates = [i for i in range(group.size) if i not in kept_set]
            if scores is not None and group.name in scores:
                score = scores[group.name].detach().flatten().double().cpu()
                if score.numel() != group.size:
                    raise UserError(f"scores for group {group.name!r} have {score.numel()} entries, "
                                    f"expected {group.size}")
                candidates.sort(key=lambda i: (-float(score[i]), i))
            new_keep[group.name] = sorted(kept + candidates[:missing])
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
