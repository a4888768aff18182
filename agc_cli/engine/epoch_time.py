"""Estimated seconds per training epoch, full-batch and mini-batch, before anything runs.

What `agc stats` shows next to the memory estimate, so that a user can overrule the rules of
thumb knowingly (a 14K-node graph is "mini-batch" by rule, yet its full-batch epoch may be far
cheaper). The model counts the encoder's work per step, layer by layer, the way agc's layers do
it, and converts each kind of work with a throughput of the device:

- dense transforms: ``2 · rows · in · out`` FLOPs forward, twice that backward (input and
  weight gradients), at the matmul rate;
- the first layer on bag-of-words features kept sparse: ``2 · non-zeros · out`` FLOPs forward
  and twice that backward, at the rate of agc's cache-blocked sparse x dense product (the
  weight's column block stays in cache, so this is compute-bound, not a DRAM gather);
- propagation over the adjacency: one gathered row of the dense operand per edge, forward and
  backward, at the gather rate; a GCN first layer on sparse features runs as agc's chained,
  column-blocked product ``A (X W)``, whose gathers hit a cache-sized block: its own rate;
- element-wise work (bias, activation, normalisation, their gradients): a few passes over each
  layer's output, at the streaming rate;
- per step: the optimizer's pass over parameters and moments, and a fixed overhead (Python,
  autograd, dispatch); in mini-batch also sampling (per sampled edge) and the feature gather.

Methods with two passes per step (DGI's corruption, two-view methods) count twice; heads and
decoders beyond the encoder (GAE's pairs, DAEGC's reconstruction) are not counted. The CPU
rates are calibrated against measured epochs with ``benchmarks/bench_epoch_estimate.py``; the
CUDA rates are ASSUMPTIONS (none was measured on a GPU when they were set).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from agc_cli.engine.planner import ACTIVATION_PASSES, expected_sampled

if TYPE_CHECKING:
    from agc_cli.data.info import GraphInfo
    from agc_cli.settings import Settings


@dataclass(frozen=True)
class Rates:
    """Achieved throughputs of a device for the kinds of work the model counts."""

    matmul_flops: float  # dense fp32 FLOP/s
    sparse_flops: float  # FLOP/s of the sparse features x dense weight product
    gather_bytes: float  # bytes/s of rows gathered by the adjacency products
    blocked_gather_bytes: float  # the same inside the column-blocked first-layer chain
    stream_bytes: float  # bytes/s of element-wise passes
    sample_edge_seconds: float  # neighbour sampling, per sampled edge
    step_seconds: float  # fixed cost of one optimisation step


# 2 threads of the development CPU (ceilings ≈ 320 GFLOP/s matmul, 8 GB/s copy, 5 GB/s random
# gather), scaled to what agc's steps achieve: calibrated by benchmarks/bench_epoch_estimate.py.
CPU_RATES_2_THREADS = Rates(
    matmul_flops=160e9,
    sparse_flops=25e9,
    gather_bytes=7e9,  # rows of hundreds of floats: contiguous runs, not single-value gathers
    blocked_gather_bytes=10e9,
    stream_bytes=2e9,
    sample_edge_seconds=40e-9,
    step_seconds=5e-3,
)
# ASSUMPTIONS for a data-centre GPU (H100/H200 class at fp32), NOT measured.
CUDA_RATES = Rates(
    matmul_flops=30e12,
    sparse_flops=2e12,
    gather_bytes=400e9,
    blocked_gather_bytes=400e9,
    stream_bytes=1.5e12,
    sample_edge_seconds=40e-9,  # agc samples on the host
    step_seconds=2e-3,
)
ELEMENTWISE_PASSES = 8  # about 4 tensors written forward and 4 backward per layer output
# Methods whose two passes share the first layer's transform (DGI corrupts by permuting it).
SHARED_FIRST_TRANSFORM = {"dgi", "dinknet"}


def cpu_rates(threads: int) -> Rates:
    """The calibrated 2-thread rates scaled linearly to ``threads`` (compute and bandwidth
    alike, an optimistic assumption beyond the cores it was measured on)."""
    scale = max(threads, 1) / 2
    r = CPU_RATES_2_THREADS
    return Rates(r.matmul_flops * scale, r.sparse_flops * scale, r.gather_bytes * scale,
                 r.blocked_gather_bytes * scale, r.stream_bytes * scale, r.sample_edge_seconds,
                 r.step_seconds)  # fmt: skip


def device_rates(kind: str) -> Rates:
    """The rates of a device kind: the CPU's for the cores this process may use, else the
    (assumed) GPU's."""
    from agc_cli.utils.cores import available_cores

    return cpu_rates(available_cores()) if kind == "cpu" else CUDA_RATES


@dataclass
class EpochTime:
    """Estimated seconds of one training epoch in one mode, split by kind of work."""

    mode: str
    steps: int
    seconds: float
    parts: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_epoch_time(
    info: GraphInfo, settings: Settings, rates: Rates, batch_size: int | None = None
) -> dict[str, EpochTime]:
    """``{"full_batch_train": ..., "mini_batch_train": ...}`` for ``settings`` on ``info``."""
    n, e, f = info.nodes, info.edges, info.features
    h, layers = settings.hidden_channels, settings.num_layers
    model = settings.model.lower()
    passes = ACTIVATION_PASSES.get(model, 1.0)
    sparse = info.feature_density < 0.1
    gnn = settings.gnn_type
    act_bytes = 2 if settings.precision in ("bf16", "16") else 4
    params = f * h + (layers - 1) * h * h

    def step(hop_nodes: list[int] | None, hop_edges: list[int] | None) -> dict[str, float]:
        flops = sparse_flops = gathered = blocked = streamed = 0.0
        for i in range(layers):
            if hop_nodes is None:  # full-batch: every node, every edge plus self-loops
                src = dst = n
                edges = e + n
            else:
                src = sum(hop_nodes[: layers - i + 1])
                dst = sum(hop_nodes[: layers - i])
                edges = sum(hop_edges[: layers - i]) + dst
            width_in = f if i == 0 else h
            if i == 0 and sparse:
                sparse_flops += 3 * 2 * src * f * info.feature_density * h
            else:
                # A sampled batch's upper GCN layers multiply only the destinations' rows.
                rows = dst if (hop_nodes is not None and i > 0 and gnn == "gcn") else src
                flops += 3 * 2 * rows * width_in * h * (2 if gnn in ("sage", "gin") else 1)
            hop_bytes = 2 * edges * h * act_bytes  # propagation, forward and backward
            if i == 0 and sparse and gnn == "gcn":
                blocked += hop_bytes
            else:
                gathered += hop_bytes
            if gnn in ("gat", "gatv2"):
                gathered += 2 * edges * h * act_bytes  # attention scores and their gradients
            streamed += ELEMENTWISE_PASSES * dst * h * act_bytes
        first = 1.0 if model in SHARED_FIRST_TRANSFORM else passes
        parts = {
            "dense matmuls": passes * flops / rates.matmul_flops,
            "sparse feature product": first * sparse_flops / rates.sparse_flops,
            "propagation": passes * gathered / rates.gather_bytes,
            "blocked first-layer propagation": passes * blocked / rates.blocked_gather_bytes,
            "element-wise": passes * streamed / rates.stream_bytes,
            "optimizer + overhead": 4 * 4 * params / rates.stream_bytes + rates.step_seconds,
        }
        if hop_nodes is not None:
            sampled = sum(hop_nodes)
            feature_bytes = sampled * f * (info.feature_density * 12 if sparse else 4)
            parts["sampling + feature fetch"] = (
                sum(hop_edges) * rates.sample_edge_seconds + feature_bytes / rates.gather_bytes
            )
        return parts

    full = step(None, None)
    batch = min(batch_size or settings.batch_size, n)
    hop_nodes, hop_edges = expected_sampled(n, e / max(n, 1), batch, settings.fan_out_list())
    steps = math.ceil(n / max(batch, 1))
    mini = {k: v * steps for k, v in step(hop_nodes, hop_edges).items()}
    return {
        "full_batch_train": EpochTime("full-batch", 1, sum(full.values()), full),
        "mini_batch_train": EpochTime("mini-batch", steps, sum(mini.values()), mini),
    }
