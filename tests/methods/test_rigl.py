"""RigL, SET, static and ITOP end to end on digits: exact per-layer densities after every update, grown weights
and their momentum zero, the update applied from the dense gradient (checked against a direct recomputation),
no optimizer step on a RigL update iteration (taken by ITOP), the same masks on every replica, masks that
survive kill and resume bitwise."""

import pytest
import torch

from prunekit import io
from prunekit.methods import METHODS
from prunekit.methods.itop import ITOP
from prunekit.methods.rigl import RigL
from prunekit.methods.set_method import SET
from prunekit.methods.static_sparse import StaticSparse
from prunekit.seeding import derived_seed
from prunekit.train.trainer import Trainer
from prunekit.weights import dst
from prunekit.weights.densities import maskable_weights, nonzero_counts

PARAMS = "{sparsity: 0.8, distribution: erk, update_every: 5}"


class Probe:
    """Mixin recording, around every update: the masks, weights and dense gradients before it, the masks after,
    and at the next after_backward (before any optimizer step) the weights and momentum at grown positions."""

    def __init__(self, params=None):
        super().__init__(params)
        self.updates = []
        self.pending = None
        self.before_step = {}

    def after_backward(self, model):
        if self.pending is not None:  # the step after an update, before its optimizer step
            masks, old = self.pending
            params = dict(model.named_parameters())
            state = self.ctx.optimizer.state
            for name, mask in masks.items():
                grown = mask & ~old[name]
                p = params[name]
                self.updates[-1]["grown_weight_abs"] = max(self.updates[-1].get("grown_weight_abs", 0.0),
                                                           float(p.detach()[grown].abs().sum()))
                buf = state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    self.updates[-1]["grown_momentum_abs"] = max(self.updates[-1].get("grown_momentum_abs", 0.0),
                                                                 float(buf[grown].abs().sum()))
            self.pending = None
        self.before_step = {n: p.detach().clone() for n, p in model.named_parameters()}
        super().after_backward(model)

    def on_step_end(self, step, ctx):
        old = {n: m.clone() for n, m in ctx.model_masks.items()}
        weights = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
        grads = {n: g.clone() for n, g in getattr(self, "_grads", {}).items()}
        decision = super().on_step_end(step, ctx)
        if decision is not None and decision.masks:
            self.updates.append({"step": step, "old": old, "new": decision.masks, "weights": weights,
                                 "grads": grads, "before_step": self.before_step})
            self.pending = (decision.masks, old)
        return decision


def probed(base, name):
    if name not in METHODS:
        cls = type(f"Probed{base.__name__}", (Probe, base), {"name": name})
        METHODS.register(name)(cls)
    return name


@pytest.fixture
def run(digits_config, tmp_path):
    def go(base, params=PARAMS, epochs=2, *more):
        name = probed(base, f"probe_{base.__name__.lower()}")
        trainer = Trainer(digits_config(epochs, name, params, *more), tmp_path / name, quiet=True)
        trainer.fit()
        return trainer
    return go


def expected_counts(trainer, sparsity=0.8):
    model = trainer.state.model
    return nonzero_counts(maskable_weights(model), trainer.method.target_sparsities(model))


def test_rigl_keeps_exact_densities_zero_grown_weights_and_momentum(run):
    trainer = run(RigL)
    method, counts = trainer.method, expected_counts(trainer)
    assert len(method.updates) >= 5
    for update in method.updates:
        for name, mask in {**update["old"], **update["new"]}.items():
            assert int(mask.sum()) == counts[name], (update["step"], name)
        assert update["grown_weight_abs"] == 0.0
        assert update.get("grown_momentum_abs", 0.0) == 0.0
    assert any("grown_momentum_abs" in u for u in method.updates)  # the momentum check did run
    final = trainer.state.masks
    assert {n: int(m.sum()) for n, m in final.items()} == counts
    assert final.density() == pytest.approx(0.2, abs=2e-3)
    records = io.read_jsonl(trainer.run_dir / "metrics.jsonl")
    updates = [r for r in records if r["kind"] == "update"]
    assert [r["step"] for r in updates] == [u["step"] for u in method.updates]
    assert all(r["density"] == pytest.approx(final.density()) for r in updates)
    rates = [r["itop_rate"] for r in updates]
    assert rates == sorted(rates) and rates[-1] > 0.2  # R_s grows as new weights are explored
    assert sum(r["changed"] for r in updates) > 0
    assert 0.2 < updates[-1]["train_flops_vs_dense"] < 1.0


def test_rigl_update_is_drop_by_magnitude_and_grow_by_dense_gradient(run):
    trainer = run(RigL, epochs=1)
    method = trainer.method
    for update in method.updates:
        step = update["step"]
        generator = torch.Generator().manual_seed(derived_seed(trainer.cfg.train.seed, 0xD57B, step))
        fraction = dst.drop_fraction(step, 0.3, method.t_end())
        for name, old in update["old"].items():
            if name in method.dense_names:
                continue
            grad = update["grads"][name]
            assert bool((grad[~old] != 0).any()), "the stashed gradient is dense"
            k = int(fraction * int(old.sum()))
            noisy = update["weights"][name].abs().double() + 1e-5 * torch.randn(old.shape, generator=generator,
                                                                               dtype=torch.float64)
            # direct: keep the largest noisy |w| among the active, then the largest |g| among the rest
            active = old.flatten().nonzero().squeeze(1).tolist()
            dropped = sorted(active, key=lambda i: (noisy.flatten()[i].item(), i))[:k]
            after_drop = old.flatten().clone()
            after_drop[dropped] = False
            cands = (~after_drop).nonzero().squeeze(1).tolist()
            grown = sorted(cands, key=lambda i: (-grad.abs().flatten()[i].item(), i))[:k]
            expected = after_drop.clone()
            expected[grown] = True
            assert torch.equal(update["new"][name].flatten(), expected), (step, name)
        # no optimizer step on the update iteration: the weights are those before the step
        for name, weight in update["weights"].items():
            assert torch.equal(weight, update["before_step"][name]), name


def test_itop_takes_the_optimizer_step_and_set_grows_at_random(run):
    itop = run(ITOP, "{sparsity: 0.8, update_every: 7}", 1)
    assert itop.method.updates
    update = itop.method.updates[0]
    assert any(not torch.equal(update["weights"][n], update["before_step"][n]) for n in update["weights"])
    set_run = run(SET, PARAMS, 1)
    counts = expected_counts(set_run)
    for update in set_run.method.updates:
        for name, mask in update["new"].items():
            assert int(mask.sum()) == counts[name]
            assert update["grown_weight_abs"] == 0.0


def test_static_masks_never_change(run):
    trainer = run(StaticSparse, "{sparsity: 0.9, distribution: uniform}", 2)
    assert trainer.method.updates == []
    counts = expected_counts(trainer)
    masks = trainer.state.masks
    assert {n: int(m.sum()) for n, m in masks.items()} == counts
    first = maskable_weights(trainer.state.model)
    assert bool(masks[next(iter(first))].all())  # uniform keeps the first layer dense
    params = dict(trainer.state.model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name].detach()[~mask] == 0)


def test_replicas_draw_the_same_masks(digits_config, tmp_path):
    """Masks are seeded by (run seed, step): two runs of the same config (two replicas) agree exactly, a different
    seed does not."""
    cfg = lambda seed: digits_config(1, "set", PARAMS, f"train.seed={seed}")  # noqa: E731
    a, b, c = (Trainer(cfg(s), tmp_path / f"r{i}", quiet=True) for i, s in enumerate((0, 0, 1)))
    for t in (a, b, c):
        t.fit()
    assert all(torch.equal(a.state.masks[n], b.state.masks[n]) for n in a.state.masks)
    assert any(not torch.equal(a.state.masks[n], c.state.masks[n]) for n in a.state.masks)


@pytest.mark.parametrize("method", ["rigl", "set", "itop"])
def test_masks_survive_kill_and_resume_bitwise(digits_config, check_exact_resume, method):
    params = "{sparsity: 0.8, update_every: 4}"
    cfg = digits_config(2, method, params, "train.checkpoint_every_steps=3")
    cut = check_exact_resume(cfg, lambda spe: spe + 8)  # mid second epoch, after several updates
    full = io.load_tensors(cut.parent / "full" / "model" / "masks.safetensors")
    mine = io.load_tensors(cut / "model" / "masks.safetensors")
    assert full.keys() == mine.keys() and all(torch.equal(full[k], mine[k]) for k in full)
