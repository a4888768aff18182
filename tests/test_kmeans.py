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

from agc_cli.cluster import choose_backend, kmeans, kmeans_runs
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
    limit = kmeans_module.TORCH_CPU_MAX_NODES
    assert choose_backend(1000, "cpu") == "torch"
    assert choose_backend(limit, "cpu") == "torch"
    assert choose_backend(limit + 1, "cpu") == "minibatch"
    assert choose_backend(limit + 1, "cuda") == "torch"
    assert choose_backend(kmeans_module.MINIBATCH_MIN_NODES - 1, "cuda") == "torch"
    assert choose_backend(kmeans_module.MINIBATCH_MIN_NODES, "cuda") == "minibatch"
    x = blobs(400)
    assert kmeans(x, 3, seed=0, n_init=1).backend == "torch"
    monkeypatch.setattr(kmeans_module, "TORCH_CPU_MAX_NODES", 100)
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


def planted(num_rows=4000, dim=16, centers=8, std=1.0, seed=0):
    x, truth = make_blobs(
        num_rows, n_features=dim, centers=centers, cluster_std=std, random_state=seed
    )
    return torch.from_numpy(x.astype(np.float32)), truth


def test_batched_restarts_find_the_planted_clusters():
    # Offset far from the origin: the expanded distances work on centred rows.
    x, truth = planted()
    result = kmeans(x + 1000.0, 8, seed=0, n_init=10, backend="torch")
    assert adjusted_rand_score(truth, result.labels.numpy()) == 1.0
    means = torch.stack([x[torch.from_numpy(truth == c)].mean(0) for c in range(8)]) + 1000.0
    matched = result.centroids[
        result.labels[[int(np.flatnonzero(truth == c)[0]) for c in range(8)]]
    ]
    assert torch.allclose(matched, means, atol=1e-3)


def test_batched_restarts_match_scikit_learn_on_easy_blobs():
    x, truth = planted(3000, dim=32, centers=10, std=1.5, seed=3)
    reference = KMeans(10, n_init=10, random_state=0).fit(x.numpy())
    result = kmeans(x, 10, seed=0, n_init=10, backend="torch")
    assert result.inertia == pytest.approx(reference.inertia_, rel=1e-5)
    assert adjusted_rand_score(reference.labels_, result.labels.numpy()) == 1.0


def test_torch_backend_is_deterministic_per_seed_and_seeds_differ():
    x = blobs(2000, centers=12, seed=5)  # overlapping: restarts end in different minima
    first = kmeans(x, 12, seed=3, n_init=4, backend="torch")
    again = kmeans(x, 12, seed=3, n_init=4, backend="torch")
    assert torch.equal(first.labels, again.labels) and first.inertia == again.inertia
    others = [kmeans(x, 12, seed=s, n_init=1, backend="torch").inertia for s in range(4)]
    assert len(set(others)) > 1


def test_best_of_n_init_is_no_worse_than_any_of_its_restarts():
    # 20 blobs for 12 clusters: many local minima, so restarts end apart.
    x, _ = planted(1000, dim=4, centers=20, seed=1)
    best = kmeans(x, 12, seed=1, n_init=8, backend="torch")
    # Each restart alone: its own k-means++ seeding and Lloyd iterations.
    data = kmeans_module._Centred.of(x, 4096)
    singles = []
    for gen in kmeans_module._restart_generators(1, 8, x.device):
        seeded = kmeans_module._kmeans_plusplus(data, 12, [gen])
        centers, _ = kmeans_module._lloyd(data, seeded, 300, 1e-4 * data.variance, 1e-4)
        singles.append(float(kmeans_module._nearest_all(data, centers).inertia[0]))
    assert best.inertia <= min(singles) * (1 + 1e-6)
    assert best.inertia == pytest.approx(min(singles), rel=1e-5)
    assert max(singles) > min(singles) * 1.01  # the restarts did end apart
    # Restart r of a seed is the same whatever n_init is: more restarts never do worse.
    inertias = [kmeans(x, 12, seed=1, n_init=m, backend="torch").inertia for m in range(1, 9)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(inertias, inertias[1:], strict=False))
    assert inertias[-1] == pytest.approx(best.inertia, rel=1e-6) and inertias[-1] < inertias[0]


def test_runs_batched_together_equal_runs_one_by_one(monkeypatch):
    x = blobs(900, centers=6, seed=2)
    seeds = [4, 5, 6]
    alone = [kmeans(x, 6, seed=s, n_init=3, backend="torch") for s in seeds]
    together = list(kmeans_runs(x, 6, seeds=seeds, n_init=3, backend="torch"))
    # A bound of 2 runs' state per group: groups of two runs, then one.
    monkeypatch.setattr(kmeans_module, "_BLOCK_ELEMENTS", 900 * 3 * 2)
    grouped = list(kmeans_runs(x, 6, seeds=seeds, n_init=3, backend="torch"))
    for one, two, three in zip(alone, together, grouped, strict=True):
        assert torch.equal(one.labels, two.labels) and torch.equal(one.labels, three.labels)
        assert two.inertia == pytest.approx(one.inertia, rel=1e-6)
        assert three.inertia == pytest.approx(one.inertia, rel=1e-6)
        assert two.seconds > 0 and three.seconds > 0
    # Runs batched together share their time.
    assert together[0].seconds == together[1].seconds == together[2].seconds
    assert grouped[0].seconds == grouped[1].seconds


@pytest.mark.parametrize("backend", ["sklearn", "minibatch"])
def test_runs_of_other_backends_equal_single_calls(backend):
    x = blobs(600, centers=4)
    runs = list(kmeans_runs(x, 4, seeds=[0, 1], n_init=2, backend=backend, batch_size=128))
    for seed, run in zip([0, 1], runs, strict=True):
        single = kmeans(x, 4, seed=seed, n_init=2, backend=backend, batch_size=128)
        assert torch.equal(run.labels, single.labels) and run.backend == backend


def test_kmeans_runs_checks_its_arguments_before_the_first_result():
    with pytest.raises(UsageError, match="n_init"):
        kmeans_runs(blobs(50), 3, seeds=[0], n_init=0)


def test_n_init_setting_is_validated_and_reaches_kmeans(capsys, tmp_path, monkeypatch):
    from agc_cli.engine import clustering
    from agc_cli.settings import load_settings
    from tests.cli_helpers import run_agc

    assert load_settings({}).n_init == 10
    assert load_settings({"n_init": 3}).n_init == 3
    with pytest.raises(UsageError, match="n_init"):
        load_settings({"n_init": 0})
    emb = tmp_path / "emb.npy"
    np.save(emb, blobs(300, centers=3).numpy())
    tiny = "sbm:nodes=300,clusters=3,features=8"
    bad = run_agc(capsys, "cluster", "--embeddings", str(emb), "--dataset", tiny, "--n-init", "0")
    assert bad.code == 2 and "n_init" in bad.err
    seen = []
    real = clustering.kmeans_runs

    def spy(*args, **kwargs):
        seen.append(kwargs["n_init"])
        return real(*args, **kwargs)

    monkeypatch.setattr(clustering, "kmeans_runs", spy)
    ok = run_agc(capsys, "cluster", "--embeddings", str(emb), "--dataset", tiny, "--n-init", "2",
                 "--runs", "2", "--no-structure")  # fmt: skip
    assert ok.code == 0, ok.err
    assert seen == [2]
    assert "Run 1/2" in ok.err and "Run 2/2" in ok.err  # each run still reported on stderr
