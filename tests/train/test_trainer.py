"""End-to-end trainer checks on small data: a dense run, exact resume after a mid-epoch kill, run directories."""

import json

import pytest
import torch

from prunekit import io
from prunekit.config import load_config
from prunekit.errors import UserError
from prunekit.train.trainer import Trainer


def quick_config(**overrides):
    sets = [
        "data.name=synthetic", "data.synthetic_size=192", "data.synthetic_shape=[3, 16, 16]",
        "model.name=small_cnn", "train.epochs=3", "train.batch_size=32", "train.threads=1",
        "optim.lr=0.05", "data.crop_padding=2",
    ] + [f"{k}={v}" for k, v in overrides.items()]
    return load_config(None, sets)


class Interrupt(Exception):
    pass


def test_dense_run_writes_a_complete_run_directory(tmp_path):
    summary = Trainer(quick_config(), tmp_path / "run", quiet=True).fit()
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    for key in ("test_accuracy", "params", "macs", "flops", "train_time_s", "train_flops", "epochs", "method"):
        assert key in summary
    assert summary["flops"] == 2 * summary["macs"] and 0.0 <= summary["test_accuracy"] <= 1.0
    epochs = [r for r in io.read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2]
    # training FLOPs of an epoch = 3 x forward FLOPs x samples seen (the ledger's definition)
    assert epochs[0]["train_flops"] == 3 * 2 * summary["macs"] * 192
    assert summary["train_flops"] == sum(r["train_flops"] for r in epochs)
    assert summary["test_accuracy"] > 0.3  # the synthetic data is learnable; chance is 0.1


def test_resume_after_mid_epoch_kill_matches_uninterrupted_run(check_exact_resume):
    check_exact_resume(quick_config(), lambda steps_per_epoch: steps_per_epoch + 3)  # mid second epoch


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        Trainer(quick_config(), run, quiet=True).fit()
    assert (run / "precious.txt").read_text() == "keep me"


def test_config_yaml_is_the_resolved_config(tmp_path):
    cfg = quick_config()
    Trainer(cfg, tmp_path / "run", quiet=True).fit()
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


def one_epoch(tmp_path, **overrides):
    trainer = Trainer(quick_config(**{"train.epochs": 1, **overrides}), tmp_path / "run", quiet=True)
    return trainer, trainer.fit(), io.read_jsonl(tmp_path / "run" / "metrics.jsonl")


def test_channels_last_trains_in_channels_last(tmp_path):
    trainer, _, _ = one_epoch(tmp_path, **{"train.channels_last": "true"})
    weights = [p for p in trainer.state.model.parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def test_amp_autocasts_to_bfloat16(tmp_path):
    trainer, summary, _ = one_epoch(tmp_path, **{"train.amp": "true"})
    with trainer._autocast():
        logits = trainer.state.model(torch.zeros(2, 3, 16, 16))
    assert logits.dtype == torch.bfloat16 and 0.0 <= summary["test_accuracy"] <= 1.0


def test_label_smoothing_changes_the_loss(tmp_path):
    plain = one_epoch(tmp_path / "a")[2][0]["train_loss"]
    smooth = one_epoch(tmp_path / "b", **{"train.label_smoothing": 0.2})[2][0]["train_loss"]
    assert smooth > plain  # smoothed targets cannot be fitted as tightly


def test_validation_split_is_evaluated(tmp_path):
    record = one_epoch(tmp_path, **{"data.val_fraction": 0.25})[2][0]
    assert 0.0 <= record["val_accuracy"] <= 1.0 and "val_loss" in record


def test_adamw_and_multistep_schedule(tmp_path):
    trainer, _, records = one_epoch(tmp_path, **{"optim.name": "adamw", "optim.lr": 0.01, "train.epochs": 3,
                                                 "schedule.name": "multistep", "schedule.milestones": "[2]"})
    assert isinstance(trainer.state.optimizer, torch.optim.AdamW)
    assert [r["lr"] for r in records if r["kind"] == "epoch"] == pytest.approx([0.01, 0.01, 0.001])


def test_model_that_does_not_fit_the_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not accept inputs of shape 3x16x16"):
        Trainer(quick_config(**{"model.name": "mlp"}), tmp_path / "run", quiet=True).fit()
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


@pytest.mark.parametrize("device", ["gpu", "cuda:7", "tpu"])
def test_bad_device_is_a_user_error(tmp_path, device):
    with pytest.raises(UserError, match="train.device"):
        Trainer(quick_config(**{"train.device": device}), tmp_path / "run", quiet=True)


def test_bad_data_path_leaves_no_run_directory(tmp_path):
    cfg = quick_config(**{"data.name": "cifar10", "data.path": str(tmp_path / "missing")})
    with pytest.raises(UserError):
        Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert not (tmp_path / "run").exists()


def test_resume_survives_a_half_written_metrics_line(tmp_path):
    def kill(step):
        if step == 8:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(quick_config(), tmp_path / "run", quiet=True, on_step=kill).fit()
    with open(tmp_path / "run" / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "epo')  # killed in the middle of an append
    summary = Trainer.resume(tmp_path / "run", quiet=True).fit()
    assert [r["epoch"] for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [0, 1, 2]
    assert summary["epochs"] == 3


def test_tensorboard_logging(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    Trainer(quick_config(**{"train.tensorboard": "true", "train.epochs": 1}), tmp_path / "run", quiet=True).fit()
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))


def test_method_parameters_that_do_not_fit_the_run_leave_no_run_directory(tmp_path):
    cfg = quick_config(**{"method.name": "reprune", "method.params": "{sparsity: 0.5, t_prune: 10, interval: 2}"})
    with pytest.raises(UserError, match="t_prune"):
        Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert not (tmp_path / "run").exists()


def test_baseline_run_adds_training_flops_and_time_saved(tmp_path):
    dense = Trainer(quick_config(), tmp_path / "dense", quiet=True).fit()
    pruned_cfg = quick_config(**{"method.name": "l1_filter",
                                 "method.params": "{prune_epoch: 1, rate: 0.5}",
                                 "baseline_run": str(tmp_path / "dense")})
    pruned = Trainer(pruned_cfg, tmp_path / "pruned", quiet=True).fit()
    assert pruned["train_flops"] < dense["train_flops"]
    assert pruned["train_flops_saved"] == pytest.approx(1 - pruned["train_flops"] / dense["train_flops"])
    assert pruned["train_time_saved"] == pytest.approx(1 - pruned["train_time_s"] / dense["train_time_s"])
    assert "train_flops_saved" not in dense


@pytest.mark.parametrize("summary", [None, {"train_flops": 0}, "not json"])
def test_baseline_run_without_a_usable_summary_is_a_user_error(tmp_path, summary):
    base = tmp_path / "base"
    base.mkdir()
    if summary == "not json":
        (base / "summary.json").write_text("{")
    elif summary is not None:
        (base / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UserError, match="summary.json"):
        Trainer(quick_config(baseline_run=str(base)), tmp_path / "run", quiet=True).fit()
    assert not (tmp_path / "run").exists()


def test_a_run_killed_before_its_first_checkpoint_restarts_on_resume(tmp_path):
    run = tmp_path / "run"

    def kill(step):
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(quick_config(), run, quiet=True, on_step=kill).fit()
    assert not (run / "checkpoints" / "latest.json").exists()
    with pytest.raises(UserError, match="stopped before its first checkpoint"):
        Trainer(quick_config(), run, quiet=True).fit()  # `train` says how to go on
    summary = Trainer.resume(run, quiet=True).fit()  # --resume starts it again from the beginning
    fresh = Trainer(quick_config(), tmp_path / "fresh", quiet=True).fit()
    assert summary["test_accuracy"] == fresh["test_accuracy"]
    epochs = [r["epoch"] for r in io.read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"]
    assert epochs == [0, 1, 2]


def test_a_second_trainer_on_the_same_run_directory_is_refused(tmp_path):
    from prunekit import rundir

    Trainer(quick_config(**{"train.epochs": 1}), tmp_path / "run", quiet=True).fit()
    with rundir.lock_run_dir(tmp_path / "run"), pytest.raises(UserError, match="lock|another|process"):
        Trainer.resume(tmp_path / "run", quiet=True).fit()


def test_a_sparse_method_reports_its_training_flops_beside_the_dense_count(tmp_path):
    _, summary, _ = one_epoch(tmp_path, **{"method.name": "rigl", "method.params.sparsity": 0.8,
                                           "method.params.update_every": 2})
    assert 0.0 < summary["sparse_train_flops_ratio"] < 1.0
    assert summary["sparse_train_flops"] == round(summary["sparse_train_flops_ratio"] * summary["train_flops"])
    assert summary["weight_density"] == pytest.approx(0.2, abs=0.01)


def test_resume_may_change_the_learning_rate_but_not_what_defines_the_run(tmp_path):
    from prunekit.config import read_yaml

    def kill(step):
        if step == 7:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(quick_config(), tmp_path / "run", quiet=True, on_step=kill).fit()
    with pytest.raises(UserError, match="cannot change on resume.*optim.lr"):
        Trainer.resume(tmp_path / "run", overrides=["model.name=mlp"], quiet=True)
    Trainer.resume(tmp_path / "run", overrides=["optim.lr=0.01"], quiet=True).fit()
    assert read_yaml(tmp_path / "run" / "config.yaml")["optim"]["lr"] == 0.01
    lrs = [r["lr"] for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "epoch"]
    assert lrs[0] > lrs[-1] and max(lrs[1:]) <= 0.01  # epoch 1 ran at 0.05; after the resume the schedule of 0.01
