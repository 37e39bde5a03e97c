"""Flower's deployment runtime on 127.0.0.1: a real SuperLink, two SuperNodes (`--node-config partition-id=i`) and
`flwr run` against an app folder whose components are `prunekit.federated.apps:server_app` / `client_app`.

The digits quickstart federation (2 clients, 2 rounds, slow: about 90 s, 60 of them the SuperLink's heartbeat
patience) runs; once round 1's metrics line is written and SuperNode 1 has logged receiving its round-2 message,
SuperNode 1 is killed (SIGKILL, with its ClientApp process) while it trains. The SuperLink declares it offline
after two missed heartbeats and answers its message with a "Node Unavailable" error reply, which the strategy
skips; round 2 is aggregated from the other SuperNode alone and the run finishes (summary.json, model/).

Every process started here, and every process those start (Flower detaches its app processes into sessions of
their own), is killed in a finally block, found by its FLWR_HOME (a temporary folder). The SuperLink's runtime
dependency install is disabled (it would `uv sync` an environment, which must never pull torch), so the apps run
in this interpreter's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP_TOML = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "prunekit-federated-app"
version = "1.0.0"
dependencies = []  # never torch: the runtime's install does not see pip's constraints

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "prunekit"

[tool.flwr.app.components]
serverapp = "prunekit.federated.apps:server_app"
clientapp = "prunekit.federated.apps:client_app"

[tool.flwr.app.config]
run-dir = ""
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout_s: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"{dead} exited while waiting for {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def rounds_written(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [x for x in lines if x.get("kind") == "round"]


def tagged_pids(home: Path) -> set[int]:
    """Every live process whose environment has FLWR_HOME=home: the ones this test started and their
    descendants, including those Flower detaches (`start_new_session`) and those reparented to init."""
    tag, found = f"FLWR_HOME={home}".encode(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:  # gone, or not ours
                pass
    return found


def kill_tree(proc: subprocess.Popen, home: Path) -> None:
    """SIGKILL a started process and everything it started (the FLWR_HOME tag, see tagged_pids; a process
    group is not enough: Flower starts its ServerApp / ClientApp processes in sessions of their own)."""
    pids = {proc.pid}
    for pid in tagged_pids(home) - {proc.pid}:
        ancestor = pid
        while ancestor > 1:  # keep only descendants of proc
            try:
                ancestor = int((Path("/proc") / str(ancestor) / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                break
            if ancestor == proc.pid:
                pids.add(pid)
                break
    kill(pids)
    proc.wait(timeout=30)


def kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_superlink_two_supernodes_one_killed_mid_round(tmp_path: Path) -> None:
    from prunekit.federated.runner import prepare

    run_dir, clients, _ = prepare(ROOT / "configs/federated/quickstart.yaml",
                                  ["federated.clients=2", "federated.rounds=2", "federated.local_epochs=3"],
                                  str(tmp_path / "run"))
    assert clients == 2
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(APP_TOML)
    home = tmp_path / "flwr_home"
    link, node_ports = free_port(), [free_port(), free_port()]
    home.mkdir()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "deployment"\n\n[superlink.deployment]\n'
                                      f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        procs.append(proc)
        return proc

    try:
        start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(link),
              "--disable-runtime-dependency-installation")
        nodes = [start(f"supernode{i}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                       "--host", "127.0.0.1", "--port", str(port), "--node-config", f"partition-id={i}")
                 for i, port in enumerate(node_ports)]
        time.sleep(2)
        flwr = subprocess.run([str(BIN / "flwr"), "run", str(app), "deployment", "--format", "json",
                               "--run-config", f"run-dir='{run_dir}'"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert flwr.returncode == 0, flwr.stdout + flwr.stderr
        wait_for(lambda: len(rounds_written(run_dir)) >= 1, 240, "round 1", procs)
        assert not rounds_written(run_dir)[0]["failures"]
        received = lambda: (logs / "supernode1.log").read_text().count("Receiving: train message")  # noqa: E731
        wait_for(lambda: received() >= 2, 120, "SuperNode 1 to receive round 2's message", procs)
        kill_tree(nodes[1], home)  # SuperNode 1 (and its ClientApp) dies while training round 2
        wait_for(lambda: (run_dir / "summary.json").is_file(), 300, "the run's end", procs[:2])
    finally:
        kill(tagged_pids(home))  # every process this test started, orphans included
        for proc in procs:
            proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while tagged_pids(home) and time.monotonic() < deadline:  # zombies until init reaps them
            time.sleep(0.2)
        print(*rounds_written(run_dir), sep="\n")
        print("\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.iterdir())))

    assert not tagged_pids(home), "a Flower process outlived the test"
    r1, r2 = rounds_written(run_dir)
    assert (r1["clients_sampled"], r1["clients_replied"]) == (2, 2)
    assert r2["clients_sampled"] == 2 and r2["clients_replied"] == 1, r2  # sampled while alive, no reply
    assert len(r2["failures"]) == 1 and "Node Unavailable" in r2["failures"][0], r2["failures"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["method"] == "feddst"
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert (run_dir / "model").is_dir()
