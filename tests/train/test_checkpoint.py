import pytest
import torch

from prunekit.errors import UserError
from prunekit.train.checkpoint import CheckpointData, load_checkpoint, save_checkpoint


def data(epoch):
    return CheckpointData(epoch=epoch, model={"w": torch.full((2, 2), float(epoch))},
                          optimizer={"w": {"momentum_buffer": torch.ones(2, 2), "step": 3.0}},
                          state={"step": 10 * epoch})


def test_round_trip_and_only_latest_kept(tmp_path):
    save_checkpoint(tmp_path, data(1))
    save_checkpoint(tmp_path, data(2))
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-0002"]
    loaded = load_checkpoint(tmp_path)
    assert loaded.epoch == 2 and loaded.state["step"] == 20
    assert torch.equal(loaded.model["w"], torch.full((2, 2), 2.0))
    assert loaded.optimizer["w"]["step"] == 3.0 and torch.equal(loaded.optimizer["w"]["momentum_buffer"],
                                                                torch.ones(2, 2))
    assert not list(tmp_path.rglob("*.tmp"))


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    directory = save_checkpoint(tmp_path, data(1))
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(tmp_path)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path)
