"""k-means backends: quality against scikit-learn, determinism, chunking, input checks."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from agc_cli.cluster import choose_backend, kmeans
from agc_cli.errors import DataError, UsageError

# The package exports the function under the module's name; reach the module itself.
kmeans_module = importlib.import_module("agc_cli.cluster.kmeans")


def blobs(num_rows: int = 3000, dim: int = 8, centers: int = 6, seed: int = 0) -> torch.Tensor:
    x, _ = make_blobs(num_rows, n_features=dim, centers=centers, cluster_std=2.0, random_state=seed)
    return torch.from_numpy(x.astype(np.float32))


def test_torch_inertia_matches_scikit_learn():
    x = blobs()
    reference = KMeans(6, n_init=3, random_state=0).fit(x.numpy()).inertia_
    result = kmeans(x, 6, seed=0, n_init=3, backend="torch")
    assert result.backend == "torch"
    assert result.inertia == pytest.approx(reference, rel=0.01)


def test_result_shapes_and_types():
    x = blobs(500, dim=5, centers=4)
    for backend in ("sklearn", "torch", "minibatch"):
        result = kmeans(x, 4, seed=0, n_init=2, backend=backend, batch_size=128)
        assert result.backend == backend
        assert result.labels.dtype == torch.int64 and result.labels.shape == (500,)
        assert result.labels.min() >= 0 and result.labels.max() < 4
        assert result.centroids.dtype == torch.float32 and result.centroids.shape == (4, 5)
        assert result.n_iter >= 1
        recomputed = (x - result.centroids[result.labels]).pow(2).sum().item()
        assert result.inertia == pytest.approx(recomputed, rel=1e-4)


@pytest.mark.parametrize("backend", ["sklearn", "torch", "minibatch"])
def test_same_seed_same_result(backend):
    x = blobs(1500)
    first = kmeans(x, 6, seed=7, n_init=2, backend=backend, batch_size=256)
    second = kmeans(x, 6, seed=7, n_init=2, backend=backend, batch_size=256)
    assert torch.equal(first.labels, second.labels)
    assert torch.equal(first.centroids, second.centroids)
    assert first.inertia == second.inertia


@pytest.mark.parametrize("backend", ["torch", "minibatch"])
def test_chunk_size_does_not_change_the_result(backend):
    x = blobs(2000)
    whole = kmeans(x, 6, seed=1, n_init=2, backend=backend, batch_size=256)
    chunked = kmeans(x, 6, seed=1, n_init=2, backend=backend, batch_size=256, chunk_size=450)
    assert torch.equal(whole.labels, chunked.labels)
    # Centroid sums are float32 within a chunk, so the last bits may differ.
    assert torch.allclose(whole.centroids, chunked.centroids, rtol=1e-5, atol=1e-5)
    assert chunked.inertia == pytest.approx(whole.inertia, rel=1e-6)


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_normalize_clusters_directions_not_magnitudes(backend):
    rng = np.random.default_rng(0)
    # Two directions 20 degrees apart, each at radius 1 and radius 10.
    angles = np.repeat([0.0, np.deg2rad(20)], 200) + rng.normal(0, 0.01, 400)
    radius = np.tile(np.repeat([1.0, 10.0], 100), 2)
    x = torch.from_numpy(np.stack([np.cos(angles), np.sin(angles)], 1) * radius[:, None]).float()
    direction = np.repeat([0, 1], 200)
    raw = kmeans(x, 2, seed=0, n_init=2, backend=backend)
    normalized = kmeans(x, 2, seed=0, n_init=2, backend=backend, normalize=True)
    assert adjusted_rand_score(direction, normalized.labels.numpy()) == 1.0
    assert adjusted_rand_score(direction, raw.labels.numpy()) < 0.5
    by_hand = kmeans(F.normalize(x, dim=1), 2, seed=0, n_init=2, backend=backend)
    assert torch.equal(normalized.labels, by_hand.labels)
    assert normalized.inertia == pytest.approx(by_hand.inertia)


def test_minibatch_inertia_close_to_full_batch():
    x = blobs(20_000, dim=16, centers=10, seed=2)
    full = kmeans(x, 10, seed=0, n_init=2, backend="torch")
    mini = kmeans(x, 10, seed=0, n_init=2, backend="minibatch", batch_size=512, chunk_size=4096)
    assert mini.inertia <= full.inertia * 1.03


def test_minibatch_reads_a_memory_map(tmp_path):
    x = blobs(3000).numpy()
    np.save(tmp_path / "emb.npy", x)
    mapped = np.load(tmp_path / "emb.npy", mmap_mode="r")
    options = dict(seed=3, n_init=2, backend="minibatch", batch_size=256, chunk_size=700)
    from_map = kmeans(mapped, 6, **options)
    in_memory = kmeans(x, 6, **options)
    assert torch.equal(from_map.labels, in_memory.labels)
    assert from_map.inertia == in_memory.inertia
    # The full-batch backends load the (read-only) map whole.
    assert kmeans(mapped, 6, seed=3, n_init=1, backend="torch").labels.shape == (3000,)


def test_auto_backend_rules(monkeypatch):
    assert choose_backend(1000, "cpu") == "sklearn"
    assert choose_backend(kmeans_module.SKLEARN_MAX_NODES, "cpu") == "sklearn"
    assert choose_backend(kmeans_module.SKLEARN_MAX_NODES + 1, "cpu") == "minibatch"
    assert choose_backend(kmeans_module.SKLEARN_MAX_NODES + 1, "cuda") == "torch"
    assert choose_backend(kmeans_module.MINIBATCH_MIN_NODES - 1, "cuda") == "torch"
    assert choose_backend(kmeans_module.MINIBATCH_MIN_NODES, "cuda") == "minibatch"
    x = blobs(400)
    assert kmeans(x, 3, seed=0, n_init=1).backend == "sklearn"
    monkeypatch.setattr(kmeans_module, "SKLEARN_MAX_NODES", 100)
    assert kmeans(x, 3, seed=0, n_init=1, batch_size=64).backend == "minibatch"


def test_as_many_clusters_as_rows():
    x = blobs(12, dim=3)
    result = kmeans(x, 12, seed=0, n_init=1, backend="torch")
    assert sorted(result.labels.tolist()) == list(range(12))
    assert result.inertia == pytest.approx(0.0, abs=1e-6)


def test_fewer_distinct_rows_than_clusters_still_gives_valid_labels():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]).repeat(10, 1)
    result = kmeans(x, 5, seed=0, n_init=2, backend="torch")
    assert result.labels.min() >= 0 and result.labels.max() < 5
    assert result.inertia == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("backend", ["auto", "sklearn", "torch", "minibatch"])
def test_bad_input_raises(backend):
    x = blobs(50, dim=3)
    with pytest.raises(UsageError):
        kmeans(x, 51, seed=0, backend=backend)
    with pytest.raises(UsageError):
        kmeans(x, 0, seed=0, backend=backend)
    with pytest.raises(UsageError):
        kmeans(x, 3, seed=0, n_init=0, backend=backend)
    with pytest.raises(DataError):
        kmeans(x[:, 0], 3, seed=0, backend=backend)
    broken = x.clone()
    broken[45, 1] = float("nan")
    with pytest.raises(DataError):
        kmeans(broken, 3, seed=0, backend=backend, batch_size=16, chunk_size=16)
    broken[45, 1] = float("inf")
    with pytest.raises(DataError):
        kmeans(broken.numpy(), 3, seed=0, backend=backend, batch_size=16, chunk_size=16)


def test_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError, match="faiss"):
        kmeans(blobs(50), 3, seed=0, backend="faiss")
