"""The planner's memory estimate against measured peaks (each in a fresh subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_estimate.py"


def measure(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--epochs", "1", *args],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ("--mode", "full", "--nodes", "40000", "--hidden", "256"),
        (
            "--mode",
            "full",
            "--nodes",
            "20000",
            "--degree",
            "200",
            "--hidden",
            "64",
            "--layers",
            "1",
            "--features",
            "32",
            "--fan-out",
            "10",
        ),
        ("--mode", "mini", "--nodes", "60000", "--batch-size", "4096", "--fan-out", "10,10"),
    ],
    ids=["full-batch", "full-batch-edge-heavy", "mini-batch"],
)
def test_estimate_within_factor_1_5_of_measured_peak(args):
    out = measure(*args)
    assert 1 / 1.5 <= out["ratio"] <= 1.5, out
