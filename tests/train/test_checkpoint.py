import pytest
import torch

from prunekit.errors import UserError
from prunekit.train.checkpoint import CheckpointData, load_checkpoint, save_checkpoint


def data(epoch):
    return CheckpointData(epoch=epoch, model={"w": torch.full((2, 2), float(epoch))},
                          optimizer={"w": {"momentum_buffer": torch.ones(2, 2), "step": 3.0}},
                          step=10 * epoch)


def test_round_trip_and_only_latest_kept(tmp_path):
    save_checkpoint(tmp_path, data(1), keep_last=1)
    save_checkpoint(tmp_path, data(2), keep_last=1)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000000020"]
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
    with pytest.raises(UserError, match="truncated or corrupt|checksum mismatch"):
        load_checkpoint(tmp_path)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path)


def test_checkpoints_kept_by_name_survive_and_reload(tmp_path):
    save_checkpoint(tmp_path, data(1), keep_as="10it", keep_last=1)
    save_checkpoint(tmp_path, data(2), keep_last=1)
    save_checkpoint(tmp_path, data(3), keep_last=1)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000000010", "step-000000030"]
    assert load_checkpoint(tmp_path).step == 30
    rewound = load_checkpoint(tmp_path, name="10it")
    assert rewound.step == 10 and torch.equal(rewound.model["w"], torch.full((2, 2), 1.0))
    with pytest.raises(UserError, match="no checkpoint kept as"):
        load_checkpoint(tmp_path, name="99it")


def test_extra_tensor_maps_round_trip(tmp_path):
    checkpoint = data(1)
    checkpoint.extra = {"masks": {"w": torch.tensor([[True, False], [False, True]])}, "rng": {}}
    save_checkpoint(tmp_path, checkpoint)
    loaded = load_checkpoint(tmp_path)
    assert torch.equal(loaded.extra["masks"]["w"], checkpoint.extra["masks"]["w"])
    assert loaded.extra["masks"]["w"].dtype == torch.bool


def test_a_flipped_bit_in_the_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path, data(epoch))  # the newest two are kept
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000000020", "step-000000030"]
    path = tmp_path / "step-000000030" / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # one bit of a weight: the file still parses
    path.write_bytes(bytes(raw))
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 20 and torch.equal(loaded.model["w"], torch.full((2, 2), 2.0))
    assert "checksum mismatch" in capsys.readouterr().err


def test_no_good_checkpoint_left_is_a_user_error(tmp_path):
    directory = save_checkpoint(tmp_path, data(1))
    (directory / "state.json").write_text("{}")
    with pytest.raises(UserError, match="checksum mismatch"):
        load_checkpoint(tmp_path)


def test_a_pointer_outside_the_checkpoints_directory_is_refused(tmp_path):
    save_checkpoint(tmp_path / "checkpoints", data(1))
    (tmp_path / "checkpoints" / "latest.json").write_text('{"dir": "..", "epoch": 1, "step": 10}')
    with pytest.raises(UserError, match="malformed checkpoint pointer"):
        load_checkpoint(tmp_path / "checkpoints")
