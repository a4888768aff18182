"""Run the `agc` console entry point in-process and capture exit code, stdout and stderr."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


def graph_dir(base: Path, x: np.ndarray, edges=None, y=None) -> Path:
    """A user graph directory under ``base``: ``edge_index.npy`` (one edge both ways unless
    given), ``x.npy`` and optional ``y.npy``."""
    folder = base / "graph"
    folder.mkdir(exist_ok=True)
    np.save(folder / "edge_index.npy", np.array([[0, 1], [1, 0]]) if edges is None else edges)
    np.save(folder / "x.npy", x)
    if y is not None:
        np.save(folder / "y.npy", y)
    return folder
