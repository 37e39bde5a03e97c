"""SparseFedAvg: Flower's message-API FedAvg with FedDST's server side (aggregate.py) and its bookkeeping.

- configure_train: seeds Python's `random` per round (Flower samples nodes with it), puts the round's
  readjustment ratio and the prunekit config in the ConfigRecord, counts download bits;
- aggregate_train: replies with an error, without arrays, or whose arrays do not match the global keys, shapes
  and dtypes are skipped and logged (never fatal; with no usable reply the global model stays as it was); the
  rest are aggregated by `aggregate.aggregate` (masked average, union / min_votes, re-prune); upload bits;
- aggregate_evaluate: sample-weighted local test accuracy (optional client-side evaluation).
The round's figures wait in `self.round` for the server's evaluate_fn, which writes the metrics line.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from prunekit.federated.aggregate import Arrays, ClientUpdate, aggregate, split_masks
from prunekit.federated.comm import masks_differ, payload_bits
from prunekit.federated.config import FederatedConfig
from prunekit.federated.topology import round_ratio
from prunekit.seeding import derived_seed

LOG = logging.getLogger("prunekit.federated")
SAMPLING_SEED = 0x5A3F


def to_record(arrays: Arrays) -> ArrayRecord:
    record = ArrayRecord()
    for key, value in arrays.items():
        record[key] = Array(np.array(value, order="C", copy=True))  # not ascontiguousarray: it makes 0-d arrays 1-d
    return record


def from_record(record: ArrayRecord) -> Arrays:
    return {key: record[key].numpy() for key in record}


def check_reply(msg: Message, reference: Arrays) -> str | None:
    """Why a reply cannot be aggregated, or None."""
    if msg.has_error():
        return f"error from node {msg.metadata.src_node_id}: {msg.error.reason}"
    content = msg.content
    if "arrays" not in content or "metrics" not in content:
        return f"node {msg.metadata.src_node_id} replied without arrays or metrics"
    record = content["arrays"]
    if set(record.keys()) != set(reference):
        return f"node {msg.metadata.src_node_id} replied with other array names"
    for key, ref in reference.items():
        arr = record[key]
        if tuple(arr.shape) != tuple(ref.shape) or np.dtype(arr.dtype) != ref.dtype:
            return f"node {msg.metadata.src_node_id}: array {key!r} has shape/dtype {arr.shape}/{arr.dtype}"
    n = content["metrics"].get("num-examples", 0)
    if not n or n <= 0:
        return f"node {msg.metadata.src_node_id} reported no training samples"
    return None


class SparseFedAvg(FedAvg):
    """FedAvg whose aggregation is FedDST's (see the module docstring)."""

    def __init__(self, fed: FederatedConfig, config_text: str, expected_nodes: int, **kwargs: Any) -> None:
        super().__init__(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1,
                         fraction_train=fed.fraction_train, fraction_evaluate=1.0 if fed.local_eval else 0.0,
                         **kwargs)
        self.fed, self.config_text, self.expected_nodes = fed, config_text, expected_nodes
        self.sent: Arrays | None = None
        self.previous_sent: Arrays | None = None
        self.round: dict[str, Any] = {}

    def _wait_for_nodes(self, grid: Grid, timeout_s: float = 120.0) -> None:
        """Round 1 waits (up to timeout_s) until every client partition's node is connected."""
        deadline = time.monotonic() + timeout_s
        while len(list(grid.get_node_ids())) < self.expected_nodes and time.monotonic() < deadline:
            time.sleep(0.5)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        if server_round == 1:
            self._wait_for_nodes(grid)
        random.seed(derived_seed(self.fed.seed, SAMPLING_SEED, server_round))
        ratio = round_ratio(self.fed, server_round)
        config["readjust-ratio"] = float(ratio)
        config["prunekit-config"] = self.config_text
        messages = list(super().configure_train(server_round, arrays, config, grid))
        sent = from_record(arrays)
        mask_sent = self.sent is None or masks_differ(sent, self.sent)
        self.sent = sent
        self.round = {"round": server_round, "readjust_ratio": ratio, "clients_sampled": len(messages),
                      "download_bits": payload_bits(sent, mask_sent) * len(messages), "start": time.perf_counter()}
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        assert self.sent is not None
        updates, failures, metrics = [], [], []
        for msg in replies:
            reason = check_reply(msg, self.sent)
            if reason is not None:
                LOG.warning("round %d: skipped a reply (%s)", server_round, reason)
                failures.append(reason)
                continue
            arrays = from_record(msg.content["arrays"])
            m = dict(msg.content["metrics"])
            updates.append(ClientUpdate(arrays, int(m["num-examples"])))
            metrics.append(m)
        upload = sum(payload_bits(u.arrays, masks_differ(u.arrays, self.sent)) for u in updates)
        self.round.update({"clients_replied": len(updates), "failures": failures, "upload_bits": upload})
        if not updates:
            LOG.warning("round %d: no usable reply; the global model is unchanged", server_round)
            return None, None
        new = aggregate(updates, density=1.0 - self.fed.sparsity, min_votes=self.fed.min_votes)
        n = np.array([u.num_examples for u in updates], dtype=np.float64)
        mean = {key: float(np.dot(n, [m.get(key, 0.0) for m in metrics]) / n.sum())
                for key in ("train_loss", "train_accuracy")}
        self.round.update(mean)
        self.round["connections_changed"] = int(sum(m.get("connections_changed", 0) for m in metrics))
        masks_old, masks_new = split_masks(self.sent)[1], split_masks(new)[1]
        self.round["mask_changes"] = int(sum((masks_old[k] != masks_new[k]).sum() for k in masks_new))
        return to_record(new), MetricRecord({"num-examples": int(n.sum()), **mean})

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        good = [m for m in replies if not m.has_error() and "metrics" in m.content]
        if good:
            n = np.array([m.content["metrics"]["num-examples"] for m in good], dtype=np.float64)
            acc = np.array([m.content["metrics"]["accuracy"] for m in good], dtype=np.float64)
            self.round["local_accuracy"] = float(np.dot(n, acc) / n.sum())
            self.round["local_accuracy_per_client"] = acc.tolist()
        return None
