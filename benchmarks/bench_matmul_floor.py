"""This machine's dense fp32 matmul rate, and the floor it puts under a CCA-SSG step on Cora.

    python benchmarks/bench_matmul_floor.py [--threads 2] [--repeat 20] [--step-s S]

Times ``torch.mm`` on square matrices and on the shapes of a CCA-SSG Cora step (2,708 nodes,
hidden 512, two GCN layers): per step, two views each take the second layer's product
(``H W``) forward, its two gradient products backward, and the centred Gram matrix ``cᵀc``
forward and ``c (G + Gᵀ)`` backward — ten ``[2708, 512] x [512, 512]``-sized products,
about 14.2 GFLOP. Printed: GFLOP/s per shape, the step's matmul-only time at the measured
rate, and, with ``--step-s`` (a measured seconds per epoch, e.g. ``agc`` training seconds /
epochs), the share of the step that the products alone take.
"""

from __future__ import annotations

import argparse
import time

import torch

NODES, HIDDEN = 2708, 512


def rate(fn, flop: float, repeat: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return flop * repeat / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--step-s", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# fp32 torch.mm, {args.threads} thread(s), torch {torch.__version__}")
    print("shape\tGFLOP/s")
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        gflops = rate(lambda a=a, b=b: a @ b, 2 * n**3, max(3, args.repeat // 4))
        print(f"{n}x{n}x{n}\t{gflops:.0f}")
    h, w = torch.randn(NODES, HIDDEN), torch.randn(HIDDEN, HIDDEN)
    flop = 2 * NODES * HIDDEN * HIDDEN
    # Each shape with the number of its products in one step (two views): H W forward and the
    # Gram backward c (G + Gᵀ); the weight gradient Hᵀ G and the Gram forward cᵀ c; the input
    # gradient G Wᵀ.
    shapes = {
        f"H W, c (G+Gᵀ) [{NODES},{HIDDEN}]x[{HIDDEN},{HIDDEN}]": (lambda: h @ w, 4),
        f"Hᵀ G, cᵀ c [{HIDDEN},{NODES}]x[{NODES},{HIDDEN}]": (lambda: h.T @ h, 4),
        f"G Wᵀ [{NODES},{HIDDEN}]x[{HIDDEN},{HIDDEN}]ᵀ": (lambda: h @ w.T, 2),
    }
    floor = 0.0
    for name, (fn, count) in shapes.items():
        gflops = rate(fn, flop, args.repeat)
        floor += count * flop / (gflops * 1e9)
        print(f"{name} (x{count})\t{gflops:.0f}")
    products = sum(count for _, count in shapes.values())
    print(f"CCA-SSG Cora step: {products} products, {products * flop / 1e9:.1f} GFLOP, "
          f"matmul-only floor {floor * 1e3:.0f} ms")  # fmt: skip
    if args.step_s:
        print(f"measured step {args.step_s * 1e3:.0f} ms: products {floor / args.step_s:.0%} of it")


if __name__ == "__main__":
    main()
