"""Time the k-means backends on Gaussian blobs: scikit-learn vs torch (and mini-batch torch).

Usage: python benchmarks/bench_kmeans.py [--nodes 100000] [--dim 64] [--clusters 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_limits

from agc_cli.cluster import kmeans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", nargs="+", default=["sklearn", "torch", "minibatch"])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    x, _ = make_blobs(
        args.nodes,
        n_features=args.dim,
        centers=args.clusters,
        cluster_std=2.0,
        random_state=args.seed,
    )
    x = torch.from_numpy(x.astype(np.float32)).to(args.device)
    print(
        f"{args.nodes} x {args.dim} blobs, k={args.clusters}, n_init={args.n_init}, "
        f"threads={args.threads}, device={args.device}"
    )
    times = {}
    # threadpool_limits caps scikit-learn's OpenMP and BLAS pools; torch has its own setting.
    with threadpool_limits(args.threads):
        for backend in args.backends:
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = kmeans(x, args.clusters, seed=args.seed, n_init=args.n_init, backend=backend)
            times[backend] = time.perf_counter() - start
            print(
                f"{backend:>10}: {times[backend]:7.2f} s  inertia {result.inertia:.6e}  "
                f"iterations {result.n_iter}"
            )
    if "sklearn" in times:
        for backend, seconds in times.items():
            if backend != "sklearn":
                print(f"{backend} / sklearn time ratio: {seconds / times['sklearn']:.2f}")


if __name__ == "__main__":
    main()
