"""``fhir-server ... --help``: every command's help renders cleanly and lists its options.

typer 0.27+ renders argument and flag types as ``{paths}...`` and ``<bool>``; pyproject.toml
pins the range that renders them as ``PATHS...`` and flags without a type.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fhir_server.cli import app

BIN = Path(sys.executable).parent
ODD = re.compile(r"<\w+(\[\w+\])?>|\{\w+\}")  # <bool>, <list[Path]>, {paths}


# typer 0.26 carries its own copy of click: its command objects are not ``click``'s classes.
def commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, (*prefix, name))


def command_at(path: tuple[str, ...]) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


ALL = list(commands(typer.main.get_command(app)))


def test_every_command_is_covered() -> None:
    assert {" ".join(p) for p in ALL} >= {
        "",
        "serve",
        "migrate",
        "load",
        "reindex",
        "packages",
        "packages list",
        "packages check",
        "packages install",
        "dev-idp",
        "dev-certs",
    }


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "fhir-server")
def test_help_renders_cleanly_and_lists_the_options(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(
        app, [*path, "--help"], prog_name="fhir-server", env={"COLUMNS": "100"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Usage: fhir-server {' '.join(path)}".rstrip() in out
    assert not ODD.search(out), out
    for param in command_at(path).params:
        for name in param.opts + param.secondary_opts:
            if name.startswith("--"):
                assert name in out, (name, out)
        if param.param_type_name == "argument":
            assert (param.metavar or param.name or "").upper() in out.upper(), out


def test_the_installed_command_answers_help() -> None:
    result = subprocess.run(
        [str(BIN / "fhir-server"), "load", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "100", "PATH": str(BIN), "TERM": "dumb"},
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: fhir-server load [OPTIONS] PATHS..." in result.stdout
    assert "--no-check-references" in result.stdout
    assert not ODD.search(result.stdout), result.stdout
