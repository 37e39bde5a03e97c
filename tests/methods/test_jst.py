"""Joint Search-and-Training (methods/jst.py, methods/jst_parts.py): Alg. 1 against NumPy for a fixed noise draw,
the REINFORCE gradient of Eq. 4 against a hand computation, the fold of the alpha factors against the hooked
network, and short digits runs: alphas change only on validation batches during the search, the final MACs meet
the target, and a run killed mid-search resumes bitwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit import io
from prunekit.config import load_config
from prunekit.methods import METHODS
from prunekit.methods.jst import JointSearchTraining
from prunekit.methods.jst_parts import (
    ThresNet,
    alpha_factor,
    cumulative_keep,
    fold_factor_,
    gumbel_noise,
    log_prob,
    perturbed_shares,
    reinforce_loss,
)
from prunekit.train.trainer import Trainer


# ---------------------------------------------------------------------------------------------- Alg. 1
def numpy_alg1(alpha: np.ndarray, noise: np.ndarray, scale: float, threshold: float, min_channels: int) -> list[int]:
    n = alpha + scale * noise
    shares = np.exp(n - n.max())
    shares /= shares.sum()
    order = np.lexsort((np.arange(len(shares)), -shares))  # decreasing share, lower index first on ties
    cumulative = np.cumsum(shares[order])
    count = int(np.searchsorted(cumulative, threshold, side="left")) + 1  # first prefix with sum >= threshold
    count = max(min(min_channels, len(shares)), min(count, len(shares)))
    return sorted(int(i) for i in order[:count])


@pytest.mark.parametrize("size", [1, 5, 16, 64])
def test_sampling_matches_a_numpy_cumulative_threshold_rule(size):
    rng = np.random.default_rng(size)
    for trial in range(20):
        alpha = rng.normal(0.0, 1.0, size)
        generator = torch.Generator().manual_seed(trial)
        noise = gumbel_noise(size, generator)
        u = torch.rand(size, generator=torch.Generator().manual_seed(trial), dtype=torch.float64).numpy()
        np.testing.assert_allclose(noise.numpy(), -np.log(-np.log(u)))  # the draw is standard Gumbel
        shares = perturbed_shares(torch.tensor(alpha, dtype=torch.float32), noise, 0.5)
        for threshold in (0.05, 0.3, 0.5, 0.77, 0.99, 1.0):
            for floor in (1, 3):
                expected = numpy_alg1(alpha.astype(np.float32).astype(np.float64), noise.numpy(), 0.5, threshold,
                                      floor)
                assert cumulative_keep(shares, threshold, floor) == expected, (size, trial, threshold, floor)


def test_sampling_keeps_the_largest_shares_prefix():
    shares = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)
    assert cumulative_keep(shares, 0.4) == [1]
    assert cumulative_keep(shares, 0.41) == [1, 3]
    assert cumulative_keep(shares, 0.85) == [1, 2, 3]
    assert cumulative_keep(shares, 1.0) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------- Eq. 4
def test_reinforce_gradient_matches_a_hand_computation():
    torch.manual_seed(0)
    net = ThresNet([2, 3], n_choices=3, hidden=4)
    episodes = [([torch.randn(2), torch.randn(3)], [2, 0], 1.5), ([torch.randn(2), torch.randn(3)], [1, 1], -0.5)]
    baseline = 0.25
    loss = reinforce_loss([log_prob(net(x), a) for x, a, _ in episodes], [r for *_, r in episodes], baseline)
    loss.backward()

    # by hand: d/dz log softmax(z)_a = onehot(a) - softmax(z); loss = -(1/K) sum_k (R_k - b) sum_l log pi
    grad_bias = np.zeros(6)
    grad_weight = np.zeros((6, 8))
    for inputs, actions, r in episodes:
        with torch.no_grad():
            hidden = torch.cat([torch.relu(net.heads[str(w)](x)) for w, x in zip(net.widths, inputs, strict=True)])
            probs = torch.softmax(net.shared(hidden).view(2, 3), dim=1).numpy()
        onehot = np.zeros((2, 3))
        onehot[[0, 1], actions] = 1.0
        dz = -(r - baseline) * (onehot - probs).reshape(-1) / len(episodes)
        grad_bias += dz
        grad_weight += np.outer(dz, hidden.numpy())
    np.testing.assert_allclose(net.shared.bias.grad.numpy(), grad_bias, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.shared.weight.grad.numpy(), grad_weight, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------- Eq. 6 and the fold
@pytest.mark.parametrize("kind", ["bn", "conv"])
def test_folding_the_factors_reproduces_the_hooked_layer(kind):
    torch.manual_seed(1)
    module = nn.BatchNorm2d(6) if kind == "bn" else nn.Conv2d(3, 6, 3, bias=True)
    if kind == "bn":
        with torch.no_grad():
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-1, 1)
        module.eval()
    x = torch.randn(2, 6 if kind == "bn" else 3, 5, 5)
    alpha = torch.randn(10)
    index = torch.tensor([0, 2, 3, 5, 7, 9])
    factor = alpha_factor(alpha, index)
    assert torch.allclose(factor.sum(), torch.tensor(6.0))  # mean factor 1
    hooked = module(x) * factor.view(1, -1, 1, 1)
    fold_factor_(module, torch.arange(6), factor)
    torch.testing.assert_close(module(x), hooked)


# ---------------------------------------------------------------------------------------------- runs
RUN = ["data.name=digits", "data.augment=true", "data.crop_padding=1", "data.flip=false", "data.val_fraction=0.2",
       "model.name=small_cnn", "optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9", "optim.nesterov=true",
       "optim.weight_decay=5e-4", "schedule.name=cosine", "schedule.warmup_epochs=1", "train.batch_size=64",
       "train.seed=0", "train.threads=1", "train.progress=never", "train.epochs=4"]
# 18 steps per epoch: coarse 18 steps, 4 samples of 9 steps (boundaries mid-epoch and at epoch ends), 18 to fine-tune
PARAMS = "{coarse_epochs: 1, samples: 4, sample_epochs: 0.5, target_macs_ratio: 0.5, policy_batch: 2, gamma: 1.0}"


class SpyJST(JointSearchTraining):
    """Records the alphas after every step and around every validation pass."""

    name = "jst_spy"

    def __init__(self, params=None):
        super().__init__(params)
        self.after: dict[int, torch.Tensor] = {}
        self.val_passes: list[tuple[int, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []

    def flat(self) -> torch.Tensor:
        return torch.cat([a.detach().cpu().clone() for a in self.alphas.values()])

    def after_step(self, model):
        self.after[self.ctx.step + 1] = self.flat()

    def _train_alphas_on_validation(self, ctx):
        weights = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        before = self.flat()
        super()._train_alphas_on_validation(ctx)
        changed = {k: v for k, v in ctx.model.state_dict().items() if not torch.equal(v, weights[k])}
        self.val_passes.append((ctx.step, before, self.flat(), changed))


@pytest.fixture(scope="module", autouse=True)
def spy_registered():
    """The spy is a registered method only while this module's tests run (the method catalog's tests check every
    registered method for docs)."""
    METHODS.register("jst_spy")(SpyJST)
    try:
        yield
    finally:
        METHODS._entries.pop("jst_spy", None)  # the registry has no public removal: tests only


def config(method: str = "jst", *more: str):
    return load_config(None, [*RUN, f"method.name={method}", f"method.params={PARAMS}", *more])


CHECKPOINTS = "train.checkpoint_every_steps=5"


@pytest.fixture(scope="module")
def spy_run(tmp_path_factory):
    trainer = Trainer(config("jst_spy"), tmp_path_factory.mktemp("jst") / "run", quiet=True)
    summary = trainer.fit()
    return trainer, summary


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    trainer = Trainer(config("jst", CHECKPOINTS), tmp_path_factory.mktemp("jst") / "full", quiet=True)
    summary = trainer.fit()
    return trainer, summary


def test_alphas_train_with_the_loss_in_coarse_training_and_only_on_validation_batches_in_the_search(spy_run):
    trainer, _ = spy_run
    m = trainer.method
    assert (m.coarse_steps, m.sample_steps, m.search_end) == (18, 9, 54)
    steps = sorted(m.after)
    assert all(not torch.equal(m.after[s], m.after[s - 1]) for s in steps if 2 <= s <= 18)  # Eq. 1, every step
    val_at = [step for step, *_ in m.val_passes]
    assert val_at == [27, 36, 45, 54]  # one validation pass at the end of every sample
    for step in steps:
        if step > 19:
            # during the search and fine-tuning, a step leaves the alphas where the previous step's end left them
            # (plus the validation pass run at that boundary)
            previous = next((after for s, _, after, _ in m.val_passes if s == step - 1), m.after[step - 1])
            assert torch.equal(m.after[step], previous), step
    for _, before, after, changed in m.val_passes:
        assert not torch.equal(before, after)  # Eq. 9 moved them
        assert not changed  # and left the weights and BN statistics alone


def test_final_macs_meet_the_target_within_3_percent(full_run):
    trainer, summary = full_run
    ratio = summary["macs"] / summary["dense_macs"]
    assert abs(ratio - 0.5) <= 0.03 * 0.5, ratio
    records = io.read_jsonl(trainer.run_dir / "metrics.jsonl")
    samples = [r for r in records if r["kind"] == "jst_sample"]
    assert [r["sample"] for r in samples] == [0, 1, 2, 3]
    final = [r for r in records if r["kind"] == "decision" and r.get("jst_phase") == "finetune"]
    assert len(final) == 1 and final[0]["target_macs_reached"]
    assert final[0]["best_sample"] == max(samples, key=lambda r: r["reward"])["sample"]
    assert trainer.method.folded and not trainer.method.handles
    # the saved model (no hooks) computes what the trained one did: its test accuracy is the summary's
    from prunekit import load

    model = load(trainer.run_dir / "model")
    state = trainer.state.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_validation_split_is_required(tmp_path):
    from prunekit.errors import UserError

    with pytest.raises(UserError, match="val_fraction"):
        Trainer(config("jst", "data.val_fraction=0"), tmp_path / "r", quiet=True).fit()


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("kill_at", [31, 62])  # mid-search (between mid-epoch boundaries), and in fine-tuning
def test_a_run_killed_mid_search_resumes_exactly(tmp_path, full_run, kill_at):
    full = full_run[0]

    def kill(step):
        if step == kill_at:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(config("jst", CHECKPOINTS), tmp_path / "cut", quiet=True, on_step=kill).fit()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    resumed.fit()
    a = io.load_tensors(full.run_dir / "model" / "model.safetensors")
    b = io.load_tensors(tmp_path / "cut" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = full.method.method_parameters(), resumed.method.method_parameters()
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    times = {"epoch_time_s", "data_time_s"}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in times} for r in rs]  # noqa: E731
    assert strip(io.read_jsonl(full.run_dir / "metrics.jsonl")) == \
        strip(io.read_jsonl(tmp_path / "cut" / "metrics.jsonl"))


def test_training_a_sample_physically_and_writing_it_back_equals_training_it_masked_in_the_supernet():
    """The engine's correctness definition, with JST's alpha factors: k SGD steps of a sampled sub-network, written
    back, give the supernet that k steps of the supernet give when the removed channels' outputs are multiplied by
    0 (and the kept ones by the same factors)."""
    import copy

    from prunekit.channels import ChannelPlan
    from prunekit.methods.base import Decision
    from prunekit.methods.jst import _scale_hook, searchable_layer
    from prunekit.models import create_model
    from prunekit.train.supernet import SupernetState

    torch.manual_seed(0)
    supernet = create_model("small_cnn", num_classes=10, in_channels=1)
    reference = copy.deepcopy(supernet)
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731  (no momentum: removed weights stay put)
    state = SupernetState(supernet, torch.zeros(2, 1, 8, 8), "internal", make_optimizer=sgd)
    layers = [searchable_layer(supernet, g) for g in state.groups]
    generator = torch.Generator().manual_seed(3)
    alphas = {lay.group.name: torch.randn(lay.group.size, generator=generator) for lay in layers}
    keep = {lay.group.name: cumulative_keep(perturbed_shares(alphas[lay.group.name],
                                                             gumbel_noise(lay.group.size, generator), 0.5), 0.6)
            for lay in layers}
    state.apply(Decision(plan=ChannelPlan(keep)))
    assert state.pruned and all(len(k) < lay.group.size for k, lay in zip(keep.values(), layers, strict=True))
    for lay in layers:  # the sub-network's factors, and the masked reference's: the same on kept channels, 0 elsewhere
        index = torch.tensor(keep[lay.group.name])
        module = state.model.get_submodule(lay.module)
        module.register_forward_hook(_scale_hook(alphas[lay.group.name], index, module))
        full = torch.zeros(lay.group.size)
        full[index] = alpha_factor(alphas[lay.group.name], index)
        target = reference.get_submodule(lay.module)
        target.register_forward_hook(_masked_hook(full))
    ref_opt = sgd(reference)
    for _ in range(5):
        x, y = torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator)
        for model, opt in ((state.model, state.optimizer), (reference, ref_opt)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    state.sync()
    ref = reference.state_dict()
    kept_bn = {lay.module: keep[lay.group.name] for lay in layers}
    for name, value in supernet.state_dict().items():
        module = name.rsplit(".", 1)[0]
        if module in kept_bn and name.endswith(("running_mean", "running_var")):
            # the masked reference's BN still sees removed channels' (discarded) outputs: compare the kept ones
            index = kept_bn[module]
            torch.testing.assert_close(value[index], ref[name][index], rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(value, ref[name], rtol=1e-5, atol=1e-6, msg=name)


def _masked_hook(factor: torch.Tensor):
    def hook(module, inputs, output):
        return output * factor.view(1, -1, *([1] * (output.dim() - 2)))

    return hook
