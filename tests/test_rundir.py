"""prunekit.rundir: the run-directory lock, stale temporary files, restartable runs, output-path checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunekit import io, rundir
from prunekit.errors import UserError

HOLDER = """
import sys, time
from prunekit.rundir import lock_run_dir
lock = lock_run_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def start_holder(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_until_the_first_dies(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = start_holder(run)
    try:
        with pytest.raises(UserError, match=f"in use by another prunekit process \\(pid {holder.pid}\\)") as caught:
            rundir.lock_run_dir(run)  # this test's process is the second one
        assert "\n" not in str(caught.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # kill -9: the kernel drops the lock with the process
        holder.wait(timeout=30)
    lock = rundir.lock_run_dir(run)
    assert lock.held and (run / ".lock").read_text().strip() == str(os.getpid())
    lock.release()
    assert not lock.held


def test_lock_is_exclusive_within_one_process_and_reusable(tmp_path: Path) -> None:
    run = tmp_path / "a" / "run"  # created, parents included
    with rundir.RunLock(run) as lock:
        assert lock.held and run.is_dir()
        with pytest.raises(UserError, match="in use"):
            rundir.lock_run_dir(run)  # a second open file description conflicts too
    with rundir.lock_run_dir(run) as again:  # released on exit
        assert again.held


def test_lock_refuses_a_file_as_run_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        rundir.lock_run_dir(tmp_path / "file")


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000000010").mkdir(parents=True)
    io.write_json(run / "config.json", {"a": 1})
    stale = [run / ".metrics.jsonl.1a2b3c4d.tmp", run / "checkpoints" / "step-000000010" / ".model.safetensors.x.tmp",
             run / "checkpoints" / ".latest.json.y.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    keep = run / "checkpoints" / "step-000000010" / "model.safetensors"
    keep.write_bytes(b"k")
    assert rundir.clean_stale_temp_files(run) == sorted(stale)
    assert not any(p.exists() for p in stale) and keep.exists() and (run / "config.json").exists()
    assert rundir.clean_stale_temp_files(run) == []
    assert rundir.clean_stale_temp_files(tmp_path / "missing") == []


def test_has_no_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert not rundir.has_no_checkpoint(run)  # not a run at all
    run.mkdir()
    assert rundir.has_no_checkpoint(run)  # empty
    for name in ("config.yaml", "metrics.jsonl", ".lock", ".config.yaml.ab12.tmp"):
        (run / name).write_text("x")
    (run / "checkpoints" / "step-000000003").mkdir(parents=True)  # a checkpoint that never got its pointer
    (run / "tensorboard").mkdir()
    assert rundir.has_no_checkpoint(run) and not rundir.has_checkpoint(run)
    (run / "checkpoints" / "latest.json").write_text("{}")
    assert rundir.has_checkpoint(run) and not rundir.has_no_checkpoint(run)
    (run / "checkpoints" / "latest.json").unlink()
    (run / "summary.json").write_text("{}")  # a finished run is no restart candidate
    assert not rundir.has_no_checkpoint(run)
    (run / "summary.json").unlink()
    (run / "notes.txt").write_text("mine")  # something prunekit did not write: leave the directory alone
    assert not rundir.has_no_checkpoint(run)


def test_check_output_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    rundir.check_output_dir(tmp_path)  # existing directory
    rundir.check_output_dir(tmp_path / "new" / "deeper")  # can be created
    with pytest.raises(UserError, match="is a file, not a directory"):
        rundir.check_output_dir(tmp_path / "file")
    with pytest.raises(UserError, match="file is a file"):
        rundir.check_output_dir(tmp_path / "file" / "run")


def test_check_output_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    rundir.check_output_file(tmp_path / "m.onnx")
    rundir.check_output_file(tmp_path / "new" / "m.onnx")
    rundir.check_output_file(tmp_path / "file")  # replaced atomically
    for bad, message in ((tmp_path, "is a directory"), (f"{tmp_path}{os.sep}x{os.sep}", "must name a file"),
                         ("", "must name a file"), (tmp_path / "..", "must name a file"),
                         (tmp_path / "file" / "m.onnx", "file is a file")):
        with pytest.raises(UserError, match=message):
            rundir.check_output_file(bad, "--onnx")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_parent(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            rundir.check_output_file(locked / "m.onnx")
        with pytest.raises(UserError, match="not writable"):
            rundir.check_output_dir(locked / "run")
    finally:
        locked.chmod(0o700)


def test_lock_wait_is_not_needed_after_release(tmp_path: Path) -> None:
    # many acquire/release cycles: nothing leaks (file descriptors) and the pid is rewritten each time
    run = tmp_path / "run"
    start = time.perf_counter()
    for _ in range(50):
        with rundir.lock_run_dir(run):
            pass
    assert time.perf_counter() - start < 5.0
    assert (run / ".lock").read_text() == f"{os.getpid()}\n"


def test_clear_for_restart(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000000003").mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl", ".lock", ".config.yaml.ab12.tmp"):
        (run / name).write_text("x")
    assert rundir.clear_for_restart(run) == [".config.yaml.ab12.tmp", "checkpoints", "config.yaml", "metrics.jsonl"]
    assert [p.name for p in run.iterdir()] == [".lock"] and rundir.has_no_checkpoint(run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.json").write_text("{}")
    with pytest.raises(UserError, match="not restarted in place"):
        rundir.clear_for_restart(run)
    assert (run / "checkpoints" / "latest.json").exists()
