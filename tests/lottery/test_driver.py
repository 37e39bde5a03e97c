"""The IMP driver: masked weights exactly zero after every retraining mode (through momentum and weight decay),
weight rewinding restores exactly the step-k tensors and the LR of step k, and a driver killed during a level
resumes to bitwise-equal results."""

import pytest
import torch
from lottery_cfg import tiny_cfg

from prunekit import io
from prunekit.lottery import LotteryConfig, LotteryDriver, level_name
from prunekit.train import checkpoint as ckpt
from prunekit.train.schedules import learning_rate
from prunekit.train.trainer import Trainer


class Killed(Exception):
    """Raised from on_step to simulate a driver killed during a level."""


def final_state(run_dir):
    data = ckpt.load_checkpoint(run_dir / "checkpoints")
    return data.model, data.extra.get("masks", {})


@pytest.mark.parametrize("mode", ["reset", "weight_rewind", "lr_rewind", "finetune"])
def test_masked_weights_exactly_zero_after_every_mode(tmp_path, mode):
    lot = LotteryConfig(levels=2, rate=0.3, mode=mode, rewind_step="5it", controls=["reinit", "random_prune"])
    summary = LotteryDriver(tiny_cfg(), lot, tmp_path, quiet=True).run()
    assert summary["finished"] and len(summary["levels"]) == 1 + 2 * 3
    for row in summary["levels"][1:]:
        weights, masks = final_state(tmp_path / row["run"])
        saved = io.load_tensors(tmp_path / row["run"] / "model" / "masks.safetensors")
        assert set(masks) == {"layers.0.weight", "fc.weight"}
        for name, mask in masks.items():
            assert torch.equal(saved[name], mask)
            assert bool((weights[name][~mask] == 0).all()), f"{row['run']}: pruned weights regrew in {name}"
            assert bool((weights[name][mask] != 0).all())
        density = 0.7 ** row["level"]
        assert abs(row["weight_density"] - density) < 0.01
    # the controls have the ticket's per-tensor densities; reinit its very mask
    for level in (1, 2):
        _, ticket = final_state(tmp_path / level_name(level))
        _, reinit = final_state(tmp_path / level_name(level, "reinit"))
        _, rand = final_state(tmp_path / level_name(level, "random_prune"))
        for name in ticket:
            assert torch.equal(reinit[name], ticket[name])
            assert int(rand[name].sum()) == int(ticket[name].sum()) and not torch.equal(rand[name], ticket[name])
    # masks only shrink from level to level
    m1, m2 = (io.load_tensors(tmp_path / "masks" / f"level_0{i}.safetensors") for i in (1, 2))
    assert all(not bool((m2[n] & ~m1[n]).any()) for n in m1)


def test_weight_rewind_restores_step_k_tensors_and_lr(tmp_path):
    cfg = tiny_cfg()
    lot = LotteryConfig(levels=1, mode="weight_rewind", rewind_step="5it")
    driver = LotteryDriver(cfg, lot, tmp_path / "lot", quiet=True)
    driver.run()
    # level 0 is exactly a plain run of the same config: its step-5 weights are the rewind point
    plain_cfg = tiny_cfg(keep_checkpoints=["5it"])
    Trainer(plain_cfg, tmp_path / "plain", quiet=True).fit()
    plain = ckpt.load_checkpoint(tmp_path / "plain" / "checkpoints", name="5it")
    assert plain.step == 5 == driver.rewind_step
    mask = driver.mask(1)
    start = driver.start_point(1, mask)
    assert start.step == 5
    for name, tensor in plain.model.items():
        assert torch.equal(start.weights[name], tensor)
    # the level trains from those tensors (masked) at the LR of step 5
    seen = {}
    trainer = None

    def on_step(step):
        if step == 6:
            seen["lr"] = trainer.state.optimizer.param_groups[0]["lr"]

    trainer = Trainer(driver.level_cfg(1), tmp_path / "again", quiet=True, on_step=on_step, start=start)
    trainer.setup()
    trainer._apply_start()
    for name, param in trainer.state.supernet.named_parameters():
        want = plain.model[name] * mask[name] if name in mask else plain.model[name]
        assert torch.equal(param.detach(), want)
    trainer = Trainer(driver.level_cfg(1), tmp_path / "again", quiet=True, on_step=on_step, start=start)
    trainer.fit()
    spe = driver.steps_per_epoch
    assert seen["lr"] == learning_rate(5, spe, cfg.train.epochs, cfg.optim.lr, cfg.schedule)
    # and it ends where the driver's level 1 ended
    a, _ = final_state(tmp_path / "again")
    b, _ = final_state(tmp_path / "lot" / "level_01")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_uses_constant_final_lr(tmp_path):
    lot = LotteryConfig(levels=1, mode="finetune", rewind_step="0.5", finetune_lr=0.003)
    driver = LotteryDriver(tiny_cfg(), lot, tmp_path, quiet=True)
    driver.run()
    records = io.read_jsonl(tmp_path / "level_01" / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1] and epochs[0]["lr"] == 0.003


def test_resume_after_kill_during_a_level_is_bitwise(tmp_path):
    cfg = tiny_cfg(checkpoint_every_steps=3)
    lot = LotteryConfig(levels=2, mode="lr_rewind", rewind_step="3it", controls=["random_prune"])
    full = LotteryDriver(cfg, lot, tmp_path / "full", quiet=True).run()

    count = {"n": 0}

    def kill(step):
        count["n"] += 1
        if count["n"] == 16 + 8:  # level 0 (16 steps) done, level 1 started at step 3: killed mid-epoch
            raise Killed

    with pytest.raises(Killed):
        LotteryDriver(cfg, lot, tmp_path / "cut", quiet=True, on_step=kill).run()
    assert not (tmp_path / "cut" / "level_01" / "summary.json").exists()
    cut = LotteryDriver(cfg, lot, tmp_path / "cut", quiet=True).run()
    assert [r["test_accuracy"] for r in cut["levels"]] == [r["test_accuracy"] for r in full["levels"]]
    for row in full["levels"]:
        a, ma = final_state(tmp_path / "full" / row["run"])
        b, mb = final_state(tmp_path / "cut" / row["run"])
        assert all(torch.equal(a[k], b[k]) for k in a) and all(torch.equal(ma[k], mb[k]) for k in ma)


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    from prunekit.errors import UserError

    cfg = tiny_cfg()
    LotteryDriver(cfg, LotteryConfig(levels=0), tmp_path, quiet=True).run()
    with pytest.raises(UserError, match="other settings"):
        LotteryDriver(cfg, LotteryConfig(levels=0, rate=0.5), tmp_path, quiet=True).run()
