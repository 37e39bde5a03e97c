import pytest

from prunekit.config import DataConfig
from prunekit.data import load_data
from prunekit.data.locate import find_data
from prunekit.errors import UserError


def test_search_order_env_then_data_then_shared(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    shared = tmp_path / "shared" / "data" / "fashion-mnist"
    shared.mkdir(parents=True)
    assert find_data("fashion-mnist") == shared
    local = project / "data" / "fashion-mnist"
    local.mkdir(parents=True)
    assert find_data("fashion-mnist") == local
    env = tmp_path / "elsewhere"
    (env / "fashion-mnist").mkdir(parents=True)
    monkeypatch.setenv("PRUNEKIT_DATA", str(env))
    assert find_data("fashion-mnist") == env / "fashion-mnist"


def test_not_found_lists_every_place_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path / "env"))
    with pytest.raises(UserError) as info:
        load_data(DataConfig(name="cifar100"))
    message = str(info.value)
    assert "\n" not in message and "data.download: true" in message
    for place in (str(tmp_path / "env"), str(tmp_path / "data"), str(tmp_path.parent / "shared" / "data")):
        assert place in message
    assert "cifar-100-python.tar.gz" in message
