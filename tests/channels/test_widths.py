"""Fast-width grids and hardware rounding (channels/widths.py) against hand-computed examples with fake timing
tables (no real timing here), and ChannelPlan.rounded / with_counts under them."""

import itertools
import math

import pytest
import torch

from prunekit.channels import ChannelPlan
from prunekit.channels.groups_base import ChannelGroup
from prunekit.channels.widths import WidthRounder, check_round_to, fast_widths, monotone_fit, staircase_fit
from prunekit.errors import UserError


def staircase(size, block, base=1.0):
    """Every width of a block costs what its widest does: t(w) = base * ceil(w / block)."""
    return {w: base * math.ceil(w / block) for w in range(1, size + 1)}


def group(name, size):
    return ChannelGroup(name=name, size=size, producers=(name,), consumers=(), norms=(), bn=None, internal=True,
                        macs_share=0.0)


def test_staircase_grid_is_the_top_of_every_step():
    assert fast_widths(staircase(32, 8), 32) == [8, 16, 24, 32]
    assert fast_widths(staircase(20, 16), 20) == [16, 20]  # the full width is always on the grid


def test_grid_hand_example_with_tolerance():
    # walk down from 4 (1.5): 3 joins (1.02 * 1.05 < 1.5); 2 does not (1.01 * 1.05 >= 1.02), nor 1
    assert fast_widths({1: 1.0, 2: 1.01, 3: 1.02, 4: 1.5}, 4, tol=0.05) == [3, 4]
    # a smooth curve keeps widths about tol apart in time instead of collapsing to the full width
    assert fast_widths({w: float(w) for w in range(1, 9)}, 8, tol=0.05) == list(range(1, 9))
    # a fixed cost plus a small slope: widths about 5% apart in time
    assert fast_widths({w: 1.0 + 0.02 * w for w in range(1, 9)}, 8, tol=0.05) == [2, 5, 8]
    # a line plus blocks of 16: 17 is 15% cheaper than 32, but only through the line (0.01 per channel against
    # an average of 0.0203 above the fixed cost): not on the grid; within the first block the line alone counts
    steps = {w: 0.01 * w + 0.02 * 16 * math.ceil(w / 16) for w in range(1, 33)}
    assert fast_widths(steps, 32) == [1, 3, 5, 7, 10, 13, 16, 32]


def test_monotone_fit_pools_a_noisy_dip():
    fit = monotone_fit({1: 1.0, 2: 3.0, 3: 2.0, 4: 4.0})
    assert fit == pytest.approx({1: 1.0, 2: 2.5, 3: 2.5, 4: 4.0})
    # a narrower width that timed slower (noise) does not make the next width look like a fast step
    noisy = {**staircase(16, 8), 3: 1.2}
    assert fast_widths(noisy, 16) == [8, 16]


def test_staircase_fit_recovers_a_line_plus_blocks_of_16():
    exact = {w: 0.5 + 0.01 * w + 0.2 * 16 * math.ceil(w / 16) for w in range(1, 65)}
    fitted, block = staircase_fit(exact)
    assert block == 16 and fitted == pytest.approx(exact)
    noise = torch.Generator().manual_seed(0)
    noisy = {w: t * (1 + 0.03 * float(torch.rand(1, generator=noise))) for w, t in exact.items()}
    fitted, block = staircase_fit(noisy)
    assert block == 16 and fast_widths(fitted, 64, tol=0.05) == fast_widths(exact, 64, tol=0.05)
    line = {w: 1.0 + 0.1 * w for w in range(1, 33)}
    fitted, _ = staircase_fit(line)
    assert fitted == pytest.approx(line)  # a line stays a line (no staircase is invented)


def test_rounder_fit_uses_the_fitted_times():
    noisy = {**staircase(32, 8), 12: 0.5}  # one width timed far too fast
    assert 12 in WidthRounder.from_tables({"a": noisy}, {"a": 32}).grid("a")
    assert WidthRounder.from_tables({"a": noisy}, {"a": 32}, fit=True).grid("a") == [8, 16, 24, 32]


def test_full_width_missing_from_the_table_is_a_user_error():
    with pytest.raises(UserError, match="full width"):
        fast_widths({1: 1.0}, 2)


@pytest.mark.parametrize("bad", [0, -3, "hardwar", 2.5, True])
def test_round_to_must_be_a_positive_int_or_hardware(bad):
    with pytest.raises(UserError, match="round_to"):
        check_round_to(bad)
    check_round_to("hardware")
    check_round_to(8)


def linear_macs(weights):
    """A fake MACs function: sum of count * weight per group."""
    return lambda counts: sum(weights[n] * c for n, c in counts.items())


def rounder_ab():
    tables = {"a": staircase(32, 8), "b": staircase(16, 4, base=0.5)}
    return WidthRounder.from_tables(tables, {"a": 32, "b": 16})


def test_nearest_goes_to_the_closest_grid_width_ties_up():
    rounder = rounder_ab()
    assert rounder.grid("a") == [8, 16, 24, 32] and rounder.grid("b") == [4, 8, 12, 16]
    assert [rounder.nearest("a", c) for c in (1, 7, 11, 12, 13, 20, 31)] == [1, 7, 8, 16, 16, 24, 32]
    assert rounder.nearest("unknown", 7) == 7  # groups without a table keep their count


def test_min_channels_removes_grid_widths_below_the_floor():
    rounder = WidthRounder.from_tables({"a": staircase(32, 8)}, {"a": 32}, min_channels=10)
    assert rounder.grid("a") == [16, 24, 32] and rounder.nearest("a", 17) == 16 and rounder.nearest("a", 12) == 12


def test_round_counts_hand_example_steps_down_by_time_per_mac():
    rounder = rounder_ab()
    macs = linear_macs({"a": 10, "b": 30})
    counts = {"a": 12, "b": 10}  # budget 10*12 + 30*10 = 420
    # step 1: a 12 -> 16 (tie goes up), b 10 -> 12 (nearest); MACs 160 + 360 = 520 > 420
    # step 2 candidates (each to the grid width below its count): a 16 -> 8 saves 80 MACs and 1.0 s
    # (0.0125 s/MAC); b 12 -> 8 saves 120 MACs and 0.5 s (0.00417 s/MAC): a moves; 80 + 360 = 440 > 420;
    # then only b can move: 80 + 240 = 320
    new, info = rounder.round_counts(counts, macs)
    assert new == {"a": 8, "b": 8}
    assert info == {"widths_budget_macs": 420, "widths_macs": 320, "widths_within_budget": True,
                    "widths_moves_down": 2}


def test_round_counts_stays_next_to_each_count_and_keeps_the_budget_brute_force():
    rounder = rounder_ab()
    macs = linear_macs({"a": 7, "b": 13})
    for a, b in itertools.product(range(1, 33), range(1, 17)):
        new, info = rounder.round_counts({"a": a, "b": b}, macs)
        for name, count in (("a", a), ("b", b)):  # a grid neighbour of the count, or (none below) the count
            grid = rounder.grid(name)
            below, above = [w for w in grid if w <= count], [w for w in grid if w >= count]
            assert new[name] in ((below[-1:] + above[:1]) if below else [count]), (name, count, new)
        assert info["widths_within_budget"] and macs(new) <= macs({"a": a, "b": b})


def test_a_count_under_the_narrowest_fast_width_stays_as_it_is():
    rounder = rounder_ab()
    new, info = rounder.round_counts({"a": 2, "b": 1}, linear_macs({"a": 1, "b": 1}))
    assert new == {"a": 2, "b": 1} and info["widths_within_budget"] and info["widths_moves_down"] == 0
    new, info = rounder.round_counts({"a": 2, "b": 1}, linear_macs({"a": 1, "b": 1}), budget=2)
    assert not info["widths_within_budget"]  # an explicit budget below the unrounded MACs may be missed


def test_plan_rounded_with_a_rounder_drops_lowest_scores_and_adds_highest():
    groups = [group("a", 32), group("b", 16)]
    rounder = rounder_ab()
    plan = ChannelPlan({"a": list(range(12)), "b": list(range(10))})
    score_a = torch.arange(32, dtype=torch.float64)  # higher index, higher score
    score_b = -torch.arange(16, dtype=torch.float64)
    macs = linear_macs({"a": 10, "b": 30})
    rounded = plan.rounded(groups, rounder, {"a": score_a, "b": score_b}, macs_of=macs)
    assert rounded.keep["a"] == [4, 5, 6, 7, 8, 9, 10, 11]  # 12 -> 8: drops the 4 lowest scores (0-3)
    assert rounded.keep["b"] == list(range(8))
    assert rounder.last_info["widths_within_budget"]
    # budget given explicitly: a generous one leaves the nearest widths
    loose = plan.rounded(groups, rounder, {"a": score_a}, macs_of=macs, budget=10_000)
    assert loose.keep["a"] == list(range(12)) + [31, 30, 29, 28][::-1] and loose.keep["b"] == list(range(12))


def test_with_counts_without_scores_adds_lowest_and_drops_highest_indices():
    groups = [group("a", 8)]
    plan = ChannelPlan({"a": [1, 3, 5]})
    assert plan.with_counts(groups, {"a": 5}).keep["a"] == [0, 1, 2, 3, 5]
    assert plan.with_counts(groups, {"a": 2}).keep["a"] == [1, 3]
    with pytest.raises(UserError, match="cannot keep"):
        plan.with_counts(groups, {"a": 9})


def test_integer_rounding_is_unchanged():
    groups = [group("a", 20)]
    plan = ChannelPlan({"a": [0, 2, 4]})
    score = torch.zeros(20, dtype=torch.float64)
    score[7], score[9] = 2.0, 1.0
    assert plan.rounded(groups, 8, {"a": score}).keep["a"] == [0, 1, 2, 3, 4, 5, 7, 9]
    assert ChannelPlan({"a": list(range(17))}).rounded(groups, 8).keep["a"] == list(range(20))
