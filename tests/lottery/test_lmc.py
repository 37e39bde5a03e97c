"""Linear mode connectivity: the error barrier of a hand-computed path, masks kept along it, and the two copies
trained from one start point with different data orders."""

import math

import torch
from torch import nn

from prunekit.lottery.lmc import error_barrier, evaluate_path, interpolate_state

X = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
Y = torch.tensor([0, 1])


def two_layer():
    return nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2))


def endpoint(first_unit: bool):
    """l0 = 2 relu(x_1) - 1.2 (A) or 2 relu(x_2) - 1.2 (B); l1 = 0."""
    w1 = torch.zeros(2, 2)
    w2 = torch.zeros(2, 2)
    if first_unit:
        w1[0, 0], w2[0, 0] = 1.0, 2.0
    else:
        w1[1, 1], w2[0, 1] = 1.0, 2.0
    return {"0.weight": w1, "2.weight": w2, "2.bias": torch.tensor([-1.2, 0.0])}


def accuracy(model):
    with torch.no_grad():
        return (model(X).argmax(1) == Y).float().mean().item()


def test_barrier_of_a_hand_computed_path():
    # On the path, l0(x=(1,1)) = 2 (1 - a)^2 + 2 a^2 - 1.2 < 0 exactly for a in ((1 - sqrt .2) / 2, (1 + sqrt .2) / 2):
    # there the first sample is misclassified (error 1/2); the second (l0 = -1.2) never is.
    result = evaluate_path(two_layer(), endpoint(True), endpoint(False), {"train": accuracy}, points=30)
    low, high = (1 - math.sqrt(0.2)) / 2, (1 + math.sqrt(0.2)) / 2
    want = [0.5 if low < a < high else 0.0 for a in result["alphas"]]
    assert result["alphas"][0] == 0.0 and result["alphas"][-1] == 1.0 and len(result["alphas"]) == 30
    assert result["errors"]["train"] == want
    assert result["barrier"]["train"] == 0.5
    assert error_barrier([0.1, 0.4, 0.3]) == 0.4 - 0.2


def test_interpolation_keeps_masks_and_integer_buffers():
    a = {"w": torch.tensor([1.0, 2.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 4.0, 5.0]), "n": torch.tensor(9)}
    out = interpolate_state(a, b, 0.25, masks={"w": torch.tensor([True, False, True])})
    assert torch.equal(out["w"], torch.tensor([1.5, 0.0, 3.5])) and int(out["n"]) == 5


def test_copies_from_one_start_differ_only_by_data_order(tmp_path):
    from lottery_cfg import tiny_cfg

    from prunekit.lottery import LotteryConfig, LotteryDriver
    from prunekit.lottery.lmc import run_lmc

    cfg = tiny_cfg(epochs=2)
    driver = LotteryDriver(cfg, LotteryConfig(levels=1, mode="weight_rewind", rewind_step="4it"), tmp_path / "lot",
                           quiet=True)
    driver.run()
    start = driver.start_point(1, driver.mask(1))
    result = run_lmc(driver.level_cfg(1), start, tmp_path / "lmc", driver.probe(), points=5)
    json_ = (tmp_path / "lmc" / "lmc.json").read_text()
    assert '"barrier"' in json_ and (tmp_path / "lmc" / "lmc.png").read_bytes()[:4] == b"\x89PNG"
    errors = result.path["errors"]["test"]
    assert len(errors) == 5 and result.start_step == 4
    from prunekit.train import checkpoint as ckpt

    a = ckpt.load_checkpoint(tmp_path / "lmc" / "copy_a" / "checkpoints")
    b = ckpt.load_checkpoint(tmp_path / "lmc" / "copy_b" / "checkpoints")
    assert not torch.equal(a.model["layers.0.weight"], b.model["layers.0.weight"])
    for name, mask in start.masks.items():  # both copies sparse with the level's mask
        assert bool((a.model[name][~mask] == 0).all()) and bool((b.model[name][~mask] == 0).all())
