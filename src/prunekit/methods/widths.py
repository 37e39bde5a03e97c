"""`round_to` for every channel method: an integer (kept counts rounded up to its multiples) or "hardware"
(this device's fast widths within the MACs budget, `channels.widths`), behind one object a method holds.

    rounding = PlanRounding(p.round_to, p.min_channels)
    rounding.prepare(ctx, groups, plan_macs)             # hardware: time the groups once (cached on disk)
    counts = rounding.search_counts(groups, counts)      # what a MACs-budget search should assume
    plan, info = rounding.apply(plan, groups, scores)    # the rounded plan and what the rounding did

The timing tables are part of the method's state (`state_dict`), so a resumed run rounds as the run did.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.channels.widths import HARDWARE, WidthRounder, check_round_to
from prunekit.measure.width_timing import WidthTimer
from prunekit.methods.budget import PlanMacs

ROUND_TO_HELP = ("kept counts: an integer n rounds them up to multiples of n (1: no rounding); 'hardware' times "
                 "each group's layers at every width on this device once (cached under $PRUNEKIT_CACHE/widths) "
                 "and rounds to the nearest fast width, then steps groups down (most time saved per MAC first) "
                 "until the plan is within the MACs of the unrounded counts")
DEFAULT_TIMING_BATCH = 64  # when the run has no training batches to read the batch size from


def timing_batch(ctx: Any) -> int:
    """The training batch size, read from the first plain training batch (the context does not carry it)."""
    batches = getattr(ctx, "train_batches", None)
    if batches is None:
        return DEFAULT_TIMING_BATCH
    for images, _ in batches():
        return int(images.shape[0])
    return DEFAULT_TIMING_BATCH


def only_within(scores: torch.Tensor, kept: Sequence[int]) -> torch.Tensor:
    """`scores` (float64) with -inf outside `kept`: for methods whose plans only shrink, rounding may add back a
    channel removed at this decision, never one removed earlier (while the count stays within the old one)."""
    out = torch.full(scores.shape, float("-inf"), dtype=torch.float64)
    out[list(kept)] = scores.detach().double().cpu()[list(kept)]
    return out


class PlanRounding:
    """The `round_to` of one method: an int, or "hardware" with its timing tables (measured or restored)."""

    def __init__(self, round_to: int | str, min_channels: int = 1, timer: WidthTimer | None = None) -> None:
        check_round_to(round_to)
        self.round_to, self.min_channels, self.timer = round_to, min_channels, timer
        self.tables: dict[str, dict[int, float]] | None = None
        self.rounder: WidthRounder | None = None
        self.macs: PlanMacs | None = None
        self.groups: list[ChannelGroup] = []
        self.timing_seconds: float | None = None  # wall time of this run's width timing (None: restored)
        self.reported = False  # the grids go into the first rounding's info only

    @property
    def hardware(self) -> bool:
        return self.round_to == HARDWARE

    @property
    def step(self) -> int:
        """The integer multiple (1 under hardware rounding, which search_counts leaves alone)."""
        return 1 if self.hardware else int(self.round_to)

    def prepare(self, ctx: Any, groups: Sequence[ChannelGroup], macs: PlanMacs) -> None:
        """Hardware: build the rounder from the restored tables, else time the groups (cache first)."""
        self.groups, self.macs = list(groups), macs
        if not self.hardware:
            return
        if self.tables is None:
            start = time.perf_counter()
            timer = self.timer or WidthTimer(timing_batch(ctx), ctx.device,
                                             ctx.example_inputs.is_contiguous(memory_format=torch.channels_last)
                                             and not ctx.example_inputs.is_contiguous())
            self.tables = timer.group_tables(ctx.supernet, self.groups, ctx.example_inputs)
            self.timing_seconds = time.perf_counter() - start
        sizes = {g.name: g.size for g in self.groups}
        self.rounder = WidthRounder.from_tables({n: t for n, t in self.tables.items() if n in sizes}, sizes,
                                                self.min_channels, fit=True)

    def search_counts(self, groups: Sequence[ChannelGroup], counts: Sequence[int]) -> list[int]:
        """Counts as a budget search should price them: rounded up to the integer multiple; under hardware
        rounding unchanged (the rounding afterwards keeps the plan within the MACs of these counts)."""
        step = self.step
        return [min(g.size, -(-int(c) // step) * step) for g, c in zip(groups, counts, strict=True)]

    def macs_of(self, counts: Mapping[str, int]) -> int:
        assert self.macs is not None, "PlanRounding.prepare first"
        return self.macs([int(counts.get(g.name, g.size)) for g in self.macs.groups])

    def target_counts(self, counts: Mapping[str, int], budget: float | None = None) -> tuple[dict[str, int],
                                                                                              dict[str, Any]]:
        """The counts the rounding turns `counts` into (for methods that pick channels after the counts)."""
        if not self.hardware:
            sizes = {g.name: g.size for g in self.groups}
            return {n: min(sizes[n], -(-int(c) // self.step) * self.step) for n, c in counts.items()}, {}
        assert self.rounder is not None, "PlanRounding.prepare first"
        new, info = self.rounder.round_counts(counts, self.macs_of, budget)
        return new, self._info(info)

    def apply(self, plan: ChannelPlan, groups: Sequence[ChannelGroup],
              scores: Mapping[str, torch.Tensor] | None = None,
              budget: float | None = None) -> tuple[ChannelPlan, dict[str, Any]]:
        """The plan rounded (ChannelPlan.rounded's rules) and, under hardware rounding, what it did. Entries of
        the plan for groups not in `groups` stay as they are (and count in the MACs as they are)."""
        names = {g.name for g in groups}
        inside = ChannelPlan({n: k for n, k in plan.keep.items() if n in names})
        outside = {n: k for n, k in plan.keep.items() if n not in names}
        if not self.hardware:
            return ChannelPlan({**outside, **inside.rounded(groups, self.step, scores).keep}), {}
        assert self.rounder is not None, "PlanRounding.prepare first"
        sizes = {g.name: g.size for g in self.groups}
        fixed = {n: len(k) for n, k in outside.items() if n in sizes}

        def macs_of(counts: Mapping[str, int]) -> int:
            return self.macs_of({**fixed, **counts})

        rounded = inside.rounded(groups, self.rounder, scores, macs_of=macs_of, budget=budget)
        return ChannelPlan({**outside, **rounded.keep}), self._info(self.rounder.last_info)

    def _info(self, info: Mapping[str, Any]) -> dict[str, Any]:
        out = {**info, "round_to": HARDWARE}
        if not self.reported:
            out.update({"width_grids": self.grids(), "width_timing_seconds": self.timing_seconds})
            self.reported = True
        return out

    def priced(self, plan: ChannelPlan, groups: Sequence[ChannelGroup],
               scores: Mapping[str, torch.Tensor] | None = None) -> ChannelPlan:
        """The plan as a MACs-budget search should price it: rounded up to the integer multiple; under hardware
        rounding unchanged (`apply` afterwards keeps the plan within its MACs)."""
        return plan if self.hardware or self.step == 1 else plan.rounded(groups, self.step, scores)

    def round_once(self, ctx: Any, plan: ChannelPlan, groups: Sequence[ChannelGroup],
                   scores: Mapping[str, torch.Tensor] | None = None,
                   caps: Mapping[str, int] | None = None) -> tuple[ChannelPlan, dict[str, Any]]:
        """For a method outside the prune-regrow schedule: prepare on all of ctx.groups (MACs over the whole
        model) at the first call, then round `groups` of the plan. `caps[name]`: the group keeps at most that
        many channels (a shrink-only method's previous count; capping drops the lowest scores, so with
        `only_within` scores exactly the previous channels stay). Integer round_to 1: the plan as it is."""
        if not self.hardware and self.step == 1:
            return plan, {}
        if self.macs is None:
            self.prepare(ctx, ctx.groups, PlanMacs(ctx.supernet, ctx.groups, ctx.example_inputs))
        rounded, info = self.apply(plan, groups, scores)
        over = {g.name: caps[g.name] for g in groups
                if caps is not None and g.name in caps and len(rounded.kept(g)) > caps[g.name]}
        if over:
            rounded = rounded.with_counts(groups, over, scores)
            info = {**info, "capped_groups": sorted(over)}
        return rounded, info

    def grids(self) -> dict[str, list[int]]:
        return {} if self.rounder is None else {n: self.rounder.grid(n) for n in self.rounder.grids}

    def state_dict(self) -> dict[str, Any]:
        if self.tables is None:
            return {}
        return {"width_tables": {n: {str(w): t for w, t in sorted(table.items())} for n, table in self.tables.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        tables = state.get("width_tables")
        if isinstance(tables, Mapping):
            self.tables = {str(n): {int(w): float(t) for w, t in table.items()} for n, table in tables.items()}


__all__ = ["DEFAULT_TIMING_BATCH", "ROUND_TO_HELP", "PlanRounding", "only_within", "timing_batch"]
