"""The one MACs-budget search of every method with a `target_macs_ratio`, and the one key it reports.

A method lists candidate settings in order of increasing pruning (uniform rates, global sparsities k/N,
Torch-Pruning ratios), gives the MACs each one's plan would have, and `MacsBudget.search` bisects for the first
that meets the target. MACs must not increase along the candidates. Whether the target was met is logged under
`REACHED` ("target_macs_reached") by every method.

    budget = MacsBudget(ratio=0.5, dense=dense_macs)
    choice = budget.search(rates, lambda rate: estimate(plan_at(rate)))
    info = budget.outcome(measured_macs)     # target_macs_ratio, macs_ratio, target_macs_reached
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan, macs_estimator

T = TypeVar("T")

REACHED = "target_macs_reached"  # the info key saying whether a MACs target was met, for every method


def smallest_reaching(n_max: int, macs_at: Callable[[int], int], target: float) -> tuple[int, bool]:
    """Smallest k in [0, n_max] with macs_at(k) <= target, by bisection (macs_at must not increase with k).

    Returns (k, reached); when even n_max misses the target, (n_max, False)."""
    if macs_at(n_max) > target:
        return n_max, False
    if macs_at(0) <= target:
        return 0, True
    low, high = 0, n_max  # macs_at(low) > target >= macs_at(high)
    while high - low > 1:
        mid = (low + high) // 2
        if macs_at(mid) <= target:
            high = mid
        else:
            low = mid
    return high, True


@dataclass(frozen=True)
class BudgetChoice(Generic[T]):
    """The candidate `MacsBudget.search` chose, its position, and whether its MACs meet the target."""

    value: T
    index: int
    reached: bool

    def info(self) -> dict[str, Any]:
        return {REACHED: self.reached}


@dataclass(frozen=True)
class MacsBudget:
    """Keep at most `ratio` of the `dense` MACs per sample."""

    ratio: float
    dense: float

    @property
    def target(self) -> float:
        return self.ratio * self.dense

    def search(self, candidates: Sequence[T], macs_of: Callable[[T], int]) -> BudgetChoice[T]:
        """The first of `candidates` (ordered by increasing pruning) whose MACs meet the target; the last one,
        with `reached` False, when none does."""
        index, reached = smallest_reaching(len(candidates) - 1, lambda i: macs_of(candidates[i]), self.target)
        return BudgetChoice(candidates[index], index, reached)

    def outcome(self, macs: float) -> dict[str, Any]:
        """What a method logs about the plan it chose: the target, the plan's MACs ratio, whether it is met."""
        return {"target_macs_ratio": self.ratio, "macs_ratio": macs / self.dense, REACHED: macs <= self.target}


def rate_steps(sizes: Sequence[int]) -> list[float]:
    """The uniform rates at which floor(rate * n) changes for some group width n, ascending: every j / n.

    Between two steps every group removes the same floor(rate * n) channels, so the smallest rate that meets a
    target is a step. Each step is exact enough for `prune_count` (its 1e-9 slack) to give exactly j of n."""
    return [float(f) for f in sorted({Fraction(j, n) for n in sizes for j in range(n + 1)})]


def plan_from_counts(groups: Sequence[ChannelGroup], counts: Sequence[int]) -> ChannelPlan:
    """A plan keeping the first `counts[i]` channels of group i (MACs depend on the counts only)."""
    return ChannelPlan({g.name: list(range(c)) for g, c in zip(groups, counts, strict=True)})


class PlanMacs:
    """MACs per sample of the subnet with the given kept counts (`channels.macs_estimator`, exact for conv/linear
    networks), cached by counts. The supernet's values do not matter, only its shapes, so the estimator and the
    cache stay valid for a whole run."""

    def __init__(self, supernet: nn.Module, groups: Sequence[ChannelGroup], example_inputs: torch.Tensor) -> None:
        self.groups = list(groups)
        self.estimate = macs_estimator(supernet, self.groups, example_inputs)
        self.cache: dict[tuple[int, ...], int] = {}

    def __call__(self, counts: Sequence[int]) -> int:
        key = tuple(int(c) for c in counts)
        if key not in self.cache:
            self.cache[key] = self.estimate(plan_from_counts(self.groups, key))
        return self.cache[key]

    def dense(self) -> int:
        return self([g.size for g in self.groups])


__all__ = ["REACHED", "BudgetChoice", "MacsBudget", "PlanMacs", "plan_from_counts", "rate_steps",
           "smallest_reaching"]
