"""The metrics.jsonl schema: docs/RECORDS.md shows exactly the schema in prunekit.report.records, real Trainer
output (dense, a one-shot cut, PruneTrain's events, RigL's mask updates) and the committed benchmark runs match
it, and the validator catches what it should."""

import re
from pathlib import Path

import pytest

from prunekit import io
from prunekit.config import load_config
from prunekit.report.records import KINDS, kind_table, validate_record
from prunekit.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "RECORDS.md"


def doc_sections():
    """{kind: the markdown table under its '## `kind`' heading} of docs/RECORDS.md."""
    sections, current = {}, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## `([a-z_]+)`", line)
        if heading:
            current = heading.group(1)
            sections[current] = []
        elif line.startswith("## "):
            current = None
        elif current is not None and line.startswith("|"):
            sections[current].append(line)
    return {kind: "\n".join(lines) for kind, lines in sections.items()}


def test_the_document_shows_exactly_the_schema():
    sections = doc_sections()
    assert sorted(sections) == sorted(KINDS)
    for name, kind in KINDS.items():
        assert sections[name] == kind_table(kind), name


def quick(method_sets):
    return load_config(None, [
        "data.name=synthetic", "data.synthetic_size=96", "data.synthetic_shape=[3, 12, 12]", "model.name=small_cnn",
        "train.epochs=3", "train.batch_size=32", "train.threads=1", "data.crop_padding=1", *method_sets])


@pytest.mark.parametrize("method_sets", [
    [],
    ["method.name=l1_filter", "method.params.prune_epoch=1", "method.params.target_macs_ratio=0.5",
     "method.params.min_channels=1"],
    ["method.name=prunetrain", "method.params.penalty_ratio=0.5", "method.params.interval=1",
     "method.params.min_channels=1"],
    ["method.name=rigl", "method.params.sparsity=0.8", "method.params.update_every=3"],
    ["method.name=jst", "method.params.coarse_epochs=1", "method.params.samples=2", "method.params.sample_epochs=0.5",
     "data.val_fraction=0.25"],
], ids=["dense", "l1_filter", "prunetrain", "rigl", "jst"])
def test_real_trainer_records_match_the_schema(tmp_path, method_sets):
    Trainer(quick(method_sets), tmp_path / "run", quiet=True).fit()
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1, 2]
    for record in records:
        assert validate_record(record) == [], record
    expected = {"method.name=l1_filter": "decision", "method.name=prunetrain": "prunetrain_calibration",
                "method.name=rigl": "update", "method.name=jst": "jst_sample"}
    expected = expected.get(method_sets[0] if method_sets else "")
    if expected:
        assert any(r["kind"] == expected for r in records), expected


def test_committed_benchmark_runs_match_the_schema():
    files = sorted((ROOT / "benchmarks" / "results").glob("*/metrics.jsonl"))
    assert files
    for path in files:
        for number, record in enumerate(io.read_jsonl(path), start=1):
            assert validate_record(record) == [], f"{path}:{number}"


def test_validator_catches_missing_wrong_and_unknown():
    good = {"kind": "level", "level": 2, "density": 0.64, "test_accuracy": 0.9}
    assert validate_record(good) == []
    assert validate_record({**good, "extra_note": "fine: levels allow extra fields"}) == []
    assert validate_record({k: v for k, v in good.items() if k != "density"}) == ["level: field 'density' is missing"]
    assert validate_record({**good, "level": True}) == ["level: field 'level' should be int, got True"]
    assert validate_record({**good, "density": float("nan")}) != []
    epoch = {"kind": "epoch", "epoch": 0, "step": 1, "lr": 0.1, "train_loss": 1.0, "train_accuracy": 0.5,
             "test_loss": 1.0, "test_accuracy": 0.5, "epoch_time_s": 1.0, "data_time_s": 0.1, "macs": 10,
             "params": 5, "train_flops": 60}
    assert validate_record(epoch) == []
    assert validate_record({**epoch, "surprise": 1}) == ["epoch: unexpected field 'surprise'"]
    assert validate_record({**epoch, "kind": "epoc"}) == ["unknown record kind 'epoc'"]
    assert validate_record({**epoch, "kind": "epoc"}, allow_unknown=True) == []
    assert validate_record({"kind": "decision", "epoch": 3, "method": "x", "kept": {"a": 1.5}}) == [
        "decision: field 'kept' should be map[str,int], got {'a': 1.5}"]
    assert validate_record([1, 2]) == ["a record must be a JSON object, got list"]
