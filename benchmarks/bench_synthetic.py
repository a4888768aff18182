"""Time and peak memory of generating a synthetic graph.

Usage: ``python benchmarks/bench_synthetic.py [DATASET]`` where DATASET is a preset
(default ``sbm-reddit``) or a spec such as ``sbm:nodes=100000,degree=20``. Peak RSS is the
whole process's (``ru_maxrss``), so it includes the interpreter and torch; the baseline before
generation is printed too. Run one dataset per process: the peak never goes down.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from agc_cli.data.synthetic import describe, generate, parse_synthetic

MB = 1e6


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="sbm-reddit")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = parse_synthetic(args.dataset)
    if spec is None:
        parser.error(f"{args.dataset!r} is not a synthetic dataset name")
    planned = describe(spec)
    baseline = peak_rss_bytes()

    start = time.perf_counter()
    graph = generate(spec)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()

    size = graph.nbytes()
    print(f"dataset            {spec.name}  ({spec})")
    print(f"threads            {torch.get_num_threads()}")
    print(f"time               {seconds:.1f} s")
    print(f"nodes              {graph.num_nodes:,}")
    print(f"edges (directed)   {graph.num_edges:,}  (planned {planned['edges']:,})")
    print(
        f"average degree     {graph.num_edges / graph.num_nodes:.2f}  (requested {spec.degree:g})"
    )
    print(f"final size         {size / MB:,.0f} MB  (Graph.nbytes())")
    print(f"planned size       {planned['nbytes'] / MB:,.0f} MB  (describe())")
    print(f"baseline RSS       {baseline / MB:,.0f} MB  (interpreter + torch, before generating)")
    print(f"peak RSS           {peak / MB:,.0f} MB")
    print(f"peak RSS / final   {peak / size:.2f}")
    print(f"(peak - baseline) / final   {(peak - baseline) / size:.2f}")


if __name__ == "__main__":
    main()
