"""`prunekit federate CONFIG`: validate, create the run directory, run the federation on this machine with
Flower's simulation engine (Ray), return the summary.

Engine: `flwr.simulation.run_simulation` (in-process, Ray actors for the clients). Flower 1.41/1.42 mark it
deprecated in favour of `flwr run`, which needs a managed local SuperLink on fixed ports (39091/39093) that
outlives the command, so parallel sweep jobs would collide; the call is kept in `simulate` alone so the engine
can be swapped. FLWR_HOME points at a temporary folder for the call (nothing is written to ~/.flwr).
A run killed part-way is restarted from round 1 (`restart=True`); there are no per-round checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prunekit import io
from prunekit.config import RunConfig
from prunekit.errors import UserError
from prunekit.federated.config import FederatedConfig, full_dict, load_federated_config


def run_name(cfg: RunConfig, fed: FederatedConfig) -> str:
    """`<name>-<hash of the non-default settings>` (the same rule as `prunekit train`)."""
    import hashlib
    import json

    from prunekit.train.trainer import non_default_settings

    settings = {"run": non_default_settings(cfg), "federated": fed.to_dict()}
    return f"{cfg.name}-{hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]}"


def validate(cfg: RunConfig, fed: FederatedConfig) -> int:
    """Load the data, split it, build the model and run one forward pass; returns the number of clients."""
    import torch

    from prunekit.federated.client import build_model, federated_data
    from prunekit.train.trainer import check_model_accepts

    data = federated_data(cfg, fed)
    model = build_model(cfg, data.splits)
    check_model_accepts(model, torch.zeros(2, *data.splits.train.shape), cfg.model.name)
    return len(data.part)


@contextlib.contextmanager
def flwr_home() -> Iterator[Path]:
    old = os.environ.get("FLWR_HOME")
    with tempfile.TemporaryDirectory(prefix="prunekit-flwr-") as tmp:
        os.environ["FLWR_HOME"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("FLWR_HOME", None)
            else:
                os.environ["FLWR_HOME"] = old


def simulate(run_dir: Path, num_nodes: int, fed: FederatedConfig, quiet: bool) -> None:
    """Run the apps on `num_nodes` simulated SuperNodes (partition-id 0..num_nodes-1)."""
    try:
        from flwr.simulation import run_simulation
    except ImportError as exc:
        raise UserError('prunekit federate needs Flower: pip install -c constraints.txt "prunekit[federated]"') from exc
    from prunekit.federated.apps import client_app, make_server_app

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # Ray workers inherit it
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if quiet:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    with flwr_home(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=make_server_app(run_dir), client_app=client_app, num_supernodes=num_nodes,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": fed.sim_cpus, "include_dashboard": False,
                                                     "log_to_driver": not quiet}})


def prepare(config: str | os.PathLike[str], overrides: list[str] | None = None, out: str | None = None,
            restart: bool = False) -> tuple[Path, int, FederatedConfig]:
    """Validate and write RUN/config.yaml; returns (run directory, clients, federated config)."""
    cfg, fed = load_federated_config(config, overrides)
    clients = validate(cfg, fed)
    run_dir = Path(out) if out else Path("runs") / run_name(cfg, fed)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not restart:
            raise UserError(f"run directory {run_dir} already exists and is not empty; choose another --out")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    io.write_yaml(run_dir / "config.yaml", full_dict(cfg, fed))
    return run_dir, clients, fed


def federate(config: str | os.PathLike[str], overrides: list[str] | None = None, out: str | None = None,
             quiet: bool = False, restart: bool = False) -> dict[str, Any]:
    """Run a federated preset into a run directory; returns summary.json's content."""
    run_dir, clients, fed = prepare(config, overrides, out, restart)
    simulate(run_dir, clients, fed, quiet)
    if not (run_dir / "summary.json").is_file():
        raise UserError(f"the federated run in {run_dir} did not finish (no summary.json; see the log above)")
    return io.read_json(run_dir / "summary.json")
