"""CUDA paths: fp16 training with a grad scaler, the sampler feeding a CUDA model, torch
k-means on the GPU and a real out-of-memory walking the inference fallback chain.

Skipped without a GPU (CI has none); ``benchmarks/gpu_check.sh`` runs them on one.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_helpers import run_agc

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TINY = "sbm:nodes=2000,clusters=4,degree=10,homophily=0.85,features=32,snr=2,seed=1"


def test_fp16_training_with_a_grad_scaler_stays_finite(capsys, tmp_path):
    r = run_agc(capsys, "train", "--dataset", TINY, "--device", "cuda", "--precision", "16",
                "--epochs", "5", "--hidden-channels", "32", "--run-dir", str(tmp_path / "run"),
                "--json")  # fmt: skip
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert math.isfinite(out["loss"])
    assert out["peak"]["cuda_bytes"] > 0


def test_mini_batch_training_feeds_sampled_batches_to_a_cuda_model(capsys, tmp_path):
    r = run_agc(capsys, "run", "--dataset", TINY, "--device", "cuda", "--mini-batch",
                "--batch-size", "256", "--num-layers", "2", "--fan-out", "5,5", "--epochs", "2",
                "--hidden-channels", "32", "--runs", "1", "--run-dir", str(tmp_path / "run"),
                "--json")  # fmt: skip
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["train"]["mode"] == "mini-batch"
    assert out["train"]["peak"]["cuda_bytes"] > 0
    assert "cuda" in out["infer"]["mode"]


def test_torch_kmeans_on_the_gpu_matches_the_cpu():
    from sklearn.datasets import make_blobs
    from sklearn.metrics import normalized_mutual_info_score

    from agc_cli.cluster import kmeans

    x, _ = make_blobs(20_000, n_features=32, centers=8, cluster_std=1.0, random_state=0)
    x = torch.from_numpy(x).float()
    gpu = kmeans(x.cuda(), 8, seed=0, backend="torch")
    cpu = kmeans(x, 8, seed=0, backend="torch")
    assert gpu.backend == "torch"
    assert normalized_mutual_info_score(gpu.labels.numpy(), cpu.labels.numpy()) > 0.99
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-3)


def test_a_real_out_of_memory_walks_the_inference_fallback_chain(tmp_path):
    from agc_cli.data.sources import load_graph
    from agc_cli.engine.inference import infer
    from agc_cli.engine.session import build_model
    from agc_cli.settings import load_settings

    spec = "sbm:nodes=300000,clusters=8,degree=8,features=64,seed=3"
    settings = load_settings({"dataset": spec, "model": "dgi", "hidden_channels": 512,
                              "num_layers": 2, "device": "cuda"})  # fmt: skip
    graph = load_graph(spec, tmp_path, tmp_path)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    device = torch.device("cuda")
    model.to(device).eval()
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    # Leave 400 MB: full-batch needs [300K, 512] float32 activations (614 MB) per layer.
    hog = torch.empty(max(free - 400 * 2**20, 0), dtype=torch.uint8, device=device)
    try:
        to_cpu = infer(model, graph, device, full_batch=True, allow_cpu_fallback=True,
                       batch_size=8192)  # fmt: skip
        layer_wise = infer(model, graph, device, full_batch=True, allow_cpu_fallback=False,
                           batch_size=65536)  # fmt: skip
    finally:
        del hog
        torch.cuda.empty_cache()
    assert to_cpu.mode == "full-batch (cpu)", to_cpu.events
    assert to_cpu.events  # the out-of-memory on the GPU was reported
    assert "mini-batch" in layer_wise.mode and "cuda" in layer_wise.mode, layer_wise.events
    assert torch.allclose(to_cpu.embeddings, layer_wise.embeddings, atol=1e-4)
