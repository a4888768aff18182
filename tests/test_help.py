"""The CLI surface is deliberate: `agc --help` of every subcommand is snapshotted.

After an intended change: UPDATE_SNAPSHOTS=1 python -m pytest tests/test_help.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agc_cli.cli.app import app

SNAPSHOTS = Path(__file__).parent / "snapshots"
COMMANDS = ["", "stats", "train", "infer", "cluster", "run", "resume", "bench", "profile",
            "convert", "models", "datasets"]  # fmt: skip


def help_text(command: str) -> str:
    runner = CliRunner()
    args = [command, "--help"] if command else ["--help"]
    env = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    result = runner.invoke(app, args, env=env, terminal_width=100)
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.output.splitlines()) + "\n"


@pytest.mark.parametrize("command", COMMANDS, ids=[c or "agc" for c in COMMANDS])
def test_help_matches_snapshot(command):
    path = SNAPSHOTS / f"help_{command or 'agc'}.txt"
    text = help_text(command)
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(text)
    assert text == path.read_text()


def test_every_command_is_snapshotted():
    registered = {c.name for c in app.registered_commands}
    assert registered == set(COMMANDS) - {""}
