"""Grids: `KEY=V1,V2,...` (values parsed as YAML by the config's --set rule); `K1+K2=a+b,c+d` sets several keys
together (e.g. `federated.partition+federated.beta=iid+0.5,dirichlet+0.5,dirichlet+0.1`)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from prunekit.errors import UserError


@dataclass(frozen=True)
class Axis:
    keys: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]  # one tuple of raw texts (one per key) per grid value

    @property
    def name(self) -> str:
        return "+".join(self.keys)

    def label(self, value: tuple[str, ...]) -> str:
        return "+".join(value)


def parse_axis(text: str) -> Axis:
    if "=" not in text:
        raise UserError(f"--grid expects KEY=V1,V2,..., got {text!r}")
    key_text, values_text = text.split("=", 1)
    keys = tuple(k.strip() for k in key_text.split("+"))
    if not all(keys) or not values_text.strip():
        raise UserError(f"--grid expects KEY=V1,V2,..., got {text!r}")
    values = []
    for raw in values_text.split(","):
        parts = tuple(p.strip() for p in raw.split("+")) if len(keys) > 1 else (raw.strip(),)
        if len(parts) != len(keys) or not all(parts):
            raise UserError(f"--grid {key_text}: value {raw!r} needs {len(keys)} part(s) joined by '+'")
        values.append(parts)
    if len(set(values)) != len(values):
        raise UserError(f"--grid {key_text}: repeated values")
    return Axis(keys, tuple(values))


@dataclass(frozen=True)
class Point:
    """One combination: its axis values and the --set overrides that make it."""

    values: tuple[tuple[str, ...], ...]
    axes: tuple[Axis, ...]

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={v}" for axis, value in zip(self.axes, self.values, strict=True)
                for k, v in zip(axis.keys, value, strict=True)]

    @property
    def labels(self) -> dict[str, str]:
        return {axis.name: axis.label(value) for axis, value in zip(self.axes, self.values, strict=True)}

    @property
    def dirname(self) -> str:
        text = "_".join(f"{axis.keys[-1].split('.')[-1]}={axis.label(v)}"
                        for axis, v in zip(self.axes, self.values, strict=True))
        return re.sub(r"[^A-Za-z0-9=._+-]", "-", text)[:200]


def points(axes: list[Axis]) -> list[Point]:
    if not axes:
        raise UserError("prunekit sweep needs at least one --grid KEY=V1,V2,...")
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise UserError("the same --grid key is given twice")
    combos = [Point(tuple(v), tuple(axes)) for v in itertools.product(*(a.values for a in axes))]
    if len({p.dirname for p in combos}) != len(combos):
        raise UserError("two grid combinations map to the same run directory name; use distinct values")
    return combos
