"""The one MACs-budget search: bisection against a linear scan, plan MACs against a hand count."""

import numpy as np
import torch

from prunekit.channels import channel_groups
from prunekit.measure import count_macs
from prunekit.methods.budget import REACHED, MacsBudget, PlanMacs, rate_steps, smallest_reaching
from prunekit.models import create_model


def test_plan_macs_match_a_hand_count():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x = torch.zeros(2, 1, 8, 8)
    macs = PlanMacs(model, channel_groups(model, x, policy="internal"), x)
    a, b, c = 10, 20, 40
    # conv1 1->a at 8x8, conv2 a->b at 4x4, conv3 b->c at 2x2 (3x3 kernels), fc c->10
    expected = a * 1 * 9 * 64 + b * a * 9 * 16 + c * b * 9 * 4 + 10 * c
    assert macs([a, b, c]) == expected
    assert macs.dense() == count_macs(model, x)


def test_smallest_reaching_agrees_with_a_linear_scan():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = np.sort(rng.integers(0, 1000, size=rng.integers(1, 30)))[::-1]
        target = float(rng.integers(-10, 1010))
        k, reached = smallest_reaching(len(values) - 1, lambda i, v=values: int(v[i]), target)
        scan = [i for i in range(len(values)) if values[i] <= target]
        assert reached == bool(scan)
        assert k == (scan[0] if scan else len(values) - 1)


def test_budget_search_returns_the_first_candidate_meeting_the_target_and_reports_one_key():
    rng = np.random.default_rng(1)
    for _ in range(20):
        candidates = sorted(rng.uniform(0, 1, size=rng.integers(1, 25)).tolist())
        macs = {c: int(1000 * (1 - c) ** 2) for c in candidates}  # falls as the candidate prunes more
        budget = MacsBudget(ratio=float(rng.uniform(0, 1.2)), dense=1000)
        choice = budget.search(candidates, macs.__getitem__)
        meeting = [c for c in candidates if macs[c] <= budget.target]
        assert choice.value == (meeting[0] if meeting else candidates[-1])
        assert candidates[choice.index] == choice.value
        assert choice.info() == {REACHED: bool(meeting)}
    assert MacsBudget(0.5, 200).outcome(90) == {"target_macs_ratio": 0.5, "macs_ratio": 0.45, REACHED: True}
    assert MacsBudget(0.5, 200).outcome(101)[REACHED] is False


def test_rate_steps_are_every_fraction_of_every_width():
    assert rate_steps([2, 4]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rate_steps([3]) == [0.0, 1 / 3, 2 / 3, 1.0]
