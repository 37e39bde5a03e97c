"""`prunekit lottery`: the quickstart preset with its `lottery:` section, overrides, and one-line errors."""

from prunekit import io
from prunekit.cli import main
from prunekit.lottery import load_lottery_config


def test_quickstart_preset_loads_without_lottery_in_the_run_config():
    cfg, lot = load_lottery_config("configs/lottery/quickstart.yaml", ["lottery.rate=0.5", "train.epochs=1"])
    assert lot.rate == 0.5 and cfg.train.epochs == 1 and "lottery" not in cfg.to_dict()


def test_cli_runs_and_resumes(tmp_path, capsys):
    args = ["lottery", "configs/lottery/quickstart.yaml", "--levels", "1", "--mode", "reset", "--quiet",
            "--out", str(tmp_path),
            "--set", "train.epochs=1", "--set", "data.train_subset=200", "--set", "lottery.controls=[]"]
    assert main(args) == 0
    summary = io.read_json(tmp_path / "lottery.json")
    assert summary["finished"] and [r["run"] for r in summary["levels"]] == ["level_00", "level_01"]
    assert main(args) == 0  # finished levels are skipped
    assert io.read_json(tmp_path / "lottery.json") == summary


def test_cli_bad_key_is_one_line(tmp_path, capsys):
    assert main(["lottery", "configs/lottery/quickstart.yaml", "--set", "lottery.levles=2",
                 "--out", str(tmp_path)]) == 2
    assert "lottery.levles" in capsys.readouterr().err


def test_lmc_cli_dense_and_on_a_lottery_level(tmp_path, capsys):
    small = ["--set", "train.epochs=1", "--set", "data.train_subset=128", "--quiet", "--points", "3"]
    assert main(["lmc", "configs/lottery/quickstart.yaml", "--at", "1it", "--out", str(tmp_path / "dense"),
                 *small]) == 0
    result = io.read_json(tmp_path / "dense" / "lmc.json")
    assert result["start_step"] == 1 and set(result["barrier"]) == {"train", "test"}
    assert main(["lottery", "configs/lottery/quickstart.yaml", "--levels", "1", "--out", str(tmp_path / "lot"),
                 "--set", "lottery.rewind_step=1it", "--set", "lottery.controls=[]", *small[:-2]]) == 0
    assert main(["lmc", "--lottery", str(tmp_path / "lot"), "--level", "1", "--points", "3", "--quiet"]) == 0
    assert io.read_json(tmp_path / "lot" / "lmc_level_01" / "lmc.json")["start_step"] == 1
    assert main(["lmc", "--lottery", str(tmp_path), "--level", "1"]) == 2
