"""Training equivalence (DESIGN.md): k steps on the subnet + absorb == k masked, frozen steps on the supernet.

The reference is `masked_reference.MaskedTrainer` (no prunekit slicing involved), in float64, BN in train mode.
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from masked_reference import MaskedTrainer, install_masks
from torch import nn
from zoo import INPUT_SHAPE, ZOO, build

from prunekit.channels import (
    ChannelPlan,
    absorb,
    absorb_optimizer_state,
    channel_groups,
    load_optimizer_state_by_name,
    materialize,
    optimizer_state_by_name,
    slice_optimizer_state,
)
from prunekit.errors import UserError

STEPS = 20
OPTIMIZERS = {
    "sgd": partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "adam": partial(torch.optim.Adam, lr=0.01, weight_decay=1e-4),
}


def batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, *INPUT_SHAPE, generator=generator, dtype=torch.float64),
             torch.randint(0, 5, (4,), generator=generator)) for _ in range(count)]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def random_plan(groups, seed: int) -> ChannelPlan:
    generator = torch.Generator().manual_seed(seed)
    keep = {}
    for group in groups:
        count = int(torch.randint(1, group.size, (1,), generator=generator))
        keep[group.name] = sorted(torch.randperm(group.size, generator=generator)[:count].tolist())
    return ChannelPlan(keep)


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", sorted(ZOO))
def test_subnet_training_equals_masked_frozen_supernet(name: str, optimizer_name: str) -> None:
    make_optimizer = OPTIMIZERS[optimizer_name]
    supernet = build(name).train()
    optimizer = make_optimizer(supernet.parameters())
    for x, y in batches(2, seed=1):  # dense warm-up: every channel gets optimizer state
        train_step(supernet, optimizer, x, y)
    groups = channel_groups(supernet, batches(1, 2)[0][0])
    plan = random_plan(groups, seed=3)
    data = batches(STEPS, seed=4)

    # reference: the full model, removed channels masked and frozen
    reference = copy.deepcopy(supernet)
    reference_optimizer = make_optimizer(reference.parameters())
    load_optimizer_state_by_name(reference_optimizer, reference, optimizer_state_by_name(optimizer, supernet))
    tainted = install_masks(reference, groups, plan, batches(1, 5)[0][0].repeat(8, 1, 1, 1).normal_())
    trainer = MaskedTrainer(reference, reference_optimizer, tainted)
    for x, y in data:
        trainer.step(x, y)

    # prunekit: materialize, train the subnet, absorb weights and optimizer state
    full_state = optimizer_state_by_name(optimizer, supernet)
    subnet = materialize(supernet, plan, groups)
    sub_optimizer = make_optimizer(subnet.parameters())
    load_optimizer_state_by_name(sub_optimizer, subnet,
                                 slice_optimizer_state(full_state, supernet, plan, groups))
    for x, y in data:
        train_step(subnet, sub_optimizer, x, y)
    absorb(subnet, supernet, plan, groups)
    absorb_optimizer_state(optimizer_state_by_name(sub_optimizer, subnet), full_state, supernet, plan, groups)

    expected = reference.state_dict()
    for key, value in supernet.state_dict().items():
        assert (value.double() - expected[key].double()).abs().max().item() < 1e-6, key
    expected_state = optimizer_state_by_name(reference_optimizer, reference)
    assert full_state.keys() == expected_state.keys()
    for param_name, entries in expected_state.items():
        for key, value in entries.items():
            got = full_state[param_name][key]
            assert (got.double() - value.double()).abs().max().item() < 1e-6, (param_name, key)
    # the subnet really trained
    assert not torch.equal(supernet.state_dict()[next(iter(expected))], build(name).state_dict()[next(iter(expected))])


def test_slice_then_absorb_is_bitwise_identity_and_keeps_scalars() -> None:
    supernet = build("resnet").train()
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=0.01, amsgrad=True)
    x, y = batches(1, 0)[0]
    train_step(supernet, optimizer, x, y)
    groups = channel_groups(supernet, x)
    plan = random_plan(groups, 1)
    state = optimizer_state_by_name(optimizer, supernet)
    sliced = slice_optimizer_state(state, supernet, plan, groups)
    subnet = materialize(supernet, plan, groups)
    sub_params = dict(subnet.named_parameters())
    for name, entries in sliced.items():
        assert entries["exp_avg"].shape == sub_params[name].shape
        assert entries["max_exp_avg_sq"].shape == sub_params[name].shape
        assert torch.equal(entries["step"], state[name]["step"])  # 0-dim entries kept as they are
    rows, columns = plan.keep["layer1.0.conv1"], plan.keep["conv1"]  # its output group; the stem stream it reads
    expected = state["layer1.0.conv1.weight"]["exp_avg"][rows][:, columns]
    assert torch.equal(sliced["layer1.0.conv1.weight"]["exp_avg"], expected)
    restored = {n: {k: v.clone() for k, v in e.items()} for n, e in state.items()}
    absorb_optimizer_state(sliced, restored, supernet, plan, groups)
    for name, entries in state.items():
        for key, value in entries.items():
            assert torch.equal(restored[name][key], value), (name, key)


def test_absorb_optimizer_state_creates_missing_entries_with_zeros() -> None:
    supernet = build("vgg")
    groups = channel_groups(supernet, batches(1, 0)[0][0])
    plan = ChannelPlan({"features.0": [1, 3]})
    subnet = materialize(supernet, plan, groups)
    sub_state = {"features.0.weight": {"momentum_buffer": torch.ones_like(subnet.features[0].weight)}}
    full_state: dict = {}
    absorb_optimizer_state(sub_state, full_state, supernet, plan, groups)
    buffer = full_state["features.0.weight"]["momentum_buffer"]
    assert buffer.shape == supernet.features[0].weight.shape
    assert buffer[[1, 3]].eq(1).all() and buffer[[0, 2, 4, 5, 6, 7]].eq(0).all()


def test_by_name_state_round_trip_and_errors() -> None:
    model = build("vgg")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batches(1, 0)[0]
    train_step(model, optimizer, x, y)
    state = optimizer_state_by_name(optimizer, model)
    assert set(state) == {n for n, _ in model.named_parameters()}
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    load_optimizer_state_by_name(fresh, model, state)
    for param in model.parameters():
        assert torch.equal(fresh.state[param]["momentum_buffer"], optimizer.state[param]["momentum_buffer"])
    with pytest.raises(UserError, match="not a parameter"):
        load_optimizer_state_by_name(fresh, model, {"nope.weight": {}})
    bad = {"features.0.weight": {"momentum_buffer": torch.zeros(3)}}
    with pytest.raises(UserError, match="shape"):
        load_optimizer_state_by_name(fresh, model, bad)
