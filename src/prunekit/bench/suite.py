"""Bench suites: a YAML file naming a base config, methods with their parameters, a budget and seeds.

    name: quickstart-structured
    base: ../../configs/quickstart.yaml        # paths are relative to the suite file
    seeds: [0, 1, 2]
    set: [train.threads=1]                     # overrides for every run
    budget: {target_macs_ratio: 0.5}           # given to every method whose Params has the key
    reference: dense                           # the label the "vs dense" columns compare with
    methods:
      - name: dense
      - name: reprune
        params: {t_prune: 18, interval: 2}
      - preset: ../../configs/quickstart-slimming.yaml   # method name + params taken from a preset
      - label: reprune-r8                      # a second row of the same method
        name: reprune
        params: {round_to: 8}

Every (method, seed) is one ordinary run directory, `OUT/<label>/seed-<seed>/`. The base config supplies every
setting except `method` (and `name`, `train.seed`); the budget wins over a preset's value, an entry's own `params`
win over the budget. Every config is validated (method parameters included) before anything runs.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit.config import MethodConfig, RunConfig, apply_overrides, build_dataclass, read_yaml
from prunekit.errors import UserError


@dataclass
class MethodEntry:
    """One row of the bench: a method with its parameters."""

    name: str | None = None  # method registry name (taken from `preset` when omitted)
    label: str | None = None  # row name and run-directory name; default the method name
    preset: str | None = None  # a config file whose `method` section (name + params) this entry starts from
    params: dict[str, Any] = field(default_factory=dict)  # method.params, over the preset's and the budget
    set: list[str] = field(default_factory=list)  # extra `key=value` overrides for this entry's runs only
    use_budget: bool = True  # False: the suite's budget is not given to this method


@dataclass
class Suite:
    """A bench suite (see the module docstring)."""

    name: str
    base: str  # the config every run starts from
    methods: list[dict[str, Any]]  # MethodEntry mappings; parsed by `entries()`
    seeds: list[int] = field(default_factory=lambda: [0])
    set: list[str] = field(default_factory=list)  # overrides applied to every run
    budget: dict[str, Any] = field(default_factory=dict)  # e.g. {target_macs_ratio: 0.5} or {sparsity: 0.5}
    reference: str = "dense"  # label of the entry the ratios are taken against
    out: str | None = None  # default output directory (default runs/bench/<name>)
    description: str = ""


@dataclass
class RunSpec:
    """One (method, seed) run of a suite: its resolved config and where it lives."""

    label: str
    seed: int
    config: RunConfig
    run_dir: Path
    method_params: dict[str, Any]
    budget_keys: list[str]  # the budget keys this run's method received

    @property
    def key(self) -> str:
        return f"{self.label}/seed-{self.seed}"


def load_suite(path: str | Path) -> tuple[Suite, Path]:
    """Read and check a suite file; returns the suite and the directory its relative paths start from."""
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    suite = build_dataclass(Suite, raw, prefix="")
    if not suite.methods:
        raise UserError(f"{path}: a suite needs at least one entry under 'methods'")
    if not suite.seeds or len(set(suite.seeds)) != len(suite.seeds):
        raise UserError(f"{path}: 'seeds' must be a non-empty list of distinct integers")
    return suite, path.parent


def entries(suite: Suite) -> list[MethodEntry]:
    result = []
    for number, item in enumerate(suite.methods):
        if not isinstance(item, dict):
            raise UserError(f"suite {suite.name!r}: methods[{number}] must be a mapping (name, params, ...)")
        entry = build_dataclass(MethodEntry, item, prefix=f"methods[{number}].")
        if entry.name is None and entry.preset is None:
            raise UserError(f"suite {suite.name!r}: methods[{number}] needs a 'name' or a 'preset'")
        result.append(entry)
    return result


def _relative(root: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else root / p


def method_section(entry: MethodEntry, suite: Suite, root: Path) -> tuple[str, dict[str, Any], list[str]]:
    """(method name, params, budget keys given) of one entry: preset < budget < the entry's params."""
    name, params = entry.name, {}
    if entry.preset is not None:
        preset = read_yaml(_relative(root, entry.preset)).get("method", {}) or {}
        preset_name = preset.get("name", "dense")
        if name is not None and name != preset_name:
            raise UserError(f"suite {suite.name!r}: entry {name!r} names preset {entry.preset} of method "
                            f"{preset_name!r}; drop 'name' or use a preset of the same method")
        name = preset_name
        params = dict(preset.get("params", {}) or {})
    assert name is not None
    budget_keys = []
    if entry.use_budget and suite.budget:
        from prunekit.methods import METHODS

        fields = {f.name for f in dataclasses.fields(METHODS.get(name).Params)}
        for key, value in suite.budget.items():
            if key in fields and key not in entry.params:
                params[key] = value
                budget_keys.append(key)
    params.update(entry.params)
    return name, params, budget_keys


def resolve_runs(suite: Suite, root: Path, out: Path, *, extra_set: list[str] | None = None) -> list[RunSpec]:
    """Every (entry, seed) as a RunSpec with a validated config; raises UserError before anything is written."""
    from prunekit.methods import build_method

    base = read_yaml(_relative(root, suite.base))
    specs, labels = [], set()
    for entry in entries(suite):
        name, params, budget_keys = method_section(entry, suite, root)
        label = entry.label or name
        if label in labels:
            raise UserError(f"suite {suite.name!r}: label {label!r} appears twice; give one entry a 'label'")
        labels.add(label)
        build_method(MethodConfig(name, params))  # the method's own validation, once per entry
        for seed in suite.seeds:
            raw = copy.deepcopy(base)
            raw["method"] = {"name": name, "params": copy.deepcopy(params)}
            raw["name"] = f"{suite.name}-{label}"
            raw = apply_overrides(raw, [*suite.set, *entry.set, *(extra_set or []), f"train.seed={seed}"])
            cfg = build_dataclass(RunConfig, raw)
            specs.append(RunSpec(label, seed, cfg, out / label / f"seed-{seed}", params, budget_keys))
    if suite.reference not in labels:
        raise UserError(f"suite {suite.name!r}: reference {suite.reference!r} is not one of the labels "
                        f"({', '.join(sorted(labels))})")
    return specs
