"""The structured lottery unit end to end: every level is a physically smaller network (MACs fall by level), it
starts from the rewound weights restricted to the kept channels (sliced here by hand from the stored tensors), and
a driver killed during a level resumes to bitwise-equal results."""

import pytest
import torch
from lottery_cfg import tiny_cfg

from prunekit import io
from prunekit.errors import UserError
from prunekit.lottery import LotteryConfig, LotteryDriver, level_name
from prunekit.lottery.config import load_lottery_config
from prunekit.train import checkpoint as ckpt
from prunekit.train.trainer import Trainer


class Killed(Exception):
    """Raised from on_step to simulate a driver killed during a level."""


def channel_cfg(**train):
    cfg = tiny_cfg(**train)
    cfg.model.kwargs = {"input_size": 8, "hidden": [24, 16]}
    return cfg


def sliced(weights, keep0, keep1):
    """The MLP's state_dict restricted to kept hidden channels keep0 (layers.0) and keep1 (layers.2), by hand."""
    return {"layers.0.weight": weights["layers.0.weight"][keep0], "layers.0.bias": weights["layers.0.bias"][keep0],
            "layers.2.weight": weights["layers.2.weight"][keep1][:, keep0],
            "layers.2.bias": weights["layers.2.bias"][keep1], "fc.weight": weights["fc.weight"][:, keep1],
            "fc.bias": weights["fc.bias"]}


def kept(root, level):
    vectors = io.load_tensors(root / "masks" / f"{level_name(level)}.safetensors")
    return [torch.nonzero(vectors[g]).flatten() for g in ("layers.0", "layers.2")]


@pytest.mark.parametrize("mode", ["weight_rewind", "lr_rewind"])
def test_levels_are_physically_smaller_and_start_from_the_rewound_kept_weights(tmp_path, mode):
    lot = LotteryConfig(unit="channels", levels=2, rate=0.3, mode=mode, rewind_step="5it", scope="layer",
                        controls=["random_prune"])
    driver = LotteryDriver(channel_cfg(), lot, tmp_path, quiet=True)
    summary = driver.run()
    assert summary["finished"] and summary["unit"] == "channels"
    tickets = [r for r in summary["levels"] if r["kind"] == "ticket"]
    macs = [r["macs"] for r in tickets]
    assert macs[0] > macs[1] > macs[2]
    widths = [24, 16]
    for level in (1, 2):
        keep0, keep1 = kept(tmp_path, level)
        widths = [w - round(0.3 * w) for w in widths]  # per group: round(rate * remaining) go
        assert [len(keep0), len(keep1)] == widths
        final = ckpt.load_checkpoint(tmp_path / level_name(level) / "checkpoints")
        assert final.model["layers.0.weight"].shape == (widths[0], 64)  # the trained model is the small one
        start = driver.start_point(level, driver.mask(level))
        rewound = driver.rewind_weights() if mode == "weight_rewind" else driver.final(level - 1)[0]
        trainer = Trainer(driver.level_cfg(level), tmp_path / f"probe{level}", quiet=True,
                          start=driver.pruner.prepare_start(start, driver.probe()))
        trainer.setup()
        trainer._apply_start()
        assert trainer.state.model.layers[0].out_features == widths[0]
        assert trainer.state.model.layers[2].out_features == widths[1]
        want = sliced(rewound, keep0, keep1)
        got = trainer.state.model.state_dict()
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    # the random control keeps the ticket's per-group widths
    rand = io.read_json(tmp_path / level_name(2, "random_prune") / "summary.json")
    assert rand["macs"] == tickets[2]["macs"]


def test_structured_driver_resumes_after_a_kill_bitwise(tmp_path):
    cfg = channel_cfg(checkpoint_every_steps=3)
    lot = LotteryConfig(unit="channels", levels=2, rate=0.25, mode="weight_rewind", rewind_step="3it")
    full = LotteryDriver(cfg, lot, tmp_path / "full", quiet=True).run()
    count = {"n": 0}

    def kill(step):
        count["n"] += 1
        if count["n"] == 16 + 7:  # level 0 (16 steps) done, level 1 (from step 3) killed mid-epoch
            raise Killed

    with pytest.raises(Killed):
        LotteryDriver(cfg, lot, tmp_path / "cut", quiet=True, on_step=kill).run()
    assert not (tmp_path / "cut" / "level_01" / "summary.json").exists()
    cut = LotteryDriver(cfg, lot, tmp_path / "cut", quiet=True).run()
    assert [r["test_accuracy"] for r in cut["levels"]] == [r["test_accuracy"] for r in full["levels"]]
    for row in full["levels"]:
        a = ckpt.load_checkpoint(tmp_path / "full" / row["run"] / "checkpoints")
        b = ckpt.load_checkpoint(tmp_path / "cut" / row["run"] / "checkpoints")
        assert a.state["plan"] == b.state["plan"]
        assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)


def test_channel_unit_refuses_weight_only_settings(tmp_path):
    with pytest.raises(UserError, match="layer_rates applies to unit weights"):
        LotteryConfig(unit="channels", layer_rates={"fc.weight": 0.1})
    cfg = channel_cfg()
    cfg.method.name = "rigl"
    with pytest.raises(UserError, match="method fixed_plan"):
        LotteryDriver(cfg, LotteryConfig(unit="channels"), tmp_path, quiet=True)
    preset = tmp_path / "p.yaml"
    preset.write_text("data: {name: digits}\nmodel: {name: mlp, kwargs: {input_size: 8}}\nlottery: {unit: chan}\n")
    with pytest.raises(UserError, match="lottery.unit"):
        load_lottery_config(preset)


def test_lmc_of_a_structured_level_runs_on_the_subnet(tmp_path):
    from prunekit.lottery.lmc import run_lmc

    lot = LotteryConfig(unit="channels", levels=1, rate=0.3, mode="weight_rewind", rewind_step="5it")
    driver = LotteryDriver(channel_cfg(), lot, tmp_path / "lot", quiet=True)
    driver.run()
    start = driver.level_start(1)
    assert start.plan is not None and start.masks is None
    result = run_lmc(driver.level_cfg(1), start, tmp_path / "lmc", driver.probe(), points=3)
    errors = result.path["errors"]["test"]
    final = io.read_json(tmp_path / "lmc" / "copy_a" / "summary.json")
    assert abs((1 - errors[0]) - final["test_accuracy"]) < 1e-9  # alpha 0 is copy A, evaluated as the subnet
