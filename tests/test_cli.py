"""The CLI's contract: user mistakes give one line on stderr and exit status 2, results go to stdout."""

import json
import os
import subprocess
import sys

import pytest

import prunekit
from prunekit.cli import main
from prunekit.errors import UserError


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunekit: error: "), err
    assert "Traceback" not in err


def test_unknown_key_suggests_closest(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epohcs: 3\n")
    code, _, err = run_cli(capsys, "train", str(path), "--out", str(tmp_path / "run"))
    one_line_error(code, err)
    assert "did you mean 'train.epochs'" in err
    assert not (tmp_path / "run").exists()


def test_bad_override_and_missing_config(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", str(tmp_path / "none.yaml"))
    one_line_error(code, err)
    path = tmp_path / "ok.yaml"
    path.write_text("train:\n  epochs: 1\n")
    code, _, err = run_cli(capsys, "train", str(path), "--set", "optim.lr=-1")
    one_line_error(code, err)
    assert "optim.lr" in err


def test_missing_data_path_says_where_it_looked(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  name: cifar10\n  path: {tmp_path / 'nowhere'}\n")
    code, _, err = run_cli(capsys, "train", str(path), "--out", str(tmp_path / "run"))
    one_line_error(code, err)
    assert "nowhere" in err


def test_truncated_checkpoint_on_resume(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  name: synthetic\n  synthetic_size: 64\n  synthetic_shape: [1, 8, 8]\n"
                    "model:\n  name: small_cnn\ntrain:\n  epochs: 1\n  batch_size: 32\n")
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", str(path), "--out", str(run), "--quiet")
    assert code == 0 and "test_accuracy" in out
    weights = next((run / "checkpoints").glob("*/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run_cli(capsys, "train", "--resume", str(run))
    one_line_error(code, err)
    assert "truncated or corrupt" in err or "checksum mismatch" in err  # the manifest catches it first


def test_measure_json(capsys):
    code, out, _ = run_cli(capsys, "measure", "--model", "resnet20", "--json", "--no-latency")
    assert code == 0
    result = json.loads(out)
    # option-B CIFAR ResNet-20 (1x1 conv + BN projection shortcuts); tests/models checks it layer by layer
    assert result["params"] == 272474 and result["flops"] == 2 * result["macs"]


def test_measure_unknown_model_and_bad_input(capsys):
    code, _, err = run_cli(capsys, "measure", "--model", "resnet21")
    one_line_error(code, err)
    assert "did you mean" in err
    code, _, err = run_cli(capsys, "measure", "--model", "resnet20", "--input", "3by32")
    one_line_error(code, err)


def test_real_process_exit_status(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [1, 2\n")
    proc = subprocess.run([sys.executable, "-m", "prunekit.cli", "train", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not valid YAML" in proc.stderr


@pytest.mark.parametrize("command", [["info"], ["measure", "--model", "lenet5", "--no-latency"]])
def test_informational_commands(capsys, command):
    code, out, _ = run_cli(capsys, *command)
    assert code == 0 and out.strip()


IMAGENET_SIZED = {"resnet18", "resnet34", "resnet50"}


def registry_names():
    from prunekit.models import list_models

    return list_models()


@pytest.mark.parametrize("name", registry_names())
def test_inspect_works_on_every_registry_model(capsys, name):
    extra = ["--input", "3x64x64"] if name in IMAGENET_SIZED else []
    code, out, _ = run_cli(capsys, "inspect", "--model", name, "--json", *extra)
    assert code == 0
    result = json.loads(out)
    assert result["unsupported"] == []
    assert result["groups"] and all(g["size"] >= 1 for g in result["groups"])
    assert any(g["prunable_all"] for g in result["groups"])


def test_inspect_policy_filter(capsys):
    code, out, _ = run_cli(capsys, "inspect", "--model", "resnet20", "--policy", "internal", "--json")
    assert code == 0
    names = [g["name"] for g in json.loads(out)["groups"]]
    assert names == [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]


def test_pruned_run_loads_bitwise_and_exports(tmp_path, capsys):
    import torch

    import prunekit
    from prunekit.config import load_config
    from prunekit.train.trainer import Trainer

    cfg = load_config(None, ["data.name=synthetic", "data.synthetic_size=64", "data.synthetic_shape=[3, 16, 16]",
                             "model.name=small_cnn", "train.epochs=2", "train.batch_size=32", "method.name=reprune",
                             "method.params={sparsity: 0.5, t_prune: 2, interval: 1}"])
    run = tmp_path / "run"
    trainer = Trainer(cfg, run, quiet=True)
    summary = trainer.fit()
    assert summary["macs"] < summary["dense_macs"]
    trained = trainer.state.model.eval()
    loaded = prunekit.load(run)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x))  # the saved model, rebuilt from plan + safetensors
    assert sum(p.numel() for p in loaded.parameters()) == summary["params"]
    code, out, _ = run_cli(capsys, "export", str(run), "--onnx", str(tmp_path / "m.onnx"))
    assert code == 0 and (tmp_path / "m.onnx").is_file() and "max abs difference" in out


def test_measure_rejects_a_model_that_does_not_fit_the_input(capsys):
    code, _, err = run_cli(capsys, "measure", "--model", "lenet5", "--input", "3x4x4", "--no-latency")
    one_line_error(code, err)
    assert "does not accept inputs of shape 3x4x4" in err


def test_load_without_a_model_is_a_user_error(tmp_path):
    import prunekit

    with pytest.raises(prunekit.UserError, match="no saved model"):
        prunekit.load(tmp_path)


def test_measure_warns_when_latency_is_unsteady(capsys, monkeypatch):
    import prunekit.measure
    from prunekit.measure import LatencyResult

    def unsteady(*args, **kwargs):
        return LatencyResult(median_ms=278.0, p10_ms=2.9, p90_ms=300.0, batch_size=1, threads=1,
                             channels_last=False, repeats=30)

    monkeypatch.setattr(prunekit.measure, "measure_latency", unsteady)
    code, out, err = run_cli(capsys, "measure", "--model", "small_cnn", "--json")
    assert code == 0 and json.loads(out)["latency_ms"] == 278.0
    assert err.startswith("warning: latency varied 103.4x") and len(err.strip().splitlines()) == 1


# ---- loading runs no code named in a run directory (issue 18) ----

HUBCONF = """
from pathlib import Path
Path({marker!r}).write_text("hubconf imported")


def evil(**kwargs):
    Path({marker!r}).write_text("hubconf entry point called")
    import torch
    return torch.nn.Linear(1, 1)
"""

LOCAL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("module imported")


def build(num_classes=10, in_channels=1):
    from prunekit.models import create_model
    return create_model("small_cnn", num_classes=num_classes, in_channels=in_channels)
"""


def crafted_run(tmp_path, name, kwargs):
    """A genuine small_cnn run directory whose pruned.json then names `name` with `kwargs`."""
    from prunekit.channels import ChannelPlan, save_pruned_model
    from prunekit.io import read_json, write_json
    from prunekit.models import create_model

    run = tmp_path / "run"
    spec = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "kwargs": {}, "input_shape": [1, 8, 8]}
    save_pruned_model(run / "model", create_model("small_cnn", num_classes=10, in_channels=1), ChannelPlan(), spec)
    record = read_json(run / "model" / "pruned.json")
    record["model"].update(name=name, kwargs=kwargs)
    write_json(run / "model" / "pruned.json", record)
    return run


def export_process(tmp_path, run, *extra):
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'code'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "prunekit", "export", str(run), "--onnx", str(tmp_path / "m.onnx"),
                           *extra], capture_output=True, text=True, timeout=120, cwd=tmp_path / "code", env=env)


@pytest.mark.parametrize("trust", [False, True])
def test_crafted_torch_hub_record_runs_no_code(tmp_path, trust):
    marker = tmp_path / "MARKER"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "hubconf.py").write_text(HUBCONF.format(marker=str(marker)))
    run = crafted_run(tmp_path, "torch.hub:load", {"repo_or_dir": str(tmp_path / "code"), "model": "evil",
                                                   "source": "local", "trust_repo": True})
    proc = export_process(tmp_path, run, *(["--trust-factory"] if trust else []))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("prunekit: error: "), proc.stderr
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


def test_crafted_local_module_record_runs_no_code(tmp_path):
    marker = tmp_path / "MARKER"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "evil_local_module.py").write_text(LOCAL_MODULE.format(marker=str(marker)))
    run = crafted_run(tmp_path, "evil_local_module:build", {})
    proc = export_process(tmp_path, run)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--trust-factory" in proc.stderr, proc.stderr
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()
    with pytest.raises(UserError, match="never imports code"):
        prunekit.load(run)
    assert not marker.exists()


def test_trusted_factory_loads_when_named_explicitly(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    marker = tmp_path / "MARKER"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "trusted_local_module.py").write_text(LOCAL_MODULE.format(marker=str(marker)))
    run = crafted_run(tmp_path, "trusted_local_module:build", {})
    proc = export_process(tmp_path, run, "--trust-factory")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists() and (tmp_path / "m.onnx").is_file()  # trusted: the user's module did run
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    from trusted_local_module import build

    model = prunekit.load(run, model_fn=build)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_export_to_a_directory_is_one_line(tmp_path, capsys):
    run = crafted_run(tmp_path, "small_cnn", {})
    (tmp_path / "out").mkdir()
    for target in (tmp_path / "out", f"{tmp_path / 'missing'}{os.sep}", tmp_path / "run" / "model" / "pruned.json"
                   / "x.onnx"):
        code, _, err = run_cli(capsys, "export", str(run), "--onnx", str(target))
        one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]  # no temporary file left anywhere
    assert list((tmp_path / "out").iterdir()) == []


# ---- output paths and environment failures: one line, exit 2 (issue 18) ----

TINY = ("data:\n  name: synthetic\n  synthetic_size: 64\n  synthetic_shape: [1, 8, 8]\n"
        "model:\n  name: small_cnn\ntrain:\n  epochs: 1\n  batch_size: 32\n  threads: 1\n")


def test_out_pointing_at_a_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(TINY)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        code, _, err = run_cli(capsys, "train", str(tmp_path / "c.yaml"), "--out", str(out), "--quiet")
        one_line_error(code, err)
        assert "is a file, not a directory" in err
    assert (tmp_path / "afile").read_text() == "x"


def test_environment_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import prunekit.cli.info as info

    def broken(args):
        raise OSError(5, "Input/output error", str(tmp_path / "x"))

    monkeypatch.setattr(info, "run", broken)
    code, _, err = run_cli(capsys, "info")
    one_line_error(code, err)
    assert err.strip() == f"prunekit: error: {tmp_path / 'x'}: Input/output error"


def unshare_works():
    import shutil

    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_training_onto_a_full_or_read_only_disk(tmp_path, kind):
    if not unshare_works():
        pytest.skip("needs unshare -m and tmpfs mounts (root in a Linux container)")
    (tmp_path / "c.yaml").write_text(TINY)
    mount = tmp_path / "mnt"
    mount.mkdir()
    ro = f"mkdir {mount}/run && mount -o remount,ro {mount} && " if kind == "read-only" else ""
    script = (f"mount -t tmpfs -o size=24k tmpfs {mount} && {ro}"
              f"{sys.executable} -m prunekit train {tmp_path / 'c.yaml'} --out {mount}/run --quiet")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("prunekit: error: "), proc.stderr
    assert ("No space left on device" if kind == "full" else "Read-only file system") in proc.stderr


@pytest.mark.parametrize("argv", [
    ["nosuch"], ["train", "--set"], ["measure", "--model", "lenet5", "--num-classes", "10000000"],
    ["measure", "--model", "lenet5", "--num-classes", "9" * 5000], ["export"],
])
def test_usage_mistakes_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    _, err = capsys.readouterr()
    one_line_error(caught.value.code, err)
    assert "--help" in err


def test_oversized_model_inputs_are_one_line(capsys):
    code, _, err = run_cli(capsys, "measure", "--model", "lenet5", "--input", "3x100000x100000", "--no-latency")
    one_line_error(code, err)
    assert "too large" in err
    code, _, err = run_cli(capsys, "inspect", "--model", "torch.hub:load")
    one_line_error(code, err)
    assert "not a model package" in err
