"""Discoverability: `agc models`, `agc datasets`, the model list in --help, defaults, -V and
shell completion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_agc
from test_help import help_text

from agc_cli import __version__
from agc_cli.cli import options as o
from agc_cli.data.catalog import CATALOG
from agc_cli.data.synthetic import PRESETS as SYNTHETIC
from agc_cli.models.registry import MODELS

SHARED = Path("/work/shared/data")


def test_light_model_names_are_the_registry():
    assert o.MODEL_NAMES == tuple(MODELS)


def test_model_help_lists_every_method():
    text = " ".join(help_text("train").split())
    assert "Method: " + ", ".join(MODELS) in text.replace("│ ", "").replace(" │", "")


def test_help_shows_the_defaults():
    text = help_text("train")
    assert "[default: (model preset, else 100)]" in text  # --epochs
    assert "[default: (auto)]" in text  # --device


def test_models_lists_every_method_with_kind_and_presets(capsys):
    out = json.loads(run_agc(capsys, "models", "--json").out)["models"]
    by_name = {m["name"]: m for m in out}
    assert list(by_name) == list(MODELS)
    assert by_name["dgi"]["kind"] == "trainable" and by_name["sgc"]["kind"] == "non-parametric"
    assert by_name["dgi"]["paper"] == MODELS["dgi"].paper
    assert "Cora" in by_name["dinknet"]["preset_datasets"]
    r = run_agc(capsys, "models")
    assert r.code == 0 and all(f"\n{name}\t" in r.out for name in MODELS)


def test_datasets_lists_catalog_and_synthetic_with_availability(capsys, tmp_path):
    out = json.loads(run_agc(capsys, "datasets", "--root", str(tmp_path), "--json").out)
    entries = {d["name"]: d for d in out["datasets"]}
    assert set(entries) == {e.name for e in CATALOG.values()} | set(SYNTHETIC)
    assert entries["Reddit"]["nodes"] == 232_965 and entries["Reddit"]["available"] is False
    assert entries["sbm-small"]["source"] == "synthetic" and entries["sbm-small"]["nodes"] > 0
    assert out["root"] == str(tmp_path)


@pytest.mark.skipif(not (SHARED / "Cora" / "raw").is_dir(), reason="shared data absent")
def test_datasets_sees_raw_files_under_root(capsys, tmp_path):
    (tmp_path / "Cora").mkdir()
    (tmp_path / "Cora" / "raw").symlink_to(SHARED / "Cora" / "raw")
    out = json.loads(run_agc(capsys, "datasets", "--root", str(tmp_path), "--json").out)
    entries = {d["name"]: d for d in out["datasets"]}
    assert entries["Cora"]["available"] is True and entries["CiteSeer"]["available"] is False


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flags(capsys, flag):
    r = run_agc(capsys, flag)
    assert r.code == 0 and r.out == f"agc {__version__}\n"


def test_shell_completion_is_offered():
    text = help_text("")
    assert "--install-completion" in text and "--show-completion" in text


def test_every_command_has_the_output_options():
    from agc_cli.cli.app import app

    for command in app.registered_commands:
        text = help_text(command.name)
        for flag in ("--json", "--quiet", "--verbose"):
            assert flag in text, (command.name, flag)
