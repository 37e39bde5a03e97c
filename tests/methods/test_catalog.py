"""`prunekit methods`: every registered method, its paper and its parameters with types, defaults and help."""

import dataclasses

import pytest

from prunekit.cli import main
from prunekit.methods import METHODS
from prunekit.methods.catalog import describe_params, method_info, type_name
from prunekit.methods.prune_regrow import PruneRegrowParams


def test_the_listing_names_every_registered_method_with_each_parameter(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in METHODS.names():
        assert any(line.startswith(f"{name}: ") for line in lines), name
        for field in dataclasses.fields(METHODS.get(name).Params):
            assert f"    {field.name}: " in out
    assert out.count("  paper: ") == len(METHODS.names())


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_states_a_summary_a_paper_and_help_for_every_parameter(name):
    cls = METHODS.get(name)
    # declared on the class itself, not inherited
    assert cls.__dict__.get("summary") and cls.__dict__.get("paper"), \
        f"method {name!r}: declare `summary` (one line) and `paper` on the class"
    info = method_info(name)
    assert info.params == describe_params(cls.Params)
    missing = [p.name for p in info.params if not p.help]
    assert not missing, f"method {name!r}: declare {missing} with methods.params.param(default, help)"


def test_one_method_shows_types_defaults_help_and_its_description(capsys):
    assert main(["methods", "reprune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("reprune: ") and "module: prunekit.methods.reprune" in out
    assert "    sparsity: float | None = None\n" in out and "    t_prune: int = 96\n" in out
    assert "    policy: Literal['internal', 'all'] = 'internal'\n" in out
    help_text = dataclasses.fields(PruneRegrowParams)[2].metadata["help"]  # t_prune
    assert " ".join(help_text.split()[:6]) in " ".join(out.split())
    assert "Alg. 1" in out  # the module docstring
    assert "chex: " not in out


def test_an_unknown_method_is_a_one_line_error(capsys):
    assert main(["methods", "reprun"]) == 2
    assert "did you mean 'reprune'" in capsys.readouterr().err


def test_type_names_read_as_written():
    assert type_name(int) == "int"
    assert type_name(float | None) == "float | None"
    assert type_name(list[str]) == "list[str]"
    by_name = {p.name: p for p in describe_params(PruneRegrowParams)}
    assert by_name["delta0"].type == "float" and by_name["delta0"].default == "0.2"


def test_methods_md_lists_exactly_each_methods_parameters():
    """docs/METHODS.md's parameter table of every method names the same keys as its Params dataclass."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "METHODS.md").read_text()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M))
    for name in METHODS.names():
        assert name in sections, f"docs/METHODS.md needs a '## {name}' section with its parameter table"
        keys = re.findall(r"^\| `(\w+)` \| `", sections[name], flags=re.M)
        assert keys == [f.name for f in dataclasses.fields(METHODS.get(name).Params)], name
