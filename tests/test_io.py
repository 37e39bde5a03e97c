"""prunekit.io: every file written can be read back, with the user's permissions, durably; every bad file read is a
one-line UserError (issue 18)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunekit import io
from prunekit.errors import UserError


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 1000
    return text


# ---- safetensors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}])
def test_empty_tensor_map_round_trips(tmp_path: Path, metadata) -> None:
    # safetensors 0.8 writes `{},"__metadata__":{}}` for ({}, metadata={}) and then refuses to read it
    io.save_tensors(tmp_path / "e.safetensors", {}, metadata)
    assert io.load_tensors(tmp_path / "e.safetensors") == {}
    assert load_file(str(tmp_path / "e.safetensors")) == {}


def test_tensors_round_trip_bitwise_with_every_dtype(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(3, 4, generator=generator), "bf16": torch.randn(5, generator=generator).bfloat16(),
               "i64": torch.arange(7), "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5),
               "view": torch.randn(4, 4, generator=generator).t()}  # non-contiguous
    io.save_tensors(tmp_path / "t.safetensors", tensors, {"note": "x"})
    loaded = io.load_tensors(tmp_path / "t.safetensors")
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_corrupt_and_missing_tensor_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        io.load_tensors(tmp_path / "none.safetensors")
    io.save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(100)})
    data = (tmp_path / "t.safetensors").read_bytes()
    for bad in (data[:5], data[:-3], b"\xff" * 64, b"\x08" + b"\x00" * 7 + b"{[}     "):
        (tmp_path / "t.safetensors").write_bytes(bad)
        with pytest.raises(UserError, match="truncated or corrupt") as caught:
            io.load_tensors(tmp_path / "t.safetensors")
        one_line(caught)


# ---- atomic writes: permissions, durability, failures -----------------------------------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_follow_the_umask(tmp_path: Path, umask_022) -> None:
    io.write_json(tmp_path / "a.json", {"x": 1})
    io.save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(2)})
    io.write_bytes(tmp_path / "b.bin", b"x")
    io.append_jsonl(tmp_path / "m.jsonl", {"x": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("made by open()")  # what the user gets from any other program
    assert {mode(tmp_path / n) for n in ("a.json", "t.safetensors", "b.bin", "m.jsonl")} == {mode(plain)} == {0o644}
    os.umask(0o077)
    io.write_json(tmp_path / "a.json", {"x": 2})  # replacing a file: the new umask applies, as for a new file
    assert mode(tmp_path / "a.json") == 0o600


def test_directory_is_fsynced_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def replace(src, dst) -> None:
        calls.append(("replace", False))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    io.write_json(tmp_path / "a.json", {"x": 1})
    assert calls == [("fsync", False), ("replace", False), ("fsync", True)]  # file, rename, then its directory


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io.write_json(tmp_path / "a.json", {"old": True})

    def full(src, dst) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(io.StorageError, match="cannot write .*a.json: No space left on device") as caught:
        io.write_json(tmp_path / "a.json", {"new": True})
    one_line(caught)
    monkeypatch.undo()
    assert io.read_json(tmp_path / "a.json") == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def unshare_works() -> bool:
    if shutil.which("unshare") is None or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


SMALL_DISK_SCRIPT = """
set -e
mount -t tmpfs -o size={size} tmpfs {mount}
{python} -c '
import sys, torch
from prunekit import io
from prunekit.errors import UserError
io.write_json("{mount}/keep.json", {{"old": True}})
{mode}
try:
    io.save_tensors("{mount}/big.safetensors", {{"a": torch.zeros(1 << 20)}})
    io.write_json("{mount}/keep.json", {{"new": True}})
except UserError as error:
    print("USERERROR", error)
print("KEEP", io.read_json("{mount}/keep.json"))
import os; print("FILES", sorted(os.listdir("{mount}")))
'
"""


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_real_full_and_read_only_file_systems(tmp_path: Path, kind: str) -> None:
    if not unshare_works():
        pytest.skip("needs unshare -m and tmpfs mounts (root in a Linux container)")
    mount = tmp_path / "mnt"
    mount.mkdir()
    remount = f'import subprocess; subprocess.run(["mount", "-o", "remount,ro", "{mount}"], check=True)'
    script = SMALL_DISK_SCRIPT.format(size="256k", mount=mount, python=sys.executable,
                                      mode=remount if kind == "read-only" else "")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    reason = "No space left on device" if kind == "full" else "Read-only file system"
    assert lines["USERERROR"].startswith(f"cannot write {mount}/") and reason in lines["USERERROR"]
    assert lines["KEEP"] == "{'old': True}"
    assert lines["FILES"] == "['keep.json']"  # no temporary file left behind


# ---- bounded, one-line reads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"a": "\xe9t\xe9"}', "not UTF-8"),  # Latin-1
    (b"{not json", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested more than 32 levels"),
    (b"[" * 40 + b"]" * 40, "nested more than 32 levels"),
    (b"1" * 5000, "not valid JSON"),  # over Python's 4300-digit int limit
])
def test_bad_json_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "x.json").write_bytes(content)
    with pytest.raises(UserError, match=message) as caught:
        io.read_json(tmp_path / "x.json")
    one_line(caught)


def test_json_size_limit_and_directories(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"a": "' + "x" * 2000 + '"}')
    with pytest.raises(UserError, match="larger than 1,000 bytes"):
        io.read_json(tmp_path / "x.json", max_bytes=1000)
    assert io.read_json(tmp_path / "x.json", max_bytes=3000)["a"] == "x" * 2000
    with pytest.raises(UserError, match="is a directory"):
        io.read_json(tmp_path)
    with pytest.raises(UserError, match="not found"):
        io.read_json(tmp_path / "none.json")


def test_jsonl_drops_only_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    io.append_jsonl(path, {"epoch": 0})
    io.append_jsonl(path, {"epoch": 1})
    with open(path, "a") as handle:
        handle.write('{"epoch": 2, "lo')  # killed mid-append
    assert io.read_jsonl(path) == [{"epoch": 0}, {"epoch": 1}]
    path.write_bytes(b'{"epoch": 0}\n{bad\n{"epoch": 2}\n')
    with pytest.raises(UserError, match="line 2"):
        io.read_jsonl(path)
    path.write_bytes(b'{"epoch": 0}\n\xff\n')
    with pytest.raises(UserError, match="not UTF-8"):
        io.read_jsonl(path)


def billion_laughs(levels: int, width: int = 10) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_yaml_anchor_bomb_is_refused_quickly(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(billion_laughs(9))  # 10^9 leaves once expanded
    start = time.perf_counter()
    with pytest.raises(UserError, match="expands to more than 100,000 values") as caught:
        io.read_yaml(tmp_path / "bomb.yaml")
    assert time.perf_counter() - start < 2.0  # measured by node, not by expansion (13 s for 10^6 leaves before)
    one_line(caught)
    assert io.loads_yaml(billion_laughs(3), "small")["a2"][0][0] == ["x"] * 10  # modest aliases still load


@pytest.mark.parametrize(("text", "message"), [
    ("a: " + "[" * 50_000 + "]" * 50_000, "nested more than 32 levels"),
    ("a: " + "[" * 40 + "]" * 40, "nested more than 32 levels"),
    ("a: &x [*x]", "refers to itself"),
    ("a: " + "9" * 5000, "cannot be read"),  # int() over 4300 digits
    ("a: 2020-13-45", "cannot be read"),  # a timestamp that does not exist
    ("a: [unclosed", "not valid YAML"),
    ("a: !!python/object:os.system {}", "not valid YAML"),  # safe loader: no Python tags
])
def test_bad_yaml_is_one_line(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        io.loads_yaml(text, "where")
    assert one_line(caught).startswith("where: ")


def test_yaml_file_limits(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_bytes(b"name: \xe9t\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        io.read_yaml(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("a: 1\n" + "# padding\n" * 200_000)
    with pytest.raises(UserError, match="larger than"):
        io.read_yaml(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("a: {b: [1, 2.5, null, true]}\n")
    assert io.read_yaml(tmp_path / "c.yaml") == {"a": {"b": [1, 2.5, None, True]}}


@pytest.mark.parametrize(("value", "message"), [
    ({"w": float("nan")}, "not a finite number"),
    ({"w": [1, float("-inf")]}, "not a finite number"),
    ({"w": 10**31}, "more than 30 digits"),
    ({"w": 10**5000}, "more than 30 digits"),
    ({1: 2}, "not a string"),
    ({"w": object()}, "unsupported value"),
])
def test_check_plain_value(value, message) -> None:
    with pytest.raises(UserError, match=message):
        io.check_plain_value(value, "kwargs")


def test_check_plain_value_accepts_plain_data() -> None:
    io.check_plain_value({"a": [1, 2.5, None, True, "s", {"b": (3,)}], "c": -(10**29)}, "kwargs")
    deep: list = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(UserError, match="nested more than"):
        io.check_plain_value(deep, "kwargs")
