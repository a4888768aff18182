"""Run the `agc` console entry point in-process and capture exit code, stdout and stderr."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from agc_cli.cli.app import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_agc(capsys: pytest.CaptureFixture, *args: str) -> Result:
    old = sys.argv
    sys.argv = ["agc", *args]
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return Result(code, captured.out, captured.err)
