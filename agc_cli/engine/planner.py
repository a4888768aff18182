"""Memory planner: bytes per component for each mode, device fit, and recommended settings.

The estimate models agc's own implementation (see ``agc_cli/models``): GCN/SAGE/GIN layers
transform features first and then propagate with a cached normalised sparse adjacency (CSR,
int64 indices + fp32 values, plus the transposed copy autograd builds for the backward pass);
GAT keeps per-edge attention and messages. Activations kept for backward are counted per
layer; each method adds its own terms (DGI's corrupted pass, CCASSG's second view, GAE's
decoded pairs, DAEGC's dense reconstruction). The estimate is checked against measured peaks
in ``tests/test_planner.py``.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agc_cli.settings import Settings, default_fan_out

if TYPE_CHECKING:  # the planner imports neither torch nor a model: `agc stats` starts instantly
    from agc_cli.data.info import GraphInfo

GiB = 1024**3
# Fraction of the device budget a plan may use: allocator fragmentation, cuDNN/cuSPARSE
# workspaces and temporaries we do not model one by one.
USABLE_FRACTION = 0.85
# Dense tensors alive per node and hidden channel in one encoder layer during training
# (transformed input, propagated output, normalised/activated output, dropout mask, grads in
# flight), calibrated against measured peaks.
TRAIN_TENSORS_PER_LAYER = 4.0
INFER_TENSORS = 3.0  # layer input, transformed, output (no autograd)
ADJ_BYTES_PER_EDGE = 12  # int64 column index + fp32 value
# Transposed structure of sparse features for the first layer's weight gradient: int64 column
# and int64 position per non-zero, plus the gathered fp32 value.
SPARSE_TRANSPOSE_BYTES = 20
EDGE_INDEX_BYTES = 16  # int64 [2, E]
BUILD_BYTES_PER_EDGE = 40  # transients while building the adjacency and its backward (measured)
# Extra passes over the encoder activations per method (DGI: clean + corrupted, CCASSG: two
# views); methods not listed run one pass.
ACTIVATION_PASSES = {"dgi": 2.0, "ccassg": 2.0, "magi": 1.0, "gae": 1.0, "dmon": 1.0, "daegc": 1.0,
                     "ns4gc": 2.0, "gbt": 2.0, "dinknet": 2.0, "vgae": 1.0, "arga": 1.0,
                     "argva": 1.0}  # fmt: skip
SMALL_GRAPH = 10_000  # rules of thumb from PyAGC's scalability guide
LARGE_GRAPH = 1_000_000

# Costs that exist only on a CUDA device, which the CPU calibration above cannot see.
# ASSUMPTIONS from the PyTorch/CUDA documentation, NOT measured on a GPU (none was available
# when they were set); calibrate them with ``benchmarks/memory_estimate.py --device cuda``,
# which prints the memory outside the allocator (context) and max reserved / max allocated
# (headroom).
# - The CUDA context plus cuBLAS/cuSPARSE handles and workspaces live outside PyTorch's
#   caching allocator (typically several hundred MB). A detected device's free memory, read by
#   ``torch.cuda.mem_get_info`` after this process created its own context, already excludes
#   it (approximating the training process's); a what-if ``--gpu-memory`` size is a card's
#   total, so the context is subtracted from it.
CUDA_CONTEXT_BYTES = 512 * 1024**2
# - The caching allocator reserves more than it allocates (block rounding, fragmentation
#   between differently sized large tensors): device-side estimates are multiplied by this
#   factor, i.e. the CUDA budget (what-if and detected) is divided by it. CPU plans: 1.0.
CUDA_ALLOCATOR_HEADROOM = 1.10


@dataclass
class MemoryEstimate:
    """Bytes per component for one mode; ``total`` sums them."""

    mode: str
    components: dict[str, int]
    host_components: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.components.values()))

    @property
    def host_total(self) -> int:
        return int(sum(self.host_components.values()))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "host_total": self.host_total}


@dataclass
class Device:
    """Where training runs and how much memory the plan may use there.

    ``budget = USABLE_FRACTION × (free_bytes − context_bytes) ÷ allocator_headroom``.
    ``context_bytes`` and ``allocator_headroom`` default from the kind: a what-if CUDA device
    subtracts ``CUDA_CONTEXT_BYTES`` (a detected one's free memory already excludes the
    context), every CUDA device divides by ``CUDA_ALLOCATOR_HEADROOM``; a CPU uses neither.
    """

    kind: str  # "cuda" | "cpu"
    name: str
    total_bytes: int
    free_bytes: int
    host_free_bytes: int
    what_if: bool = False
    count: int = 1
    context_bytes: int | None = None
    allocator_headroom: float | None = None

    def __post_init__(self) -> None:
        cuda = self.kind == "cuda"
        if self.context_bytes is None:
            self.context_bytes = CUDA_CONTEXT_BYTES if cuda and self.what_if else 0
        if self.allocator_headroom is None:
            self.allocator_headroom = CUDA_ALLOCATOR_HEADROOM if cuda else 1.0

    @property
    def budget(self) -> int:
        usable = max(self.free_bytes - self.context_bytes, 0) * USABLE_FRACTION
        return int(usable / self.allocator_headroom)

    def budget_derivation(self) -> str:
        """``12.0 GB = 85% of (16.0 GB − 512.0 MB CUDA context) ÷ 1.10 allocator headroom``."""
        free = f"{fmt_bytes(self.free_bytes)} free"
        if self.context_bytes:
            free = f"({fmt_bytes(self.free_bytes)} − {fmt_bytes(self.context_bytes)} CUDA context)"
        text = f"{fmt_bytes(self.budget)} = {USABLE_FRACTION:.0%} of {free}"
        if self.allocator_headroom != 1.0:
            text += f" ÷ {self.allocator_headroom:.2f} allocator headroom"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "usable_fraction": USABLE_FRACTION,
            "budget": self.budget,
            "budget_derivation": self.budget_derivation(),
        }


@dataclass(frozen=True)
class Decision:
    """One planner choice: the value for a setting and why."""

    value: Any
    reason: str


@dataclass
class Recommendation:
    """The planner's settings (``settings``), its reasons in the order it reached them
    (``reasons``, for display) and, per setting, the typed choice with its own reason
    (``decisions``), which a session applies to every setting the user did not set."""

    settings: dict[str, Any]
    reasons: list[str]
    storage: str = "memory"
    decisions: dict[str, Decision] = field(default_factory=dict)


@dataclass
class Plan:
    estimates: dict[str, MemoryEstimate]
    device: Device
    recommendation: Recommendation
    # Seconds per training epoch by mode (agc_cli.engine.epoch_time.EpochTime).
    epoch_times: dict[str, Any] = field(default_factory=dict)

    def fits(self, mode: str) -> bool:
        return self.estimates[mode].total <= self.device.budget

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device.as_dict(),
            "estimates": {
                k: {**v.as_dict(), "fits": self.fits(k)} for k, v in self.estimates.items()
            },
            "recommendation": asdict(self.recommendation),
            "epoch_seconds": {k: v.as_dict() for k, v in self.epoch_times.items()},
        }


def parse_size(text: str) -> int:
    """Parse ``32GB``, ``16GiB``, ``512MB``, ``1.5T`` or a byte count into bytes."""
    s = text.strip().upper().replace(" ", "").removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    scale = units.get(s[-1:], 1)
    number = s[:-1] if s[-1:] in units else s
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (e.g. 32GB)") from None
    if value <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return int(value * scale)


def detect_device(gpu_memory: int | None = None, device: str = "auto") -> Device:
    """The CUDA device (free memory) or, without one, the host RAM; ``gpu_memory`` = what-if."""
    import psutil

    host_free = int(psutil.virtual_memory().available)
    if gpu_memory is not None:
        return Device("cuda", "what-if GPU", gpu_memory, gpu_memory, host_free, what_if=True)
    if device != "cpu" and cuda_possible():
        import torch

        if torch.cuda.is_available():
            index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
            free, total = torch.cuda.mem_get_info(index)
            name = torch.cuda.get_device_name(index)
            return Device("cuda", name, total, free, host_free, count=torch.cuda.device_count())
    total = int(psutil.virtual_memory().total)
    return Device("cpu", "CPU RAM", total, host_free, host_free)


def cuda_possible() -> bool:
    """False when no CUDA device can be visible, decided without importing torch (which takes
    seconds): ``CUDA_VISIBLE_DEVICES`` hides every device, or Linux has no NVIDIA or ROCm
    device node. Elsewhere, or when torch is already imported, ask torch."""
    if "torch" in sys.modules:
        return True
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if sys.platform.startswith("linux"):
        nodes = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg", "/proc/driver/nvidia")
        return any(Path(p).exists() for p in nodes)
    return sys.platform != "darwin"


def expected_sampled(
    nodes: int, avg_degree: float, batch_size: int, fan_out: list[int]
) -> tuple[list[int], list[int]]:
    """Expected nodes per hop (hop 0 = seeds) and edges per hop of one sampled batch.

    A node contributes ``min(fan_out, degree)`` neighbours; the running total of nodes is
    capped by the graph size (duplicates across seeds are merged).
    """
    hop_nodes = [min(batch_size, nodes)]
    hop_edges = []
    total = hop_nodes[0]
    for f in fan_out:
        per = avg_degree if f < 0 else min(f, avg_degree)
        edges = hop_nodes[-1] * per
        new = min(edges, max(nodes - total, 0))
        hop_edges.append(int(edges))
        hop_nodes.append(int(new))
        total += int(new)
    return hop_nodes, hop_edges


def estimate(info: GraphInfo, settings: Settings, mini_batch_size: int | None = None) -> dict:
    """Estimates for full-batch/mini-batch training and inference with ``settings``."""
    n, e, f = info.nodes, info.edges, info.features
    h, layers = settings.hidden_channels, settings.num_layers
    model, gnn = settings.model.lower(), settings.gnn_type
    act_bytes = 2 if settings.precision in ("bf16", "16") else 4
    heads = settings.heads if gnn in ("gat", "gatv2") else 1
    passes = ACTIVATION_PASSES.get(model, 1.0)
    avg_deg = e / max(n, 1)

    sparse_features = info.feature_density < 0.1

    def feature_bytes(rows: int, backward: bool = False) -> int:
        if not sparse_features:
            return rows * f * 4
        # Kept sparse: a value and an int64 column per non-zero, a row pointer per row; the
        # weight gradient of the first layer adds the transposed structure (column, position
        # and value per non-zero).
        nnz = rows * f * info.feature_density
        per_nnz = 12 + (SPARSE_TRANSPOSE_BYTES if backward else 0)
        return int(nnz * per_nnz + rows * 8)

    def params() -> int:
        count = f * h + (layers - 1) * h * h + layers * h
        if gnn in ("gat", "gatv2"):
            count += layers * 2 * h  # attention vectors
        if gnn in ("sage", "gin"):
            count *= 2  # root weight / MLP second linear
        count += {
            "dgi": h * h,
            "dmon": h * (settings.n_clusters or info.classes or 16),
            "neuromap": h * (settings.n_clusters or info.classes or 16),  # its head, as DMoN's
            "s3gc": f * h,  # its second head
        }.get(model, 0)
        if model in ("arga", "argva"):  # the discriminator, with its own Adam
            from agc_cli.models.arga import DISCRIMINATOR_HIDDEN as WIDTH

            latent = h // 2 if model == "argva" else h
            count += (latent + WIDTH + 2) * WIDTH + 1
        return count * 4 * 4  # parameter, gradient, two Adam moments

    def encoder_activations(hop_nodes: list[int], edges: list[int], train: bool) -> int:
        # Layer i of L reads nodes of hops 0..L-i and edges of hops 0..L-i-1 (trimmed).
        total = 0
        for i in range(layers):
            rows = sum(hop_nodes[: layers - i + 1]) if hop_nodes else n
            layer_edges = sum(edges[: layers - i]) if edges else e + n
            if hop_nodes and i > 0 and gnn == "gcn" and not settings.residual:
                # GCNConv reassociates a sampled batch's upper layers, (Â H) W: only the
                # input (and its dropout) has a row per source; the rest one per destination.
                dst = sum(hop_nodes[: layers - i])
                tensors = TRAIN_TENSORS_PER_LAYER if train else 1
                per_layer = (rows + dst * (tensors - 1)) * h * act_bytes
            else:
                per_layer = rows * h * act_bytes * (TRAIN_TENSORS_PER_LAYER if train else 1)
            if gnn in ("gat", "gatv2"):
                per_layer += layer_edges * (h * act_bytes + heads * 3 * 4)
            total += per_layer
        return int(total * (passes if train else 1))

    def adjacency(edges: int, train: bool) -> int:
        # The batch keeps its int64 edge_index; the normalised adjacency (plus its transpose
        # for the backward pass) is built from it through int64 temporaries of the same size.
        base = edges * (EDGE_INDEX_BYTES + ADJ_BYTES_PER_EDGE * (2 if train else 1))
        return int(base + edges * BUILD_BYTES_PER_EDGE)

    def model_extra(rows: int, train: bool) -> dict[str, int]:
        if model in ("gae", "arga", "argva") and train:
            return {"decoder pairs (pos + neg)": int(2 * e * h * act_bytes if rows == n else 0)}
        if model == "daegc" and train and rows == n:
            from agc_cli.models.daegc import exact_reconstruction

            if exact_reconstruction(n, e + n):  # every pair's logit (and its gradient)
                return {"dense reconstruction N×N": int(2 * n * n * 4)}
            # Estimated from as many uniform pairs as positive ones: both ends' rows.
            return {"sampled reconstruction pairs": int(2 * (e + n) * h * act_bytes)}
        if model == "ns4gc" and train:
            # The similarity block and its sigmoid, each kept for backward, plus the gradient.
            from agc_cli.models.ns4gc import DENSE_MAX_NODES as NS4GC_DENSE_MAX_NODES

            entries = min(rows * rows, NS4GC_DENSE_MAX_NODES**2)
            return {"similarity block S": int(3 * entries * 4)}
        return {}

    def resident(rows: int, train: bool, mini: bool) -> dict[str, int]:
        """Terms of a method that holds per-node state whatever the mode (S3GC: its per-node
        table, the precomputed ÃX and S_k X, and its walk windows' gathered rows)."""
        if model == "nafs" and not train:
            # Whole-graph smoothing: the densified features, the current hop, the next and the
            # weighted sum, plus one result per r (concatenated or stacked).
            return {"smoothed features (per r)": (len(settings.r_list) + 4) * n * f * 4}
        if model == "node2vec":
            # Its table (with SparseAdam's two moments when training) and, per step, each
            # window's gathered rows, their centre products and the rows' gradient.
            terms = {"per-node table (+ SparseAdam moments)" if train else "per-node table":
                     n * h * 4 * (3 if train else 1)}  # fmt: skip
            if train:
                size = settings.context_size
                windows = rows * settings.num_walks * max(settings.walk_length + 2 - size, 1)
                gathered = windows * (1 + settings.negatives) * size * h * act_bytes
                terms["walk windows (gathered rows, kept for backward)"] = 3 * gathered
            return terms
        if model != "s3gc":
            return {}
        from agc_cli.models.s3gc import MLP_MIN_NODES

        table = n * h * 4
        terms = {"per-node table (+ SparseAdam moments)" if train else "per-node table":
                 table * (3 if train else 1)}  # fmt: skip
        # Full-batch with linear heads transforms first; otherwise the rows are precomputed.
        if mini or n >= MLP_MIN_NODES:
            terms["precomputed ÃX and S_k X"] = 2 * n * f * 4
        if train:
            pairs = rows * settings.num_walks * settings.walk_length * 2
            terms["walk windows (gathered rows, kept for backward)"] = pairs * h * act_bytes * 3
        return terms

    full_train = {
        "features": feature_bytes(n, backward=True),
        "topology (adjacency)": adjacency(e + n, train=True),
        "activations": encoder_activations([], [], train=True),
        "parameters + optimizer": params(),
        **model_extra(n, True),
        **resident(n, True, mini=False),
    }
    full_infer = {
        "features": feature_bytes(n),
        "topology (adjacency)": adjacency(e + n, train=False),
        "activations": int(n * h * act_bytes * INFER_TENSORS),
        "parameters": params() // 4,
        **resident(n, False, mini=False),
    }
    fan_out = settings.fan_out_list()
    batch = mini_batch_size or settings.batch_size
    hop_nodes, hop_edges = expected_sampled(n, avg_deg, batch, fan_out)
    sampled = sum(hop_nodes)
    mini_train = {
        "batch features": feature_bytes(sampled, backward=True),
        "batch topology": sum(hop_edges) * (16 + ADJ_BYTES_PER_EDGE * 2),
        "activations": encoder_activations(hop_nodes, hop_edges, train=True),
        "parameters + optimizer": params(),
        **resident(batch, True, mini=True),
    }
    infer_batch = settings.infer_batch_size
    infer_fan = settings.infer_fan_out
    sources = infer_batch * (avg_deg if infer_fan < 0 else min(infer_fan, avg_deg))
    mini_infer = {
        "batch inputs": int(
            max(
                feature_bytes(int(min(sources + infer_batch, n))),
                min(sources + infer_batch, n) * h * 4,
            )
        ),  # fmt: skip
        "batch topology": int(sources * (16 + ADJ_BYTES_PER_EDGE)),
        "activations": int(infer_batch * h * act_bytes * INFER_TENSORS),
        "parameters": params() // 4,
        **resident(infer_batch, False, mini=True),
    }
    host_graph = {
        "features": feature_bytes(n),
        "topology (CSC)": (n + 1) * 8 + e * 8,
    }
    return {
        "full_batch_train": MemoryEstimate("full-batch training", full_train),
        "mini_batch_train": MemoryEstimate(
            "mini-batch training", mini_train, {**host_graph}
        ),
        "full_batch_infer": MemoryEstimate("full-batch inference", full_infer),
        "mini_batch_infer": MemoryEstimate(
            "mini-batch inference", mini_infer,
            {**host_graph, "layer outputs (2 × N × H)": 2 * n * h * 4},
        ),
        "sampled_nodes_per_batch": sampled,
        "hop_nodes": hop_nodes,
    }  # fmt: skip


def recommend(info: GraphInfo, settings: Settings, device: Device) -> Plan:
    """Apply the rules of thumb, then override them where the estimate says they do not fit."""
    n = info.nodes
    reasons: list[str] = []
    why: dict[str, str] = {}

    def note(keys: tuple[str, ...], text: str) -> None:
        reasons.append(text)
        why.update(dict.fromkeys(keys, text))

    layers = settings.num_layers
    fan = default_fan_out(layers)
    note(
        ("fan_out",),
        f"fan_out {fan}: rule of thumb for {layers} layer(s) (15 ≤2, 10 for 3, 5 deeper)",
    )
    if n < SMALL_GRAPH:
        mini_batch, batch_size = False, settings.batch_size
        note(("mini_batch",), f"full-batch: {n:,} nodes < {SMALL_GRAPH:,}")
    elif n <= LARGE_GRAPH:
        mini_batch, batch_size = True, 2048
        note(("mini_batch", "batch_size"), f"mini-batch, batch_size 2048: {n:,} nodes in 10K–1M")
    else:
        mini_batch, batch_size = True, 8192
        note(("mini_batch", "batch_size"), f"mini-batch, batch_size 8192: {n:,} nodes > 1M")
    probe = settings.model_copy(update={"fan_out": fan, "batch_size": batch_size})
    est = estimate(info, probe)
    budget = device.budget
    where = f"{device.name} budget {fmt_bytes(budget)}"
    if not mini_batch and est["full_batch_train"].total > budget:
        mini_batch, batch_size = True, 2048
        note(
            ("mini_batch", "batch_size"),
            f"mini-batch instead: full-batch training needs "
            f"{fmt_bytes(est['full_batch_train'].total)} > {where}",
        )
    elif mini_batch and est["full_batch_train"].total > budget:
        reasons.append(
            f"full-batch training would need {fmt_bytes(est['full_batch_train'].total)} "
            f"> {where}: needs mini-batch"
        )
    # Shrink the batch until one sampled batch fits (never below 256).
    while mini_batch and batch_size > 256:
        est = estimate(info, probe.model_copy(update={"batch_size": batch_size}))
        if est["mini_batch_train"].total <= budget:
            break
        batch_size //= 2
        note(("batch_size",), f"batch_size {batch_size}: a larger sampled batch exceeds {where}")
    infer_batch = 4 * batch_size
    note(
        ("infer_batch_size",),
        f"infer_batch_size {infer_batch}: 4 × the training batch (no autograd)",
    )
    full_infer = estimate(info, probe)["full_batch_infer"].total
    force_full = n <= LARGE_GRAPH
    if force_full and full_infer > budget:
        force_full = False
        note(
            ("force_full_batch_inference", "infer_fan_out"),
            f"force_full_batch_inference false: full-batch inference needs "
            f"{fmt_bytes(full_infer)} > {where}",
        )
    elif force_full:
        note(
            ("force_full_batch_inference", "infer_fan_out"),
            f"infer_fan_out -1, force_full_batch_inference: {n:,} nodes ≤ 1M",
        )
    else:
        note(
            ("force_full_batch_inference", "infer_fan_out"),
            f"infer_fan_out -1, layer-wise mini-batch inference: {n:,} nodes > 1M",
        )
    allow_cpu = device.kind == "cuda" and full_infer > budget
    if allow_cpu:
        note(
            ("allow_cpu_fallback",), "allow_cpu_fallback: full-batch inference does not fit the GPU"
        )
    storage = "memory"
    host_need = est["mini_batch_train"].host_total
    if host_need > device.host_free_bytes * USABLE_FRACTION:
        storage = "disk"
        how = (
            "it is already an on-disk store"
            if info.source == "store"
            else "convert once with `agc convert`"
        )
        reasons.append(
            f"storage disk: features + topology need {fmt_bytes(host_need)} > free RAM "
            f"{fmt_bytes(device.host_free_bytes)}; {how}"
        )
    if device.kind == "cuda" and device.count > 1:
        reasons.append(
            f"{device.count} GPUs visible: train data-parallel with --nproc-per-node {device.count}"
        )
    rec = {
        "dataset": info.name,
        "model": settings.model,
        "gnn_type": settings.gnn_type,
        "hidden_channels": settings.hidden_channels,
        "num_layers": layers,
        "mini_batch": mini_batch,
        "batch_size": batch_size,
        "fan_out": [fan] * layers,
        "infer_batch_size": infer_batch,
        "infer_fan_out": -1,
        "force_full_batch_inference": force_full,
        "allow_cpu_fallback": allow_cpu or settings.allow_cpu_fallback,
    }
    if storage == "disk":
        rec["storage"] = "disk"
    chosen = settings.model_copy(update={"fan_out": fan, "batch_size": batch_size})
    final = estimate(info, chosen)
    estimates = {k: v for k, v in final.items() if isinstance(v, MemoryEstimate)}
    decisions = {key: Decision(rec[key], reason) for key, reason in why.items() if key in rec}
    from agc_cli.engine.epoch_time import device_rates, estimate_epoch_time

    times = estimate_epoch_time(info, chosen, device_rates(device.kind))
    return Plan(estimates, device, Recommendation(rec, reasons, storage, decisions), times)


def fmt_bytes(n: float) -> str:
    """Human-readable size with binary units (``1.5 GB`` means 1.5 GiB)."""
    if n <= 0:
        return "0 B"
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    i = min(int(math.log(n, 1024)), len(units) - 1)
    value = n / 1024**i
    return f"{value:.0f} {units[i]}" if i == 0 else f"{value:.1f} {units[i]}"
