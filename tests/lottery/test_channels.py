"""The structured unit's channel choice against a brute-force NumPy computation: per-group and global removal of
round(rate * remaining) lowest-L1 channels, min_channels respected, removed channels not counted in the scores."""

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.channels import ChannelPlan, channel_groups
from prunekit.errors import UserError
from prunekit.lottery.channels import group_scores, keep_vectors, plan_of, prune_channels


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))


def groups_of(model):
    return channel_groups(model, torch.zeros(2, 12), policy="internal")


def reference_keep(scores, kept, rate, scope, min_channels):
    """Brute force: list every (score, group, channel) candidate, remove the lowest ones in order (higher index
    first among equal scores), skipping groups at their floor."""
    kept = {g: list(v) for g, v in kept.items()}
    floor = {g: min(min_channels, len(v)) for g, v in kept.items()}
    pools = [list(kept)] if scope == "global" else [[g] for g in kept]
    for pool in pools:
        cands = [(scores[g][c], pos, -c, g, c) for pos, g in enumerate(kept) if g in pool for c in kept[g]]
        count = int(np.round(rate * len(cands)))
        for *_, g, c in sorted(cands):
            if count and len(kept[g]) > floor[g]:
                kept[g].remove(c)
                count -= 1
    return kept


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("min_channels", [1, 5])
def test_prune_channels_matches_brute_force(scope, min_channels):
    model = mlp()
    groups = groups_of(model)
    rng = np.random.default_rng(1)
    plan = ChannelPlan({groups[0].name: [0, 2, 3, 5, 6, 7, 9], groups[1].name: list(range(6))})
    scores = {g.name: torch.tensor(rng.integers(0, 4, g.size), dtype=torch.float64) for g in groups}  # ties
    got = prune_channels(groups, plan, scores, 0.4, scope, min_channels)
    want = reference_keep({k: v.numpy() for k, v in scores.items()}, {g.name: plan.kept(g) for g in groups},
                          0.4, scope, min_channels)
    assert {g.name: got.kept(g) for g in groups} == want
    assert all(len(got.kept(g)) >= min(min_channels, len(plan.kept(g))) for g in groups)


def test_scores_are_l1_filter_norms_of_the_masked_model():
    model = mlp()
    groups = groups_of(model)
    plan = ChannelPlan({groups[0].name: [1, 4, 5, 8]})
    scores = group_scores(model, groups, plan, [])
    w1, w2 = model[1].weight.detach().double().numpy().copy(), model[3].weight.detach().double().numpy().copy()
    removed = [c for c in range(10) if c not in plan.keep[groups[0].name]]
    w1[removed] = 0  # removed filters score 0 (they are never candidates again)
    np.testing.assert_allclose(scores[groups[0].name].numpy(), np.abs(w1).sum(axis=1))
    w2[:, removed] = 0  # removed inputs do not count
    np.testing.assert_allclose(scores[groups[1].name].numpy(), np.abs(w2).sum(axis=1))
    assert set(group_scores(model, groups, plan, [groups[0].name])) == {groups[1].name}
    with pytest.raises(UserError, match="matches no channel group"):
        group_scores(model, groups, plan, ["nope*"])


def test_keep_vectors_round_trip():
    groups = groups_of(mlp())
    plan = ChannelPlan({groups[1].name: [0, 3]})
    vectors = keep_vectors(plan, groups)
    assert vectors[groups[0].name].all() and vectors[groups[1].name].tolist() == [1, 0, 0, 1, 0, 0]
    assert plan_of(vectors, groups).keep == plan.keep
