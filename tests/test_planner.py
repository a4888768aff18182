"""Memory planner: the rules of thumb at each threshold, overrides, device budget, sizes."""

from __future__ import annotations

import pytest

from agc_cli.data.sources import GraphInfo, describe_source
from agc_cli.engine.planner import (
    CUDA_ALLOCATOR_HEADROOM,
    CUDA_CONTEXT_BYTES,
    USABLE_FRACTION,
    Device,
    estimate,
    expected_sampled,
    fmt_bytes,
    parse_size,
    recommend,
)
from agc_cli.settings import load_settings

BIG_GPU = Device("cuda", "what-if GPU", 80 * 2**30, 80 * 2**30, 1 << 50, what_if=True)


def info(nodes: int, degree: float = 10.0, features: int = 64) -> GraphInfo:
    return GraphInfo("g", "synthetic", nodes, int(nodes * degree), features, 5)


def what_if(gb: int) -> Device:
    return Device("cuda", "what-if GPU", gb * 2**30, gb * 2**30, 1 << 50, what_if=True)


@pytest.mark.parametrize(
    ("nodes", "mini", "batch"),
    [
        (9_999, False, None),
        (10_000, True, 2048),
        (500_000, True, 2048),
        (1_000_000, True, 2048),
        (1_000_001, True, 8192),
        (50_000_000, True, 8192),
    ],
)
def test_mode_and_batch_size_rules(nodes, mini, batch):
    rec = recommend(info(nodes), load_settings({"model": "dgi"}), BIG_GPU).recommendation
    assert rec.settings["mini_batch"] is mini
    if batch is not None:
        assert rec.settings["batch_size"] == batch
        assert rec.settings["infer_batch_size"] == 4 * batch


@pytest.mark.parametrize(("layers", "fan"), [(1, 15), (2, 15), (3, 10), (4, 5), (6, 5)])
def test_fan_out_rule(layers, fan):
    s = load_settings({"num_layers": layers})
    rec = recommend(info(50_000), s, BIG_GPU).recommendation
    assert rec.settings["fan_out"] == [fan] * layers


@pytest.mark.parametrize(("nodes", "force"), [(1_000_000, True), (1_000_001, False)])
def test_full_batch_inference_rule(nodes, force):
    rec = recommend(info(nodes), load_settings(), BIG_GPU).recommendation
    assert rec.settings["force_full_batch_inference"] is force
    assert rec.settings["infer_fan_out"] == -1


def test_full_batch_overridden_when_it_does_not_fit():
    tiny = Device("cuda", "what-if GPU", 2**20, 2**20, 1 << 50, what_if=True)
    plan = recommend(info(5_000, features=5000), load_settings(), tiny)
    assert plan.recommendation.settings["mini_batch"] is True
    assert any("instead" in r for r in plan.recommendation.reasons)


def test_cpu_fallback_when_full_batch_inference_does_not_fit_gpu():
    gpu = Device("cuda", "what-if GPU", 2**30, 2**30, 1 << 50, what_if=True)
    plan = recommend(info(900_000, degree=50, features=500), load_settings(), gpu)
    rec = plan.recommendation.settings
    assert rec["force_full_batch_inference"] is False
    assert any("allow_cpu_fallback" in r for r in plan.recommendation.reasons)


def test_each_decision_has_a_reason():
    plan = recommend(info(50_000), load_settings(), BIG_GPU)
    text = " ".join(plan.recommendation.reasons)
    for word in ("fan_out", "mini-batch", "infer_batch_size", "infer_fan_out"):
        assert word in text


def test_disk_storage_suggested_when_features_exceed_ram():
    small_host = Device("cuda", "gpu", 80 * 2**30, 80 * 2**30, 2**30)
    plan = recommend(info(5_000_000, features=512), load_settings(), small_host)
    assert plan.recommendation.storage == "disk"


def test_expected_sampled_is_capped_by_graph_size():
    hops, edges = expected_sampled(100, 50.0, 64, [10, 10])
    assert hops[0] == 64 and sum(hops) <= 100
    assert edges[0] == 640
    hops, _ = expected_sampled(10**6, 5.0, 100, [10])
    assert hops == [100, 500]  # min(fan_out, degree) neighbours per node


def test_estimates_grow_with_model_size():
    small = estimate(info(100_000), load_settings({"hidden_channels": 64}))
    large = estimate(info(100_000), load_settings({"hidden_channels": 512}))
    for key in ("full_batch_train", "mini_batch_train", "full_batch_infer"):
        assert large[key].total > small[key].total


def test_gat_counts_per_edge_attention():
    base = load_settings({"gnn_type": "gcn", "model": "gae"})
    gat = load_settings({"gnn_type": "gat", "model": "gae"})
    g = info(50_000, degree=40)
    assert estimate(g, gat)["full_batch_train"].total > estimate(g, base)["full_batch_train"].total


def test_dgi_counts_the_corrupted_pass():
    g = info(50_000)
    dgi = estimate(g, load_settings({"model": "dgi", "num_layers": 2, "hidden_channels": 256}))
    gae = estimate(g, load_settings({"model": "gae", "num_layers": 2, "hidden_channels": 256}))
    assert dgi["full_batch_train"].components["activations"] == pytest.approx(
        2 * gae["full_batch_train"].components["activations"]
    )


def test_parse_and_format_sizes():
    assert parse_size("32GB") == 32 * 2**30
    assert parse_size("16GiB") == 16 * 2**30
    assert parse_size("512mb") == 512 * 2**20
    assert parse_size("1000") == 1000
    for bad in ("lots", "-1GB", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert fmt_bytes(1536 * 2**20) == "1.5 GB"


@pytest.mark.parametrize(("gb", "fits"), [(16, False), (32, True)])
def test_reddit_full_batch_needs_mini_batch_on_a_16gb_gpu(tmp_path, gb, fits):
    reddit = describe_source("Reddit", tmp_path)  # catalog metadata, nothing downloaded
    assert reddit.source == "catalog"
    plan = recommend(reddit, load_settings({"dataset": "Reddit"}), what_if(gb))
    assert plan.fits("full_batch_train") is fits
    needs = [r for r in plan.recommendation.reasons if r.startswith("full-batch training would")]
    if fits:
        assert needs == []
    else:
        (reason,) = needs
        assert reason.endswith(": needs mini-batch")
        total = fmt_bytes(plan.estimates["full_batch_train"].total)
        assert f"need {total} > what-if GPU budget {fmt_bytes(plan.device.budget)}" in reason
    rec = plan.recommendation.settings
    assert rec["mini_batch"] is True and rec["batch_size"] == 2048 and rec["fan_out"] == [15]


def test_budget_what_if_vs_detected_cuda_vs_cpu():
    size = 16 * 2**30
    gpu = what_if(16)
    assert gpu.context_bytes == CUDA_CONTEXT_BYTES
    assert gpu.allocator_headroom == CUDA_ALLOCATOR_HEADROOM
    assert gpu.budget == int((size - CUDA_CONTEXT_BYTES) * USABLE_FRACTION / 1.10)
    assert gpu.budget_derivation() == (
        "12.0 GB = 85% of (16.0 GB − 512.0 MB CUDA context) ÷ 1.10 allocator headroom"
    )
    # A detected device's free memory already excludes the (stats process's) context.
    free = 14 * 2**30
    detected = Device("cuda", "H100", 16 * 2**30, free, 1 << 50)
    assert detected.context_bytes == 0
    assert detected.budget == int(free * USABLE_FRACTION / CUDA_ALLOCATOR_HEADROOM)
    assert "context" not in detected.budget_derivation()
    assert "÷ 1.10 allocator headroom" in detected.budget_derivation()
    # CPU plans are unchanged: 85% of the free RAM.
    cpu = Device("cpu", "CPU RAM", 64 * 2**30, free, free)
    assert cpu.context_bytes == 0 and cpu.allocator_headroom == 1.0
    assert cpu.budget == int(free * USABLE_FRACTION)
    assert cpu.budget_derivation() == "11.9 GB = 85% of 14.0 GB free"
    # Smaller than the context: nothing fits, nothing breaks.
    assert Device("cuda", "what-if GPU", 2**20, 2**20, 1 << 50, what_if=True).budget == 0
    report = gpu.as_dict()
    assert report["context_bytes"] == CUDA_CONTEXT_BYTES
    assert report["allocator_headroom"] == CUDA_ALLOCATOR_HEADROOM
    assert report["usable_fraction"] == USABLE_FRACTION and report["budget"] == gpu.budget


def test_fits_uses_the_cuda_budget():
    g = info(50_000)
    total = estimate(g, load_settings())["full_batch_train"].total
    # Just above the estimate without the CUDA terms, below it with them.
    free = int(total / USABLE_FRACTION) + 2**20
    cpu = recommend(g, load_settings(), Device("cpu", "CPU RAM", free, free, 1 << 50))
    gpu = recommend(g, load_settings(), Device("cuda", "gpu", free, free, 1 << 50))
    assert cpu.fits("full_batch_train") and not gpu.fits("full_batch_train")


@pytest.mark.parametrize(("count", "hint"), [(4, True), (1, False)])
def test_multi_gpu_reason(count, hint):
    gpus = Device("cuda", "gpu", 80 * 2**30, 80 * 2**30, 1 << 50, count=count)
    reasons = recommend(info(50_000), load_settings(), gpus).recommendation.reasons
    multi = [r for r in reasons if "--nproc-per-node" in r]
    assert multi == (
        ["4 GPUs visible: train data-parallel with --nproc-per-node 4"] if hint else []
    )


def test_mini_batch_features_of_bag_of_words_count_non_zeros_not_nodes_times_features():
    settings = load_settings({"model": "dgi", "fan_out": [15], "batch_size": 2048})
    sizes = {}
    for density in (0.004, 1.0):
        graph = GraphInfo("g", "catalog", 34_493, 495_924, 8_415, 5, feature_density=density)
        sizes[density] = estimate(graph, settings)["mini_batch_train"].components["batch features"]
    hop_nodes, _ = expected_sampled(34_493, 495_924 / 34_493, 2048, [15])
    rows = sum(hop_nodes)
    assert sizes[1.0] == rows * 8_415 * 4
    nnz = rows * 8_415 * 0.004
    # CSR rows (value + column per non-zero) and the transposed structure of the backward pass.
    assert nnz * 12 < sizes[0.004] < nnz * 40 + rows * 8
    assert sizes[0.004] < sizes[1.0] / 20


def test_decisions_carry_the_reason_of_their_own_value():
    tiny = Device("cpu", "CPU RAM", 2**20, 2**20, 2**20)
    plan = recommend(info(5_000), load_settings({"model": "dgi"}), tiny)
    decision = plan.recommendation.decisions["mini_batch"]
    assert decision.value is True  # full-batch does not fit 1 MiB, although < 10K nodes
    assert decision.reason.startswith("mini-batch instead: full-batch training needs")
    for key, d in plan.recommendation.decisions.items():
        assert d.value == plan.recommendation.settings[key]


def test_session_applies_every_planner_choice_the_user_left_unset():
    from agc_cli.engine.session import plan_settings

    big = info(2_000_000)
    settings, applied = plan_settings(load_settings({"model": "dgi"}), big, BIG_GPU)
    chosen = {a.setting: a for a in applied}
    assert settings.mini_batch is True and settings.batch_size == 8192
    assert settings.infer_batch_size == 4 * 8192
    assert chosen["batch_size"].reason.startswith("mini-batch, batch_size 8192")
    given, applied = plan_settings(load_settings({"model": "dgi", "batch_size": 512}), big, BIG_GPU)
    assert given.batch_size == 512 and "batch_size" not in {a.setting for a in applied}
    assert given.infer_batch_size == 4 * 512  # the planner's rule follows the user's batch
    full, applied = plan_settings(load_settings({"mini_batch": False}), big, BIG_GPU)
    assert full.mini_batch is False and applied == []


@pytest.mark.parametrize(("nodes", "degree", "dense"), [(400, 20.0, True), (50_000, 10.0, False)])
def test_daegc_counts_the_reconstruction_the_model_computes(nodes, degree, dense):
    from agc_cli.models.daegc import exact_reconstruction

    graph = info(nodes, degree)
    assert exact_reconstruction(nodes, graph.edges + nodes) is dense
    terms = estimate(graph, load_settings({"model": "daegc"}))["full_batch_train"].components
    assert ("dense reconstruction N×N" in terms) is dense
    assert ("sampled reconstruction pairs" in terms) is not dense
    if dense:
        assert terms["dense reconstruction N×N"] == 2 * nodes * nodes * 4
