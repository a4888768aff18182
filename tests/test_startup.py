"""Instant start: `--help`, `--version` and `stats NAME` on catalog metadata import neither
PyG nor scikit-learn (nor torch without a CUDA device), and what can be checked without data
is refused before any dataset is loaded or generated. Nothing here is timed: the timings are
benchmarks/bench_startup.py's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Big enough that generating it would take minutes: a refusal must come before it.
BIG = "sbm:nodes=1500000,clusters=20,degree=10,features=32"

PROBE = """
import json, sys
sys.argv = ["agc", *json.loads(sys.argv[1])]
import agc_cli.cli.app as app
try:
    app.main()
except SystemExit as exc:
    code = exc.code
from agc_cli.engine.planner import cuda_possible
heavy = [m for m in ("torch", "torch_geometric", "sklearn") if m in sys.modules]
sys.stderr.write(json.dumps({"code": code, "heavy": heavy, "cuda_possible": cuda_possible()}))
"""


def probe(*args: str, cwd=None) -> dict:
    """Run ``agc ARGS`` in a fresh interpreter; which heavy modules did it import?"""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd)  # fmt: skip
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args", [("--version",), ("-V",), ("--help",), ("train", "--help"), ("models", "--help")]
)
def test_help_and_version_import_neither_torch_nor_pyg_nor_sklearn(args):
    result = probe(*args)
    assert result["code"] in (0, None)
    assert result["heavy"] == []


def test_stats_on_catalog_metadata_needs_no_torch(tmp_path):
    result = probe("stats", "Reddit", "--root", str(tmp_path), "--json")
    assert result["code"] in (0, None)
    assert "torch_geometric" not in result["heavy"] and "sklearn" not in result["heavy"]
    if not result["cuda_possible"]:  # torch only to read a CUDA device's free memory
        assert result["heavy"] == []


def agc(*args: str, cwd=None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agc_cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "nosuch"), "model: unknown 'nosuch'"),
        (("--gnn-type", "transformer"), "gnn_type"),
        (("--nproc-per-node", "2", "--full-batch"), "mini_batch: data-parallel"),
        (("--precision", "16", "--device", "cpu"), "precision: 16"),
    ],
)
def test_static_problems_are_refused_before_the_dataset_is_built(tmp_path, args, message):
    # The timeout is the test: building BIG takes far longer.
    done = agc("train", "--dataset", BIG, "--cache-dir", str(tmp_path / "cache"), *args,
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stdout == ""
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_a_run_dir_holding_a_run_is_refused_before_loading(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "data.txt").write_text("not a run")
    done = agc("run", "--dataset", BIG, "--cache-dir", str(tmp_path / "cache"),
               "--run-dir", str(run), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "run_dir:" in done.stderr
    assert not (tmp_path / "cache").exists()


def test_a_malformed_synthetic_spec_is_refused_before_loading(tmp_path):
    done = agc("train", "--dataset", "sbm:nodes=many", cwd=tmp_path)
    assert done.returncode == 2 and "nodes" in done.stderr


def test_no_command_module_imports_another():
    """Shared steps live in cli/common.py, cli/render.py, cli/results.py: a command module
    never imports another command's module."""
    import ast
    from pathlib import Path

    import agc_cli.cli as cli

    folder = Path(cli.__file__).parent
    commands = {"stats", "train", "infer", "cluster", "run", "resume", "profile", "convert",
                "discover"}  # fmt: skip
    for name in commands:
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if module == "agc_cli.cli":
                imported |= {a.name for a in node.names}
            elif module.startswith("agc_cli.cli."):
                imported.add(module.split(".")[2])
        assert not imported & (commands - {name}), (name, imported & commands)
