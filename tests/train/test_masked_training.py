"""State-owned weight masks against an independent computation: training with masks must equal, step for step,
training where the masked weights are removed from the parameter vector (only the active entries are leaves)."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from prunekit.methods.base import Decision, Method
from prunekit.train.supernet import SupernetState


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 5 * 5, 4))


def random_masks(model, density=0.5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(p.shape, generator=g) < density
            for name, p in model.named_parameters() if p.ndim > 1}


OPTIMIZERS = {
    "sgd-momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-3),
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.05),
}


def batches(steps=12):
    g = torch.Generator().manual_seed(2)
    return [(torch.randn(8, 3, 5, 5, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(steps)]


def train_with_state(make_opt, masks):
    model = tiny_net()
    state = SupernetState(model, torch.zeros(1, 3, 5, 5), None, make_optimizer=lambda m: make_opt(m.parameters()))
    state.apply(Decision(masks=masks))
    for x, y in batches():
        loss = nn.functional.cross_entropy(state.model(x), y)
        state.zero_grad()
        loss.backward()
        state.step()
    return dict(state.model.named_parameters())


def train_removed(make_opt, masks):
    """The reference: masked weights are not parameters at all; each masked tensor is rebuilt from a vector of
    its active entries (zeros elsewhere) at every forward pass."""
    model = tiny_net()
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    leaves = {}
    for name, value in dense.items():
        if name in masks:
            leaves[name] = value[masks[name]].clone().requires_grad_(True)
        else:
            leaves[name] = value.clone().requires_grad_(True)
    opt = make_opt(list(leaves.values()))

    def weights():
        out = {}
        for name, leaf in leaves.items():
            if name in masks:
                full = torch.zeros_like(dense[name])
                out[name] = full.masked_scatter(masks[name], leaf)
            else:
                out[name] = leaf
        return out

    for x, y in batches():
        loss = nn.functional.cross_entropy(functional_call(model, weights(), (x,)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {n: w.detach() for n, w in weights().items()}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_masked_training_equals_training_without_the_masked_weights(optimizer):
    masks = random_masks(tiny_net())
    ours = train_with_state(OPTIMIZERS[optimizer], masks)
    reference = train_removed(OPTIMIZERS[optimizer], masks)
    for name, value in reference.items():
        torch.testing.assert_close(ours[name].detach(), value, rtol=1e-6, atol=1e-7, msg=name)
        if name in masks:
            assert torch.all(ours[name][~masks[name]] == 0), name  # exactly zero, through weight decay
            assert not torch.equal(value, tiny_net().state_dict()[name] * masks[name])  # it did train


class DenseGradientReader(Method):
    """Records the gradient after_backward sees, to check the state masks only afterwards."""

    name = "reader"

    def after_backward(self, model):
        self.seen = model[0].weight.grad.clone()


def test_after_backward_sees_the_dense_gradient_and_the_step_does_not():
    model = tiny_net()
    method = DenseGradientReader()
    state = SupernetState(model, torch.zeros(1, 3, 5, 5), None, make_optimizer=lambda m: torch.optim.SGD(
        m.parameters(), lr=0.1), method=method)
    masks = random_masks(model)
    state.apply(Decision(masks=masks))
    x, y = batches(1)[0]
    nn.functional.cross_entropy(state.model(x), y).backward()
    method.after_backward(state.model)
    assert (method.seen[~masks["0.weight"]] != 0).any()  # dense: masked positions have a gradient
    state.step()
    assert torch.all(state.model[0].weight.grad[~masks["0.weight"]] == 0)
    assert torch.all(state.model[0].weight[~masks["0.weight"]] == 0)


def test_a_new_mask_zeroes_optimizer_state_where_it_changes():
    model = tiny_net()
    state = SupernetState(model, torch.zeros(1, 3, 5, 5), None,
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    first = random_masks(model, seed=1)
    state.apply(Decision(masks=first))
    for x, y in batches(3):
        state.zero_grad()
        nn.functional.cross_entropy(state.model(x), y).backward()
        state.step()
    weight = state.model[0].weight
    before = state.optimizer.state[weight]["momentum_buffer"].clone()
    second = random_masks(model, seed=2)
    record = state.apply(Decision(masks={"0.weight": second["0.weight"]}))
    after = state.optimizer.state[weight]["momentum_buffer"]
    changed = first["0.weight"] != second["0.weight"]
    assert torch.all(after[changed] == 0)
    assert torch.equal(after[~changed], before[~changed])
    assert record["mask_changes"] == int(changed.sum())
    grown = second["0.weight"] & ~first["0.weight"]
    assert torch.all(weight[grown] == 0)  # grown weights start at zero
    in_force = {"0.weight": second["0.weight"], "3.weight": first["3.weight"]}  # tensors not named keep theirs
    expected = sum(int(m.sum()) for m in in_force.values()) / sum(m.numel() for m in in_force.values())
    assert record["density"] == pytest.approx(expected)
