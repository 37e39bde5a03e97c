"""What `prunekit methods` prints: every registered method with its one-line summary, its paper, and its
parameters (type, default, help), read off the method class (`summary`, `paper`) and its `Params` dataclass
(fields declared with `params.param`, whose metadata carries the help)."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import typing
from dataclasses import dataclass
from typing import Any

from prunekit.methods import METHODS
from prunekit.methods.params import field_help

WIDTH = 100


@dataclass(frozen=True)
class ParamInfo:
    name: str
    type: str
    default: str
    help: str


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    paper: str
    module: str
    description: str  # the method module's docstring
    params: list[ParamInfo]


def type_name(tp: Any) -> str:
    """`float | None`, `Literal['internal', 'all']`, `list[str]`: a type as a user writes it."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def default_text(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    return "(required)"


def describe_params(params_cls: type) -> list[ParamInfo]:
    """One `ParamInfo` per field of a `Params` dataclass, in declaration order."""
    hints = typing.get_type_hints(params_cls)
    return [ParamInfo(f.name, type_name(hints[f.name]), default_text(f), field_help(f))
            for f in dataclasses.fields(params_cls)]


def method_info(name: str) -> MethodInfo:
    """What the catalog shows of the registered method `name` (UserError for an unknown one)."""
    cls = METHODS.get(name)
    doc = (cls.__doc__ or "").strip()
    module = sys.modules[cls.__module__]
    return MethodInfo(name=name, summary=getattr(cls, "summary", "") or doc.split("\n")[0],
                      paper=getattr(cls, "paper", ""), module=cls.__module__,
                      description=(module.__doc__ or "").strip(), params=describe_params(cls.Params))


def _wrapped(text: str, indent: int) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=" " * indent, subsequent_indent=" " * indent) or [""]


def render_method(info: MethodInfo, long: bool = False) -> str:
    """The method's block: name and summary, paper, parameters; `long` adds its module and description."""
    lines = textwrap.wrap(f"{info.name}: {info.summary}", WIDTH, subsequent_indent="  ")
    lines.append(f"  paper: {info.paper or '-'}")
    if long:
        lines.append(f"  module: {info.module}")
    if info.params:
        lines.append("  parameters (method.params):")
        for p in info.params:
            lines.append(f"    {p.name}: {p.type} = {p.default}")
            lines.extend(_wrapped(p.help, 8))
    else:
        lines.append("  parameters: none")
    if long and info.description:
        lines += ["", *(f"  {line}".rstrip() for line in info.description.splitlines())]
    return "\n".join(lines)


def render_catalog() -> str:
    """Every registered method, alphabetically."""
    names = METHODS.names()
    head = f"{len(names)} methods; `prunekit methods NAME` shows one with its full description."
    return "\n\n".join([head, *(render_method(method_info(name)) for name in names)])


__all__ = ["MethodInfo", "ParamInfo", "describe_params", "method_info", "render_catalog", "render_method",
           "type_name"]
