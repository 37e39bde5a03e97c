"""SupernetState from a user's own loop (the README's example), and its equivalence with the Trainer's bookkeeping."""

import torch
import torch.nn.functional as F

from prunekit.channels import materialize
from prunekit.measure import count_macs
from prunekit.models import create_model
from prunekit.train.supernet import SupernetState


def test_readme_loop_prunes_and_trains_the_physical_subnet():
    """The README's own-loop example as written there (top-level names, state.step, step-level decisions)."""
    import prunekit

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    example_inputs = torch.zeros(2, 1, 8, 8)
    loader = [(torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,))) for _ in range(3)]
    epochs = 4
    method = prunekit.method("reprune", sparsity=0.5, t_prune=4, interval=2)
    state = prunekit.SupernetState(model, example_inputs, method.channel_policy, method=method,
                                   make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    ctx = state.context(steps_per_epoch=len(loader), epochs=epochs)
    dense_macs = state.macs
    state.apply(method.on_train_start(ctx))
    step = 0
    for epoch in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(state.model(x), y) + method.regularizer(state.model)
            state.zero_grad()
            loss.backward()
            method.after_backward(state.model)       # dense gradients
            state.step()                             # masked gradients, optimizer step, masked weights to zero
            method.after_step(state.model)
            step += 1
            state.apply(method.on_step_end(step, ctx))
        state.sync()                                 # subnet -> supernet
        state.apply(method.on_epoch_end(epoch, ctx)) # a new plan: the subnet shrinks (or regrows)
    small = state.model
    assert count_macs(small, example_inputs) == state.macs < dense_macs
    # the optimizer steps on the subnet's own (smaller) parameters
    assert {id(p) for g in state.optimizer.param_groups for p in g["params"]} == {id(p) for p in small.parameters()}
    # after sync, the supernet holds the subnet's weights at the kept channels: materializing reproduces it
    state.sync()
    again = materialize(state.supernet, state.plan, state.groups)
    x = torch.randn(5, 1, 8, 8)
    small.eval()
    again.eval()
    with torch.no_grad():
        assert torch.equal(small(x), again(x))
    assert ctx.model is small and ctx.optimizer is state.optimizer and ctx.plan is state.plan


def test_dense_state_trains_the_supernet_itself():
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    state = SupernetState(model, torch.zeros(2, 1, 8, 8), None, make_optimizer=lambda m: torch.optim.SGD(
        m.parameters(), lr=0.1))
    assert state.model is model and not state.pruned and state.groups is None
    assert state.apply(None) == {}


def test_regrown_channels_get_back_their_weights_and_momentum():
    """Prune half of conv2's channels, train the subnet, regrow them: the regrown rows return with the weights and
    SGD momentum they had when pruned; the kept rows carry what the subnet learned."""
    from prunekit.channels import ChannelPlan

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    state = SupernetState(model, torch.zeros(2, 1, 8, 8), "internal",
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,))

    def train_step():
        state.optimizer.zero_grad()
        F.cross_entropy(state.model(x), y).backward()
        state.optimizer.step()

    def snapshot(name):
        param = state.model.get_parameter(name)
        return param.detach().clone(), state.optimizer.state[param]["momentum_buffer"].clone()

    train_step()
    names = ["features.conv2.weight", "features.bn2.weight", "features.conv3.weight"]
    dense = {name: snapshot(name) for name in names}
    half, rest = list(range(16)), list(range(16, 32))
    full = {g.name: list(range(g.size)) for g in state.groups}
    state.sync()
    state.apply_plan(ChannelPlan({**full, "features.conv2": half}))
    train_step()
    pruned = {name: snapshot(name) for name in names}
    state.sync()
    state.apply_plan(ChannelPlan(full))
    regrown = {name: snapshot(name) for name in names}
    rest_index, half_index = torch.tensor(rest), torch.tensor(half)
    for name in names:
        axis = 1 if name == "features.conv3.weight" else 0  # conv3 reads the group on its input axis
        for now, before, subnet in zip(regrown[name], dense[name], pruned[name], strict=True):
            assert torch.equal(now.index_select(axis, rest_index), before.index_select(axis, rest_index))
            assert torch.equal(now.index_select(axis, half_index), subnet)
    # and the subnet step really changed the kept rows' momentum
    assert not torch.equal(pruned["features.conv2.weight"][1], dense["features.conv2.weight"][1][:16])


def test_a_channel_method_on_a_model_with_no_prunable_group_names_the_policy():
    import pytest

    from prunekit.errors import UserError

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))  # its only channels are in/outputs
    with pytest.raises(UserError, match="policy 'internal'.*policy: all.*prunekit inspect"):
        SupernetState(model, torch.zeros(2, 12), "internal", make_optimizer=lambda m: torch.optim.SGD(
            m.parameters(), lr=0.1))
