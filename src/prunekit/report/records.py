"""The record kinds of a run's metrics.jsonl, as a checkable schema. docs/RECORDS.md is the same schema for
people; tests/report/test_records.py keeps the two equal and validates real Trainer output against this one.

Kinds marked "proposed" are not written to metrics.jsonl by any code yet: `level` and `lmc` are what the report
plots for lottery levels and linear-mode-connectivity paths; today's drivers keep them in lottery.json and
lmc.json, which `prunekit.report.load` reads as these records.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _map_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


TYPES: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "number": _is_number,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "map[str,int]": _map_of(_is_int),
    "map[str,number]": _map_of(_is_number),
    "list[number]": _list_of(_is_number),
    "any": lambda v: True,
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a key of TYPES
    required: bool
    help: str


@dataclass(frozen=True)
class Kind:
    name: str
    status: str  # "written" (code writes it today) or "proposed"
    writer: str
    extra_fields: bool  # True: other keys may appear (method-specific details)
    fields: tuple[Field, ...]


def F(name: str, type_: str, help_: str, required: bool = True) -> Field:  # noqa: N802 (a table row)
    return Field(name, type_, required, help_)


def O(name: str, type_: str, help_: str) -> Field:  # noqa: N802,E743
    return Field(name, type_, False, help_)


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("epoch", "written", "Trainer, after each training epoch", False, (
        F("epoch", "int", "0-based epoch index"),
        F("step", "int", "global optimizer steps done at the end of the epoch"),
        F("lr", "number", "learning rate of the epoch's last step"),
        F("train_loss", "number", "mean cross-entropy over the epoch's training samples"),
        F("train_accuracy", "number", "training accuracy over the epoch, 0..1 (augmented batches)"),
        F("test_loss", "number", "mean cross-entropy on the test split after the epoch"),
        F("test_accuracy", "number", "test accuracy after the epoch, 0..1"),
        F("epoch_time_s", "number", "wall-clock seconds of the training loop (no evaluation)"),
        F("data_time_s", "number", "seconds of epoch_time_s spent waiting for batches"),
        F("macs", "int", "MACs per sample of one forward pass of the network at the end of the epoch"),
        F("params", "int", "parameters of that network"),
        F("train_flops", "int", "training FLOPs of the epoch (3 x forward FLOPs x samples, per architecture)"),
        O("val_loss", "number", "as test_loss, on the validation split (data.val_fraction > 0)"),
        O("val_accuracy", "number", "as test_accuracy, on the validation split"),
    )),
    Kind("decision", "written", "Trainer / TrainingLoop, whenever a method's decision is applied", True, (
        F("epoch", "int", "epoch the decision followed; -1 = before training (on_train_start)"),
        F("method", "str", "method name"),
        O("step", "int", "global step at which it was applied"),
        O("at", "str", "where: start | epoch | step"),
        O("kept", "map[str,int]", "channels kept per group of the new channel plan (group = its first conv)"),
        O("removed", "map[str,int]", "channels removed per group by this decision (one-shot methods)"),
        O("kept_fraction", "number", "kept channels / all channels of the prunable groups"),
        O("macs_before", "int", "MACs per sample before the decision"),
        O("macs_after", "int", "MACs per sample after it"),
        O("params_before", "int", "parameters before"),
        O("params_after", "int", "parameters after"),
        O("masked_tensors", "int", "weight tensors given a new mask"),
        O("select_seconds", "number", "seconds the method's criterion took"),
    )),
    Kind("prunetrain_calibration", "written", "PruneTrain, once before training", False, (
        F("epoch", "int", "-1"),
        F("first_batch_ce", "number", "cross-entropy of the first batch"),
        F("group_lasso", "number", "group-lasso sum of the initial weights"),
        F("penalty_ratio", "number", "the configured penalty ratio"),
        F("penalty_weight", "number", "the fixed lambda: ratio x CE / group lasso"),
    )),
    Kind("prunetrain_reconfigure", "written", "PruneTrain, at a reconfiguration that removed nothing", False, (
        F("epoch", "int", "epoch index"),
        F("removed", "map[str,int]", "channels removed per group (empty)"),
        O("select_seconds", "number", "seconds of the sparsity scan (runs before 2026-11-21 lack it)"),
    )),
    Kind("level", "proposed", "a lottery-ticket driver, one per finished level (prunekit lottery writes lottery.json, "
         "read as these)", True, (
        F("level", "int", "0 = the dense run"),
        F("density", "number", "fraction of the prunable weights remaining, 0..1"),
        F("test_accuracy", "number", "test accuracy at the end of the level's training"),
        O("mode", "str", "reset | weight_rewind | lr_rewind | finetune | reinit | random_prune"),
        O("run_dir", "str", "the level's run directory, relative to RUN"),
        O("train_flops", "int", "training FLOPs of the level"),
        O("train_time_s", "number", "training time of the level"),
    )),
    Kind("round", "written", "federated server (prunekit federate), one per round; more fields allowed", True, (
        F("round", "int", "1-based round number"),
        F("test_accuracy", "number", "global model on the global test split after aggregation"),
        O("test_loss", "number", "its mean cross-entropy"),
        O("upload_bytes", "int", "bytes uploaded by all clients this round (values + changed masks)"),
        O("download_bytes", "int", "bytes sent to all clients this round"),
        O("clients", "int", "clients whose reply was aggregated"),
        O("density", "number", "global mask density after aggregation"),
    )),
    Kind("update", "written", "dynamic sparse training methods (set, rigl, itop, ...), one per mask update", True, (
        F("step", "int", "global step of the update"),
        F("density", "number", "overall density of the masked weights after the update"),
        O("epoch", "int", "epoch index"),
        O("changed", "int", "connections dropped (= grown) by this update"),
        O("drop_fraction", "number", "the schedule's drop fraction at this step"),
        O("itop_rate", "number", "R_s: fraction of the weights ever active so far"),
        O("layer_density", "map[str,number]", "density per masked tensor"),
    )),
    Kind("jst_sample", "written", "Joint Search-and-Training (jst), one per sampled sub-network of the search", True, (
        F("step", "int", "global step at which the sample's training ended"),
        F("epoch", "int", "epoch index"),
        F("sample", "int", "0-based index of the sample"),
        F("reward", "number", "R = -(validation loss + gamma x size), Eq. 3"),
        F("val_loss", "number", "validation loss of the sub-network"),
        F("val_accuracy", "number", "validation accuracy of the sub-network, 0..1"),
        F("macs_ratio", "number", "the sub-network's MACs over the dense network's"),
        F("thresholds", "list[number]", "per-layer thresholds ThresNet chose"),
        F("kept", "map[str,int]", "channels kept per group"),
        O("baseline", "any", "REINFORCE baseline (running mean of rewards; null before the first)"),
        O("policy_loss", "any", "ThresNet's policy loss when it was updated after this sample, else null"),
    )),
    Kind("lmc", "proposed", "linear mode connectivity, one per evaluated path (prunekit lmc writes lmc.json, read as "
         "this)", True, (
        F("alphas", "list[number]", "interpolation points in [0, 1]"),
        F("test_error", "list[number]", "test error (1 - accuracy) at each point"),
        O("train_error", "list[number]", "train error at each point"),
        O("step", "int", "the step k both copies started from"),
        O("level", "int", "lottery level of the sparse network, if any"),
        O("barrier_test", "number", "max test error on the path - mean of the endpoints'"),
        O("barrier_train", "number", "the same for train error"),
    )),
]}


def validate_record(record: Any, *, allow_unknown: bool = False) -> list[str]:
    """Problems with one metrics.jsonl record (empty list: valid)."""
    if not isinstance(record, dict):
        return [f"a record must be a JSON object, got {type(record).__name__}"]
    kind = record.get("kind")
    if kind not in KINDS:
        return [] if allow_unknown else [f"unknown record kind {kind!r}"]
    spec = KINDS[kind]
    problems = []
    known = {f.name for f in spec.fields} | {"kind"}
    for f in spec.fields:
        if f.name not in record:
            if f.required:
                problems.append(f"{kind}: field {f.name!r} is missing")
        elif not TYPES[f.type](record[f.name]):
            problems.append(f"{kind}: field {f.name!r} should be {f.type}, got {record[f.name]!r}")
    if not spec.extra_fields:
        problems += [f"{kind}: unexpected field {k!r}" for k in sorted(set(record) - known)]
    return problems


def kind_table(kind: Kind) -> str:
    """The markdown table of one kind, as docs/RECORDS.md shows it (the test compares the two)."""
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    lines += [f"| `{f.name}` | {f.type} | {'yes' if f.required else 'no'} | {f.help} |" for f in kind.fields]
    return "\n".join(lines)
