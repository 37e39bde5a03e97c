"""Block the groups that fail the numerical check (`verify.py`): a subnet that removes about half of a group's
channels must compute what the masked supernet computes. One joint check covers every group in the common case;
only when it fails is each group checked on its own, to name the ones that are wrong."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.channels.groups_base import GroupAnalysis
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.tracing import Deadline
from prunekit.channels.verify import TOLERANCE, PlanChecker, probe_plan


def verify_groups(model: nn.Module, analyses: list[GroupAnalysis], example_inputs: torch.Tensor,
                  untraced: list[str], deadline: Deadline, seed: int = 0) -> None:
    candidates = [a for a in analyses if a.blocked is None and a.group.size > 1]
    if not candidates:
        return
    checker = PlanChecker(model, example_inputs, seed)
    generator = torch.Generator().manual_seed(seed + 2)
    probes = {a.group.name: probe_plan(a.group, generator) for a in candidates}
    groups = [a.group for a in candidates]
    relative, failure = checker.difference(groups, ChannelPlan(dict(probes)))
    if failure is None and relative <= TOLERANCE:
        return
    outside = f"; modules outside the traced graph: {', '.join(untraced[:4])}" if untraced else ""
    any_blocked = False
    for analysis in candidates:
        deadline.check(f"checking group {analysis.group.name!r} numerically")
        name = analysis.group.name
        relative, failure = checker.difference(groups, ChannelPlan({name: probes[name]}))
        if failure is not None or not relative <= TOLERANCE:
            what = failure or f"pruning it changes the output by {relative:.2g} against the masked supernet"
            analysis.blocked = f"numerical check failed: {what}{outside}"
            any_blocked = True
    if not any_blocked:  # each group passes alone but not together: refuse them all rather than guess
        for analysis in candidates:
            analysis.blocked = f"numerical check failed when pruning all groups together{outside}"
