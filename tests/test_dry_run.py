"""``--dry-run``: resolved settings with the source of every value, without loading data."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_agc

BIG = "sbm:nodes=1500000,clusters=20,degree=10,features=32"


@pytest.mark.parametrize("command", ["train", "run"])
def test_planner_values_and_their_source_without_loading_the_graph(
    capsys, tmp_path, monkeypatch, command
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("AGC_CACHE_DIR", str(cache))
    run_dir = tmp_path / "run"
    r = run_agc(capsys, command, "--dataset", BIG, "--dry-run", "--json", "--run-dir",
                str(run_dir))  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["settings"]["batch_size"] == 8192
    assert report["sources"]["batch_size"] == "planner"
    assert report["settings"]["mini_batch"] is True and report["sources"]["mini_batch"] == "planner"
    assert report["settings"]["fan_out"] == [15]
    assert {p["setting"] for p in report["planner"]} >= {"mini_batch", "batch_size"}
    assert report["sources"]["dataset"] == "flag" and report["sources"]["cache_dir"] == "env"
    assert not run_dir.exists()  # nothing written
    assert not cache.exists() or not any(cache.rglob("*.pt"))  # nothing generated


def test_flag_env_config_and_preset_sources(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AGC_LR", "0.05")
    config = tmp_path / "c.yaml"
    config.write_text("dropout: 0.3\n")
    r = run_agc(capsys, "train", "--dataset", BIG, "--batch-size", "512", "--config",
                str(config), "--dry-run", "--json")  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert (report["settings"]["batch_size"], report["sources"]["batch_size"]) == (512, "flag")
    assert (report["settings"]["lr"], report["sources"]["lr"]) == (0.05, "env")
    assert (report["settings"]["dropout"], report["sources"]["dropout"]) == (0.3, "config")
    assert report["sources"]["hidden_channels"] == "preset"  # DGI's preset
    assert report["sources"]["seed"] == "default"
    assert "batch_size" not in {p["setting"] for p in report["planner"]}


def test_dry_run_text_is_a_table_on_stdout(capsys):
    r = run_agc(capsys, "train", "--dataset", BIG, "--dry-run")
    assert r.code == 0, r.err
    assert "batch_size\t8192\tplanner" in r.out
    assert "planner: batch_size 8192" in r.err
