"""The Flower apps. `client_app` and `server_app` are module attributes, so the same objects run under the
simulation engine (`prunekit federate`) and the deployment runtime (`flwr run` with a SuperLink and SuperNodes
whose node config gives `partition-id`; README, "Federated sparse training").

The server reads the resolved config from RUN_DIR/config.yaml (simulation: `make_server_app(run_dir)`;
deployment: the run config key `run-dir`) and writes the run directory: metrics.jsonl ("kind": "round" lines),
summary.json and model/ (prunekit.load-able). Clients get the config text in every round's ConfigRecord.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from prunekit import io
from prunekit.channels import ChannelPlan, save_pruned_model
from prunekit.config import read_yaml
from prunekit.federated.aggregate import join_masks, split_masks
from prunekit.federated.client import build_model, evaluate_arrays, federated_data, load_arrays, local_train
from prunekit.federated.config import FederatedConfig, split_federated
from prunekit.federated.strategy import SparseFedAvg, from_record, to_record
from prunekit.federated.topology import initial_masks
from prunekit.measure import count_params
from prunekit.seeding import derived_seed
from prunekit.weights import WeightMasks

MASK_SEED = 0x3A5C


def _configs(text: str) -> tuple[Any, FederatedConfig]:
    return split_federated(io.loads_yaml(text, "federated config"))


# ---------------------------------------------------------------------------------------------------- client
client_app = ClientApp()


@client_app.train()
def client_train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    cfg, fed = _configs(str(config["prunekit-config"]))
    pid = int(context.node_config["partition-id"])
    data = federated_data(cfg, fed)
    train, _ = data.client(pid)
    arrays, metrics = local_train(cfg, fed, train, data.splits, from_record(msg.content["arrays"]),
                                  int(config["server-round"]), float(config["readjust-ratio"]), pid)
    return Message(RecordDict({"arrays": to_record(arrays), "metrics": MetricRecord(metrics)}), reply_to=msg)


@client_app.evaluate()
def client_evaluate(msg: Message, context: Context) -> Message:
    cfg, fed = _configs(str(msg.content["config"]["prunekit-config"]))
    data = federated_data(cfg, fed)
    _, test = data.client(int(context.node_config["partition-id"]))
    loss, acc = evaluate_arrays(cfg, data.splits, test, from_record(msg.content["arrays"]))
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": len(test), "loss": loss, "accuracy": acc})}),
                   reply_to=msg)


# ---------------------------------------------------------------------------------------------------- server
def method_label(fed: FederatedConfig) -> str:
    if fed.sparsity == 0:
        return "fedavg"
    return "fixed_mask" if fed.readjust_ratio == 0 or fed.readjust_interval == 0 else "feddst"


def run_server(grid: Grid, run_dir: Path) -> dict[str, Any]:
    """The whole federation, from RUN_DIR/config.yaml to RUN_DIR/summary.json."""
    started = time.perf_counter()
    config_text = (run_dir / "config.yaml").read_text()
    cfg, fed = split_federated(read_yaml(run_dir / "config.yaml"))
    torch.set_num_threads(cfg.train.threads or 1)
    data = federated_data(cfg, fed)
    torch.manual_seed(derived_seed(cfg.train.seed, 0x30DE1))
    model = build_model(cfg, data.splits)
    masks = initial_masks(model, 1.0 - fed.sparsity, derived_seed(fed.seed, MASK_SEED)) if fed.sparsity else {}
    WeightMasks({k: torch.from_numpy(v) for k, v in masks.items()}).apply_(model)
    initial = join_masks({k: v.detach().numpy().copy() for k, v in model.state_dict().items()}, masks)
    strategy = SparseFedAvg(fed, config_text, expected_nodes=len(data.part))
    totals = {"upload_bits": 0, "download_bits": 0}
    history: list[float] = []
    metrics_path = run_dir / "metrics.jsonl"

    def evaluate_fn(server_round: int, arrays: Any) -> MetricRecord | None:
        if server_round == 0:
            return None
        flat = from_record(arrays)
        loss, acc = evaluate_arrays(cfg, data.splits, data.splits.test, flat)
        r = strategy.round
        totals["upload_bits"] += r.get("upload_bits", 0)
        totals["download_bits"] += r.get("download_bits", 0)
        masks_now = split_masks(flat)[1]
        active, total = sum(int(m.sum()) for m in masks_now.values()), sum(m.size for m in masks_now.values())
        record = {"kind": "round", **{k: v for k, v in r.items() if k != "start"}, "test_loss": loss,
                  "test_accuracy": acc, "density": active / total if total else 1.0,
                  "cum_upload_bits": totals["upload_bits"], "cum_download_bits": totals["download_bits"],
                  "round_time_s": time.perf_counter() - r.get("start", time.perf_counter()),
                  "clients": r.get("clients_replied", 0), "upload_bytes": -(-r.get("upload_bits", 0) // 8),
                  "download_bytes": -(-r.get("download_bits", 0) // 8)}  # the report's schema (docs/RECORDS.md)
        io.append_jsonl(metrics_path, record)
        history.append(acc)
        return MetricRecord({"accuracy": acc, "loss": loss})

    result = strategy.start(grid=grid, initial_arrays=to_record(initial), num_rounds=fed.rounds,
                            train_config=ConfigRecord({}), evaluate_fn=evaluate_fn)
    final = from_record(result.arrays) if result.arrays is not None and len(result.arrays) else initial
    return _finish(run_dir, cfg, fed, data, model, final, history, totals, time.perf_counter() - started)


def _finish(run_dir: Path, cfg: Any, fed: FederatedConfig, data: Any, model: torch.nn.Module, final: dict,
            history: list[float], totals: dict[str, int], wall_s: float) -> dict[str, Any]:
    weights, masks = split_masks(final)
    load_arrays(model, weights)
    c, h, w = data.splits.train.shape
    spec = {"name": cfg.model.name, "num_classes": data.splits.num_classes, "in_channels": c,
            "kwargs": dict(cfg.model.kwargs), "input_shape": [c, h, w]}
    save_pruned_model(run_dir / "model", model, ChannelPlan(), spec, policy="all")
    wm = WeightMasks({k: torch.from_numpy(v) for k, v in masks.items()}) if masks else None
    if wm is not None:
        wm.save(run_dir / "model" / "masks.safetensors")
    loss, acc = evaluate_arrays(cfg, data.splits, data.splits.test, final)
    summary = {"method": method_label(fed), "model": cfg.model.name, "dataset": cfg.data.name,
               "rounds": fed.rounds, "clients": len(data.part), "dropped_clients": data.part.dropped,
               "client_sizes": data.part.sizes(), "partition": fed.partition, "beta": fed.beta,
               "sparsity": fed.sparsity, "readjust_ratio": fed.readjust_ratio,
               "readjust_interval": fed.readjust_interval, "test_accuracy": acc, "test_loss": loss,
               "best_test_accuracy": max(history) if history else acc, "params": count_params(model),
               "weight_density": wm.density() if wm is not None else 1.0, "upload_bits": totals["upload_bits"],
               "download_bits": totals["download_bits"], "train_time_s": wall_s}
    io.write_json(run_dir / "summary.json", summary)
    return summary


def make_server_app(run_dir: str | Path) -> ServerApp:
    """A ServerApp bound to a run directory (the simulation path)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, Path(run_dir))

    return app


server_app = ServerApp()


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """Deployment: run config `run-dir` names a directory holding config.yaml (written by `prunekit federate
    CONFIG --prepare-only`)."""
    run_server(grid, Path(str(context.run_config["run-dir"])))
