"""The learned supermask: the straight-through gradient against a hand-written computation, training changes only
the scores (weights and biases stay at init, even with a non-zero LR and weight decay), the final mask is the
thresholded scores, and a resumed run is bitwise equal."""

import torch
from torch import nn

from prunekit.config import load_config
from prunekit.methods.supermask import LearnedSupermask, SupermaskParams
from prunekit.train import checkpoint as ckpt
from prunekit.train.trainer import Trainer
from prunekit.weights.masks import WeightMasks


def test_straight_through_gradient_matches_manual():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    method = LearnedSupermask(SupermaskParams())
    model = nn.Sequential(layer)
    method.scores = {"0.weight": nn.Parameter(torch.randn(3, 4))}
    method._attach(model)
    x = torch.randn(5, 4)
    torch.manual_seed(1)
    model(x).pow(2).sum().backward()
    got = method.scores["0.weight"].grad.clone()
    assert layer.weight.grad is None and layer.bias.grad is None
    # by hand: the same Bernoulli draw, d loss / d s = (d loss / d W_eff * W) * sigmoid'(s)
    torch.manual_seed(1)
    s = method.scores["0.weight"].detach()
    prob = torch.sigmoid(s)
    m = torch.bernoulli(prob)
    w_eff = (layer.weight.detach() * m).requires_grad_(True)
    (x @ w_eff.T + layer.bias.detach()).pow(2).sum().backward()
    want = w_eff.grad * layer.weight.detach() * prob * (1 - prob)
    torch.testing.assert_close(got, want)
    model.eval()  # evaluation: the thresholded mask
    torch.testing.assert_close(model(x), x @ (layer.weight * (prob > 0.5)).T + layer.bias)


def cfg(tmp_epochs=2):
    return load_config(None, ["data.name=digits", "data.augment=false", "data.train_subset=256",
                              "data.test_subset=128", "model.name=mlp", "model.kwargs={input_size: 8, hidden: [32]}",
                              "optim.lr=0.1", "optim.weight_decay=0.01", f"train.epochs={tmp_epochs}",
                              "train.batch_size=32", "train.progress=never", "method.name=supermask",
                              "method.params={score_lr: 5.0}", "train.checkpoint_every_steps=5"])


def test_training_changes_only_the_scores(tmp_path):
    init_run = Trainer(cfg(), tmp_path / "probe", quiet=True)
    init_run.setup()
    init = {k: v.clone() for k, v in init_run.state.supernet.state_dict().items()}
    summary = Trainer(cfg(), tmp_path / "run", quiet=True).fit()
    data = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints")
    masks = WeightMasks.load(tmp_path / "run" / "model" / "masks.safetensors")
    assert set(masks) == {"layers.0.weight", "fc.weight"}
    for name, tensor in data.model.items():
        want = init[name] * masks[name] if name in masks else init[name]
        assert torch.equal(tensor, want), name
    scores = data.extra["method"]
    for name, mask in masks.items():
        s = scores[f"param/{name}"]
        assert not torch.equal(s, torch.zeros_like(s))  # trained
        assert torch.equal(mask, torch.sigmoid(s) > 0.5)
    assert 0.0 < summary["weight_density"] < 1.0 and summary["test_accuracy"] > 0.3  # chance is 0.1


def test_resume_is_bitwise(check_exact_resume):
    check_exact_resume(cfg(), lambda spe: spe + 3)
