"""Every command's --help reads whole in an 80-column terminal: nothing cut to an ellipsis."""

import click
import pytest
import typer
from typer.testing import CliRunner

from accelkit.cli import app


def _commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths = [[]]
    for name, cmd in root.commands.items():
        paths.append([name])
        if isinstance(cmd, click.Group):
            paths += [[name, sub] for sub in cmd.commands]
    return paths


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "accelkit")
def test_help_fits_80_columns_and_keeps_every_word(path):
    res = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    # a long word (package.module:function, an option name) is wrapped, never cut to "…"
    assert not [line for line in lines if "…" in line]
    assert not [line for line in lines if len(line) > 80]
    # reST markup from docstrings does not reach the user
    assert "``" not in res.output


def test_help_shows_each_option_help_in_full():
    res = CliRunner().invoke(app, ["train", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    flat = " ".join(res.output.split())
    assert "MultipleNegativesRankingLoss" in flat
    assert "--no-group-by-length" in flat
