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
STEP_PRODUCTS = 10  # see the module docstring


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
    shapes = {
        "H W": lambda: h @ w,
        "Hᵀ G (weight grad)": lambda: h.T @ h,
        "G Wᵀ (input grad)": lambda: h @ w.T,
    }
    rates = []
    for name, fn in shapes.items():
        rates.append(rate(fn, flop, args.repeat))
        print(f"{name} [{NODES},{HIDDEN}]x[{HIDDEN}]\t{rates[-1]:.0f}")
    mean_rate = sum(rates) / len(rates)
    floor = STEP_PRODUCTS * flop / (mean_rate * 1e9)
    print(f"CCA-SSG Cora step: {STEP_PRODUCTS} products, {STEP_PRODUCTS * flop / 1e9:.1f} GFLOP, "
          f"matmul-only floor {floor * 1e3:.0f} ms at {mean_rate:.0f} GFLOP/s")  # fmt: skip
    if args.step_s:
        print(f"measured step {args.step_s * 1e3:.0f} ms: products {floor / args.step_s:.0%} of it")


if __name__ == "__main__":
    main()
