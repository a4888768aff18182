"""The epoch-time estimate `agc stats` shows: how it scales with the work, and where it shows."""

from __future__ import annotations

import json
import math

import pytest
from cli_helpers import run_agc

from agc_cli.data.sources import GraphInfo
from agc_cli.engine.epoch_time import CUDA_RATES, cpu_rates, estimate_epoch_time
from agc_cli.engine.planner import Device, recommend
from agc_cli.settings import load_settings

RATES = cpu_rates(2)


def info(nodes: int, degree: float = 20.0, features: int = 128, density: float = 1.0):
    return GraphInfo("g", "synthetic", nodes, int(nodes * degree), features, 5, density)


def times(graph: GraphInfo, **overrides):
    settings = load_settings({"model": "dgi", **overrides})
    return estimate_epoch_time(graph, settings, RATES)


def test_mini_batch_steps_cover_every_node_once():
    est = times(info(10_001), batch_size=1000)
    assert est["mini_batch_train"].steps == 11
    assert est["full_batch_train"].steps == 1


def test_seconds_are_the_sum_of_the_parts():
    for est in times(info(50_000), mini_batch=True).values():
        assert est.seconds == pytest.approx(sum(est.parts.values()))
        assert all(v >= 0 for v in est.parts.values())
    assert "sampling + feature fetch" in times(info(50_000))["mini_batch_train"].parts
    assert "sampling + feature fetch" not in times(info(50_000))["full_batch_train"].parts


def test_full_batch_work_grows_with_edges_and_width():
    base = times(info(40_000, degree=10))["full_batch_train"]
    more_edges = times(info(40_000, degree=40))["full_batch_train"]
    assert more_edges.parts["propagation"] > 3 * base.parts["propagation"]
    assert more_edges.parts["dense matmuls"] == pytest.approx(base.parts["dense matmuls"])
    wider = times(info(40_000, degree=10), hidden_channels=1024)["full_batch_train"]
    assert wider.parts["dense matmuls"] > 3 * base.parts["dense matmuls"]


def test_sparse_features_cost_their_non_zeros_not_their_width():
    dense = times(info(40_000, features=8000, density=1.0))["full_batch_train"]
    sparse = times(info(40_000, features=8000, density=0.004))["full_batch_train"]
    first_dense = dense.parts["dense matmuls"] - sparse.parts["dense matmuls"]
    assert sparse.parts["sparse feature product"] < first_dense / 10
    assert dense.parts["sparse feature product"] == 0
    # The same bytes propagate; a GCN's first layer on sparse features runs blocked (cached).
    blocked = "blocked first-layer propagation"
    assert dense.parts[blocked] == 0 and sparse.parts[blocked] > 0
    moved = sparse.parts[blocked] * RATES.blocked_gather_bytes / RATES.gather_bytes
    assert sparse.parts["propagation"] + moved == pytest.approx(dense.parts["propagation"])


def test_two_pass_methods_cost_twice_the_encoder_work():
    # The same encoder for both (the presets differ): GAE runs it once, DGI twice.
    s_one = load_settings({"model": "gae", "hidden_channels": 64, "num_layers": 1})
    s_two = load_settings({"model": "dgi", "hidden_channels": 64, "num_layers": 1})
    one = estimate_epoch_time(info(40_000), s_one, RATES)["full_batch_train"]
    two = estimate_epoch_time(info(40_000), s_two, RATES)["full_batch_train"]
    assert two.parts["dense matmuls"] == pytest.approx(2 * one.parts["dense matmuls"])


def test_more_cpu_threads_and_a_gpu_are_estimated_faster():
    graph, settings = info(100_000), load_settings({"model": "dgi"})
    two = estimate_epoch_time(graph, settings, cpu_rates(2))["full_batch_train"].seconds
    eight = estimate_epoch_time(graph, settings, cpu_rates(8))["full_batch_train"].seconds
    gpu = estimate_epoch_time(graph, settings, CUDA_RATES)["full_batch_train"].seconds
    assert gpu < eight < two


def test_the_plan_carries_both_modes():
    device = Device("cpu", "CPU RAM", 64 * 2**30, 64 * 2**30, 64 * 2**30)
    plan = recommend(info(20_000), load_settings({"model": "dgi"}), device)
    assert set(plan.epoch_times) == {"full_batch_train", "mini_batch_train"}
    record = plan.as_dict()["epoch_seconds"]
    assert record["mini_batch_train"]["steps"] == math.ceil(20_000 / 2048)
    assert isinstance(record["full_batch_train"]["seconds"], float)


def test_stats_prints_and_emits_the_estimate(capsys):
    r = run_agc(capsys, "stats", "sbm:nodes=12000,clusters=4,degree=10,features=32", "--json")
    assert r.code == 0
    out = json.loads(r.out)
    for mode in ("full_batch_train", "mini_batch_train"):
        assert out["epoch_seconds"][mode]["seconds"] > 0
    r = run_agc(capsys, "stats", "sbm:nodes=12000,clusters=4,degree=10,features=32")
    assert r.code == 0 and "Training epoch time estimate" in r.out
