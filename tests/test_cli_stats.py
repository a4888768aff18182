"""`agc stats` end to end through the console entry point."""

from __future__ import annotations

import json
import time

import yaml
from cli_helpers import run_agc

from agc_cli.settings import load_settings


def test_stats_reddit_answers_offline_from_metadata(capsys, tmp_path):
    t0 = time.perf_counter()
    r = run_agc(capsys, "stats", "Reddit", "--root", str(tmp_path), "--gpu-memory", "16GB")
    assert time.perf_counter() - t0 < 10
    assert r.code == 0, r.err
    assert "232,965" in r.out and "114,615,892" in r.out
    assert "--load for detailed statistics" in r.out
    assert "mini_batch: True" in r.out and "batch_size: 2048" in r.out
    assert "mini-batch" in r.out and "10K–1M" in r.out


def test_stats_json_report(capsys, tmp_path):
    r = run_agc(capsys, "stats", "Reddit", "--root", str(tmp_path), "--gpu-memory", "16GB",
                "--json")  # fmt: skip
    assert r.code == 0
    report = json.loads(r.out)
    rec = report["recommendation"]["settings"]
    assert rec["mini_batch"] is True and rec["batch_size"] == 2048
    assert rec["infer_fan_out"] == -1 and rec["force_full_batch_inference"] is True
    assert report["device"]["what_if"] is True
    assert set(report["estimates"]) == {
        "full_batch_train", "mini_batch_train", "full_batch_infer", "mini_batch_infer",
    }  # fmt: skip


def test_stats_papers100m_with_gpu_budget(capsys, tmp_path):
    r = run_agc(capsys, "stats", "Papers100M", "--root", str(tmp_path), "--gpu-memory", "32GB",
                "--json")  # fmt: skip
    assert r.code == 0
    report = json.loads(r.out)
    assert report["recommendation"]["settings"]["batch_size"] == 8192
    assert report["recommendation"]["settings"]["force_full_batch_inference"] is False
    assert report["estimates"]["full_batch_train"]["fits"] is False


def test_stats_cora_load_computes_statistics(capsys, shared_data):
    r = run_agc(capsys, "stats", "Cora", "--root", str(shared_data), "--load", "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)["statistics"]
    assert s["nodes"] == 2708 and s["undirected_edges"] == 5278 and s["isolated_nodes"] == 0
    assert 0.80 < s["edge_homophily"] < 0.82
    assert json.loads(r.out)["recommendation"]["settings"]["mini_batch"] is False


def test_stats_synthetic_default_dataset(capsys):
    r = run_agc(capsys, "stats", "sbm-small")
    assert r.code == 0, r.err
    assert "edge homophily" in r.out and "avg degree" in r.out


def test_plain_output_when_not_a_terminal(capsys, tmp_path):
    r = run_agc(capsys, "stats", "Reddit", "--root", str(tmp_path))
    assert not any(ch in r.out for ch in "┏┃━│╭")


def test_emit_config_round_trips_and_never_overwrites(capsys, tmp_path):
    cfg = tmp_path / "train.conf.yaml"
    r = run_agc(capsys, "stats", "Reddit", "--root", str(tmp_path), "--emit-config", str(cfg))
    assert r.code == 0 and cfg.is_file()
    s = load_settings(config=cfg)
    assert s.mini_batch is True and s.batch_size == 2048 and s.dataset == "Reddit"
    before = cfg.read_text()
    r = run_agc(capsys, "stats", "Reddit", "--root", str(tmp_path), "--emit-config", str(cfg))
    assert r.code == 2 and "--force" in r.err
    assert cfg.read_text() == before
    cfg.write_text("# mine\n")
    r = run_agc(capsys, "stats", "Cora", "--root", str(tmp_path), "--emit-config", str(cfg),
                "--force")  # fmt: skip
    assert r.code == 0 and yaml.safe_load(cfg.read_text())["dataset"] == "Cora"


def test_bad_inputs_exit_codes(capsys, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    r = run_agc(capsys, "stats", "Reddit", "--hidden-channels", "-3")
    assert r.code == 2 and r.err.strip().startswith("error: hidden_channels:")
    assert len(r.err.strip().splitlines()) == 1
    r = run_agc(capsys, "stats", "no-such-graph")
    assert r.code == 2 and "unknown dataset" in r.err
    r = run_agc(capsys, "stats", "Reddit", "--gpu-memory", "lots")
    assert r.code == 2 and "--gpu-memory" in r.err
    r = run_agc(capsys, "stats", "Reddit", "--config", str(tmp_path / "missing.yaml"))
    assert r.code == 2 and "config: file not found" in r.err
    r = run_agc(capsys, "stats", "Cora", "--root", str(tmp_path), "--load")
    assert r.code == 3 and "raw files missing" in r.err
