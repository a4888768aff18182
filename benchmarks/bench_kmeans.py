"""Time the k-means backends, and agc's k-means stage against a PyAGC-style KMeans head.

Usage:
  python benchmarks/bench_kmeans.py [--nodes 100000] [--dim 64] [--clusters 40] [--threads 2]
      [--busy 2]
  python benchmarks/bench_kmeans.py --vs-pyagc [--embeddings run/embeddings.pt] [--clusters 7]
      [--busy 2] [--repeats 3] [--sklearn]

The first form times each backend on Gaussian blobs. ``--vs-pyagc`` times, on the same
embeddings (an ``agc infer`` ``.pt``, an ``.npy`` matrix, or blobs), one run of agc's k-means
(``auto`` backend, ``--n-init`` restarts), agc's whole k-means stage (``runs`` of them through
the engine, as ``agc cluster`` runs them, threads capped at the cores free) and a KMeans head
that behaves like PyAGC 1.1.2's default one (see :func:`reference_head`). When the ``pyagc``
package is importable its own ``TorchKMeans`` is timed too; times are the best of
``--repeats``. With ``--busy N`` either form runs again next to ``N`` busy-looping processes, to
show what thread oversubscription costs each contender.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score
from threadpoolctl import threadpool_limits
from torch import Tensor

from agc_cli.cluster import choose_backend, kmeans
from agc_cli.engine.clustering import cluster_embeddings
from agc_cli.settings import Settings


def reference_head(
    x: Tensor, k: int, seed: int, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4
) -> Tensor:
    """Labels of a KMeans head written to behave like PyAGC 1.1.2's ``KMeansClusterHead``
    with its defaults (torch backend, 10 restarts, 300 iterations, tol 1e-4).

    Restarts run one after another, restart ``r`` seeded with ``seed + r``; each seeds greedy
    k-means++ (``2 + ln k`` candidates per centre, draws weighted by the ``torch.cdist``
    distance), then alternates cluster means (``index_add_``) and nearest centres (``torch.cdist``
    to the ``k`` centres) until the labels repeat or the summed centre shift is at most ``tol``
    times the mean feature variance. The labels of the lowest summed distance seen are kept.
    """
    tol_abs = float(x.var(0).mean()) * tol
    best_cost, best_labels = math.inf, None
    for restart in range(n_init):
        gen = torch.Generator().manual_seed(seed + restart)
        centers = _reference_plusplus(x, k, gen)
        labels = torch.cdist(x, centers).argmin(1)
        for _ in range(max_iter):
            counts = torch.bincount(labels, minlength=k).to(x.dtype).add_(1e-6)
            new = torch.zeros_like(centers).index_add_(0, labels, x) / counts[:, None]
            distance, new_labels = torch.cdist(x, new).min(1)
            cost = float(distance.sum())
            if cost < best_cost:
                best_cost, best_labels = cost, new_labels
            repeated = torch.equal(new_labels, labels)
            shift = float((new - centers).norm(dim=1).sum())
            centers, labels = new, new_labels
            if repeated or shift <= tol_abs:
                break
    return best_labels


def _reference_plusplus(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    trials = 2 + int(math.log(k))
    centers = x[torch.randint(x.shape[0], (1,), generator=gen)]
    closest = torch.cdist(centers, x)[0]
    for _ in range(1, k):
        draws = torch.rand(trials, generator=gen) * closest.sum()
        picks = torch.searchsorted(torch.cumsum(closest, 0), draws).clamp_(max=x.shape[0] - 1)
        scores = torch.minimum(torch.cdist(x[picks], x), closest)
        best = int(scores.sum(1).argmin())
        centers, closest = torch.cat([centers, x[picks[best]][None]]), scores[best]
    return centers


def pyagc_head() -> Callable[[Tensor, int, int], Tensor] | None:
    """PyAGC's own TorchKMeans (as its KMeansClusterHead runs it), when pyagc is installed."""
    try:
        from pyagc.clusters import TorchKMeans
    except ImportError:
        return None

    def fit(x: Tensor, k: int, seed: int) -> Tensor:
        return TorchKMeans(n_clusters=k, n_init=10, max_iter=300, random_state=seed).fit_predict(x)

    return fit


def squared_inertia(x: Tensor, labels: Tensor) -> float:
    """Sum of squared distances to the cluster means: the objective, whatever the method."""
    k = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=k).clamp_min(1)
    means = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, labels, x.double())
    return float((x.double() - (means / counts[:, None])[labels]).pow(2).sum())


@contextlib.contextmanager
def busy_neighbours(count: int) -> Iterator[None]:
    """``count`` processes spinning a Python loop for as long as the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5 if procs else 0)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def best_time(fn: Callable[[], Tensor], repeats: int) -> tuple[float, float, Tensor]:
    """Best wall seconds of ``repeats`` calls, the CPU seconds of that call, its labels."""
    best, cpu, labels = math.inf, math.inf, None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        labels = fn()
        wall = time.perf_counter() - start
        if wall < best:
            best, cpu = wall, time.process_time() - start_cpu
    return best, cpu, labels


def load_embeddings(path: Path) -> Tensor:
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False)).float()
    return torch.load(path, map_location="cpu", weights_only=True)["embeddings"].float()


def vs_pyagc(args: argparse.Namespace, x: Tensor, truth: np.ndarray | None) -> None:
    settings = Settings()
    runs, n_init = settings.runs, args.n_init
    k, seed = args.clusters, args.seed
    backend = choose_backend(x.shape[0], "cpu")
    print(
        f"{x.shape[0]} x {x.shape[1]}, k={k}, threads={torch.get_num_threads()}; agc: auto = "
        f"{backend}, n_init={n_init}, stage = {runs} runs; reference head: 10 restarts"
    )

    def stage() -> Tensor:
        return cluster_embeddings(
            x, None, n_clusters=k, runs=runs, seed=seed, normalize=False, n_init=n_init,
            structure=False,
        ).labels  # fmt: skip

    contenders: dict[str, Callable[[], Tensor]] = {
        "reference head": lambda: reference_head(x, k, seed),
        "agc run": lambda: kmeans(x, k, seed=seed, n_init=n_init).labels,
        f"agc stage ({runs} runs)": stage,
    }
    if args.sklearn:
        contenders["agc run, sklearn"] = lambda: (
            kmeans(x, k, seed=seed, n_init=n_init, backend="sklearn").labels
        )
    real = pyagc_head()
    if real is not None:
        contenders["pyagc TorchKMeans"] = lambda: real(x, k, seed)
    for busy in [0] + ([args.busy] if args.busy else []):
        print(f"-- {'alone' if not busy else f'next to {busy} busy processes'}")
        times = {}
        with busy_neighbours(busy), threadpool_limits(torch.get_num_threads()):
            for name, fn in contenders.items():
                times[name], cpu, labels = best_time(fn, args.repeats)
                quality = f"inertia {squared_inertia(x, labels):.6e}"
                if truth is not None:
                    quality += f"  NMI {normalized_mutual_info_score(truth, labels.numpy()):.4f}"
                print(f"{name:>22}: {times[name]:7.3f} s (CPU {cpu:7.3f} s)  {quality}")
        head = times["reference head"]
        for name, seconds in times.items():
            if name != "reference head":
                print(f"{name} / reference head: {seconds / head:.2f}")


def backends(args: argparse.Namespace, x: Tensor) -> None:
    print(
        f"{args.nodes} x {args.dim} blobs, k={args.clusters}, n_init={args.n_init}, "
        f"threads={args.threads}, device={args.device}"
    )
    for busy in [0] + ([args.busy] if args.busy else []):
        print(f"-- {'alone' if not busy else f'next to {busy} busy processes'}")
        times = {}
        # threadpool_limits caps scikit-learn's OpenMP and BLAS pools; torch has its own.
        with busy_neighbours(busy), threadpool_limits(args.threads):
            for backend in args.backends:
                if x.is_cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                result = kmeans(
                    x, args.clusters, seed=args.seed, n_init=args.n_init, backend=backend
                )
                times[backend] = time.perf_counter() - start
                print(
                    f"{backend:>10}: {times[backend]:7.2f} s  inertia {result.inertia:.6e}  "
                    f"iterations {result.n_iter}"
                )
        if "sklearn" in times:
            for backend, seconds in times.items():
                if backend != "sklearn":
                    print(f"{backend} / sklearn time ratio: {seconds / times['sklearn']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--std", type=float, default=2.0, help="blob standard deviation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-init", type=int, help="restarts per run (default: the setting's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", nargs="+", default=["sklearn", "torch", "minibatch"])
    parser.add_argument("--vs-pyagc", action="store_true", help="agc's stage vs a PyAGC head")
    parser.add_argument("--embeddings", type=Path, help="embeddings .pt (agc infer) or .npy")
    parser.add_argument("--busy", type=int, default=0, help="also time next to N busy loops")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sklearn", action="store_true", help="--vs-pyagc: also time sklearn")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    args.n_init = args.n_init or Settings().n_init
    truth = None
    if args.embeddings is not None:
        x = load_embeddings(args.embeddings)
    else:
        blobs, truth = make_blobs(
            args.nodes,
            n_features=args.dim,
            centers=args.clusters,
            cluster_std=args.std,
            random_state=args.seed,
        )
        x = torch.from_numpy(blobs.astype(np.float32))
    if args.vs_pyagc:
        vs_pyagc(args, x, truth)
    else:
        backends(args, x.to(args.device))


if __name__ == "__main__":
    main()
