"""Hardware-aware widths: each group's fast-width grid on this device, and rounding kept counts onto it within a
MACs budget. Every channel method with `round_to: hardware` goes through `WidthRounder`.

Grid (`fast_widths`): a group's timing table {width: seconds} (`measure.width_timing`; methods denoise it first
with `staircase_fit`) is made non-decreasing in width (`monotone_fit`). Walking down from the full width, a width
w joins the grid when it is faster, by more than the relative tolerance `tol`, than the narrowest width g already
on it, and the time it saves per channel removed, (t(g) - t(w)) / (g - w), is at least MIN_SAVING_SHARE of the
average time per channel above the fixed cost, (t(g) - t(w0)) / (g - w0), w0 the narrowest width timed (a
layer's time at width 1 is mostly what its other, full dims cost). On a staircase (oneDNN's blocks of 8/16
channels on CPU, tensor-core tiles on GPU: every width of a block costs what its widest does) this keeps the top
of every step; where time grows in proportion to width it keeps widths about `tol` apart in time. Comparing with
the grid's narrowest width, not with every wider width, keeps such a curve from collapsing to the full width
through a chain of small differences. The second condition drops the bottom of a step (17 under blocks of 16:
as slow as 32 but for a small linear part).

Rounding (`WidthRounder.round_counts`), the rule:
1. every count c goes to the nearer of its two neighbouring grid widths at or above its floor
   (min(min_channels, size)): down = the widest grid width <= c, up = the narrowest >= c; ties go up. A count
   under the group's narrowest fast width (the floor, or a width so narrow that none below it is faster by the
   grid's rule) has no `down` and stays as it is;
2. while the plan's MACs exceed the budget, one group that went up moves to its `down` width: the one whose
   move saves the most time per MAC removed (time from its table, MACs from the estimator). Every group ends at
   one of its neighbours or its own count, so the method's allocation is kept up to one grid step, and with
   every count at its `down` the MACs are at most the unrounded ones: a budget at or above them is always
   reached (`info["widths_within_budget"]` says so; it is False only for a tighter budget passed explicitly).
The budget is the MACs the method's unrounded counts have (never more than the method's own MACs target), so
hardware rounding never makes a plan costlier than the method chose. Groups without a table keep their count.

    rounder = WidthRounder.from_tables(tables, sizes)               # tables: {group: {width: seconds}}
    counts, info = rounder.round_counts(counts, macs_of, budget)     # counts: {group: kept}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from prunekit.errors import UserError

BLOCKS = (2, 4, 8, 16, 32, 64)  # staircase blocks staircase_fit tries
MIN_SAVING_SHARE = 0.5  # a narrower grid width must save at least half the average time per channel
DEFAULT_TOL = 0.05  # timing noise on a shared CPU is a few percent; steps of oneDNN blocks are 20-60%
HARDWARE = "hardware"


def check_round_to(value: object, key: str = "method.params.round_to") -> None:
    """UserError unless `value` is an int >= 1 or "hardware"."""
    if value == HARDWARE:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{key} must be an integer >= 1 or 'hardware', got {value!r}")


def monotone_fit(times: Mapping[int, float]) -> dict[int, float]:
    """The least-squares non-decreasing fit of time over width (pool-adjacent-violators): a wider layer never
    costs less, so a narrower width that timed slower is noise, pooled with its neighbours."""
    blocks: list[list[float]] = []  # [sum, count] per pooled block, in width order
    widths = sorted(times)
    for width in widths:
        blocks.append([float(times[width]), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted = [block[0] / block[1] for block in blocks for _ in range(int(block[1]))]
    return dict(zip(widths, fitted, strict=True))


def staircase_fit(times: Mapping[int, float], blocks: tuple[int, ...] = BLOCKS) -> tuple[dict[int, float], int]:
    """Least-squares fit of t(w) = a + b w + c B ceil(w / B) (c >= 0), the block B chosen by the smallest
    residual (B = 1: the line a + b w); returns the fitted table and B. A denoiser for tables timed on a busy
    machine: a layer's time is a linear part plus, where the kernel blocks channels (oneDNN: 8 or 16 on CPU,
    tensor-core tiles on GPU), a staircase."""
    widths = sorted(times)
    w = torch.tensor(widths, dtype=torch.float64)
    y = torch.tensor([float(times[x]) for x in widths], dtype=torch.float64)
    best: tuple[float, int, torch.Tensor] | None = None
    for block in (1, *blocks):
        if block > 1 and block >= widths[-1]:
            continue
        columns = [torch.ones_like(w), w] + ([block * torch.ceil(w / block)] if block > 1 else [])
        design = torch.stack(columns, dim=1)
        coef = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)
        if block > 1 and coef[2] < 0:
            continue
        fitted = design @ coef
        rss = float(((fitted - y) ** 2).sum())
        if best is None or rss < best[0] * (1 - 1e-9):
            best = (rss, block, fitted)
    assert best is not None  # the line always fits
    return dict(zip(widths, best[2].tolist(), strict=True)), best[1]


def fast_widths(times: Mapping[int, float], size: int, tol: float = DEFAULT_TOL) -> list[int]:
    """The fast-width grid (ascending) of one group from its timing table; always holds `size`.

    The table is first made non-decreasing (`monotone_fit`), so that every width of a flat step gets the
    step's time; then the walk down from `size` described in the module docstring."""
    if size not in times:
        raise UserError(f"width timing table has no entry for the full width {size}")
    fitted = monotone_fit({w: t for w, t in times.items() if 1 <= w <= size})
    narrowest = min(fitted)
    grid = [size]
    for width in sorted((w for w in fitted if w < size), reverse=True):
        top = grid[-1]
        saved_per_channel = (fitted[top] - fitted[width]) / (top - width)
        average = (fitted[top] - fitted[narrowest]) / max(1, top - narrowest)  # per channel, above the fixed cost
        if fitted[width] * (1.0 + tol) < fitted[top] and saved_per_channel >= MIN_SAVING_SHARE * average:
            grid.append(width)
    return sorted(grid)


@dataclass
class WidthRounder:
    """Fast-width grids and timing tables of the groups of one model on one device."""

    grids: dict[str, list[int]]
    times: dict[str, dict[int, float]]
    sizes: dict[str, int]
    min_channels: int = 1
    last_info: dict[str, Any] = field(default_factory=dict)  # the latest rounding's outcome (ChannelPlan.rounded)

    @classmethod
    def from_tables(cls, tables: Mapping[str, Mapping[int, float]], sizes: Mapping[str, int],
                    min_channels: int = 1, tol: float = DEFAULT_TOL, fit: bool = False) -> WidthRounder:
        """Grids from measured tables; `fit`: denoise each table with `staircase_fit` first (the fitted times
        are also those the step-downs compare)."""
        times = {name: {int(w): float(t) for w, t in table.items()} for name, table in tables.items()}
        if fit:
            times = {name: staircase_fit(table)[0] for name, table in times.items()}
        grids = {name: fast_widths(table, sizes[name], tol) for name, table in times.items()}
        return cls(grids, times, dict(sizes), min_channels)

    def floor(self, name: str) -> int:
        return min(self.min_channels, self.sizes[name])

    def grid(self, name: str) -> list[int]:
        """The group's grid widths at or above its floor (the full width at least)."""
        floor = self.floor(name)
        return [w for w in self.grids[name] if w >= floor] or [self.sizes[name]]

    def neighbours(self, name: str, count: int) -> tuple[int | None, int]:
        """(widest grid width <= count or None, narrowest grid width >= count, the full width at most)."""
        grid = self.grid(name)
        lower = [w for w in grid if w <= count]
        upper = [w for w in grid if w >= count]
        return (lower[-1] if lower else None), (upper[0] if upper else grid[-1])

    def nearest(self, name: str, count: int) -> int:
        """Step 1: the nearer neighbour of `count` (ties: the wider); groups without a grid, and counts under the
        group's narrowest fast width (where its time hardly depends on width), keep `count`."""
        if name not in self.grids:
            return count
        down, up = self.neighbours(name, count)
        if down is None:
            return count
        return up if up - count <= count - down else down

    def round_counts(self, counts: Mapping[str, int], macs_of: Callable[[Mapping[str, int]], float],
                     budget: float | None = None) -> tuple[dict[str, int], dict[str, Any]]:
        """Steps 1-2 of the module's rule. `budget` defaults to the MACs of `counts` themselves."""
        budget = macs_of(counts) if budget is None else budget
        new = {name: self.nearest(name, int(c)) for name, c in counts.items()}
        downs = {name: self.neighbours(name, int(c))[0] for name, c in counts.items() if name in self.grids}
        macs = macs_of(new)
        moves = 0
        while macs > budget:
            best: tuple[float, str, int, float] | None = None
            for name, count in new.items():
                lower = downs.get(name)
                if lower is None or lower >= count:  # no fast width below, or already down
                    continue
                trial_macs = macs_of({**new, name: lower})
                saved_macs = macs - trial_macs
                saved_time = self.times[name][count] - self.times[name][lower]
                # time saved per MAC; a step that saves no MACs is useless for the budget
                rate = saved_time / saved_macs if saved_macs > 0 else float("-inf")
                if saved_macs > 0 and (best is None or rate > best[0]):
                    best = (rate, name, lower, trial_macs)
            if best is None:
                break
            _, name, lower, macs = best
            new[name] = lower
            moves += 1
        info = {"widths_budget_macs": budget, "widths_macs": macs, "widths_within_budget": macs <= budget,
                "widths_moves_down": moves}
        return new, info


__all__ = ["DEFAULT_TOL", "HARDWARE", "WidthRounder", "check_round_to", "fast_widths", "monotone_fit",
           "staircase_fit"]
