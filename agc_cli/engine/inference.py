"""Embeddings for all nodes (or a subset) with a fallback chain.

Chain, each step reported: full-batch on the device (when ``force_full_batch_inference`` or
the model was trained full-batch) → full-batch on the CPU (when ``allow_cpu_fallback`` and
the device is a GPU) → layer-wise mini-batch on the device. On out-of-memory in mini-batch
mode the batch size halves (floor 32, bounded retries).

Exact inference (``infer_fan_out = -1``) is layer-wise: every needed node goes through layer 1
in batches, then layer 2, ... — cost O(layers × edges), never the exponential k-hop
expansion. ``infer_fan_out > 0`` samples that many neighbours per node and layer instead.

Layer 1 transforms before it propagates (``X W``, row by row). When that transform is narrower
than the features, it is computed once per needed node in one pass over the features in node
order (sequential reads of an on-disk store) and the batches gather transformed rows;
otherwise every batch reads its sources' raw features, i.e. each node's features once per
batch it neighbours, which for a store larger than RAM means random reads of ~degree times
the feature file.

Those per-node intermediates (the first transform, each layer's outputs) live in memory. When
they would not fit (more than :data:`SPILL_FRACTION` of the available RAM, or ``spill=True``)
they are written in node order to a scratch directory (under ``TMPDIR``, removed afterwards)
and read back with the store's positioned reads: no mapping, so they do not count towards the
process's resident memory, but a batch's scattered rows cost one read each (several times
slower than gathering from memory).

With a ``sink`` (:class:`EmbeddingsFile`), the final embeddings go to it batch by batch, in
node order, as the last layer produces them: they are never all in memory.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agc_cli.data.graph import Graph
from agc_cli.data.store import RowReader
from agc_cli.engine.memory import MemoryMonitor, PeakMemory
from agc_cli.errors import AgcError, UsageError
from agc_cli.models.base import ClusteringModel
from agc_cli.models.batch import Block, GraphBatch
from agc_cli.models.sparse import SparseMatrix
from agc_cli.sampling import derive_seed, sample_without_replacement
from agc_cli.utils.npy import NpyWriter

MIN_BATCH = 32
SPILL_FRACTION = 0.8  # of the available RAM that in-memory intermediates may take
MAX_HALVINGS = 6

# Called before each unit of work with (stage, batch size); tests raise an OOM error here to
# walk the fallback chain on a CPU.
FaultHook = Callable[[str, int], None]


class InferenceOOM(AgcError):
    """Every step of the fallback chain ran out of memory."""

    exit_code = 1


class EmbeddingsFile:
    """Embeddings written to an ``.npy`` (``[rows, dim]``) block by block as inference produces
    them, in node order; published atomically by :meth:`commit`.

    Args:
        path: the ``.npy`` to write.
        rows: the number of nodes embedded.
        dtype: ``"float32"`` or ``"float16"`` (half the file; values beyond float16's range
            are refused).
    """

    def __init__(self, path: Path, rows: int, dtype: str = "float32"):
        if dtype not in ("float32", "float16"):
            raise UsageError(f"embeddings dtype: expected float32 or float16, got {dtype!r}")
        self.path = Path(path)
        self.rows = rows
        self.dtype = np.dtype(dtype)
        self.dim: int | None = None
        self._writer: NpyWriter | None = None

    def write(self, block: Tensor) -> None:
        """Append the embeddings of the next ``len(block)`` nodes."""
        values = block.detach().float().cpu().numpy()
        largest = float(np.finfo(np.float16).max)
        if self.dtype == np.float16 and values.size and float(np.abs(values).max()) > largest:
            raise UsageError(
                f"float16 embeddings: values reach {float(np.abs(values).max()):.4g}, beyond "
                f"float16's range ({largest:g}); write float32"
            )
        if self._writer is None:
            self.dim = int(values.shape[1])
            self._writer = NpyWriter(self.path, (self.rows, self.dim), self.dtype)
        self._writer.write(values)

    def reset(self) -> None:
        """Drop what was written (inference starts over, e.g. with a smaller batch)."""
        if self._writer is not None:
            self._writer.discard()
            self._writer = None

    def commit(self) -> Path:
        """Publish the file (every row written)."""
        if self._writer is None:
            raise UsageError(f"{self.path}: no embeddings were written")
        path = self._writer.commit()
        self._writer = None
        return path


@dataclass
class InferenceResult:
    # [num_nodes or len(node_ids), dim], float32 on the CPU; None when they went to a sink.
    embeddings: Tensor | None
    node_ids: Tensor  # global id of each row
    mode: str  # "full-batch (cuda)", "full-batch (cpu)", "layer-wise mini-batch (cuda)", ...
    seconds: float
    peak: PeakMemory
    events: list[str] = field(default_factory=list)
    batch_size: int | None = None


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (CUDA or host allocator)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(exc, (RuntimeError, MemoryError)):
        text = str(exc).lower()
        return isinstance(exc, MemoryError) or any(
            s in text for s in ("out of memory", "can't allocate memory", "defaultcpuallocator")
        )
    return False


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def infer(
    model: ClusteringModel,
    graph: Graph,
    device: torch.device,
    *,
    full_batch: bool,
    allow_cpu_fallback: bool,
    batch_size: int,
    fan_out: int = -1,
    nodes: Tensor | None = None,
    seed: int = 0,
    report: Callable[[str], None] | None = None,
    fault_hook: FaultHook | None = None,
    sink: EmbeddingsFile | None = None,
) -> InferenceResult:
    """Embeddings of ``nodes`` (default: every node) through the fallback chain.

    Args:
        full_batch: try full-batch first (``force_full_batch_inference`` or full-batch training).
        allow_cpu_fallback: on a GPU, try full-batch on the CPU before mini-batch.
        batch_size: destination nodes per layer-wise batch (halved on out-of-memory).
        fan_out: ``-1`` exact; ``k > 0`` samples ``k`` neighbours per node and layer.
        report: receives one line per decision (the CLI prints them).
        sink: receives the embeddings of every node in node order instead (``nodes`` must be
            None); layer-wise, the result's ``embeddings`` is then None.
    """
    if sink is not None and nodes is not None:
        raise UsageError("streamed embeddings are written for every node, not a subset")
    events: list[str] = []

    def say(text: str) -> None:
        events.append(text)
        if report is not None:
            report(text)

    hook = fault_hook or (lambda stage, size: None)
    model.eval()
    t0 = time.perf_counter()
    with MemoryMonitor(device) as mon:
        emb, mode, used_batch = _chain(
            model, graph, device, full_batch, allow_cpu_fallback, batch_size, fan_out, nodes,
            seed, say, hook, sink,
        )  # fmt: skip
    ids = nodes if nodes is not None else torch.arange(graph.num_nodes)
    return InferenceResult(emb, ids, mode, time.perf_counter() - t0, mon.peak, events, used_batch)


def _chain(
    model, graph, device, full_batch, allow_cpu, batch_size, fan_out, nodes, seed, say, hook,
    sink=None,
):  # fmt: skip
    cpu = torch.device("cpu")
    if full_batch:
        targets = [device] + ([cpu] if allow_cpu and device.type != "cpu" else [])
        for target in targets:
            try:
                hook("full", graph.num_nodes)
                emb = _full_batch(model, graph, target)
                if target != device:
                    model.to(device)
                out = emb if nodes is None else emb[nodes]
                if sink is not None:  # in memory already: written in blocks all the same
                    for start in range(0, out.shape[0], batch_size):
                        sink.write(out[start : start + batch_size])
                return out, f"full-batch ({target.type})", None
            except Exception as exc:
                if not is_oom(exc):
                    raise
                say(f"full-batch inference on {target.type} ran out of memory")
                model.to(device)
                _free_cache(target)
        say(f"falling back to layer-wise mini-batch inference on {device.type}")
    size = batch_size
    for _ in range(MAX_HALVINGS + 1):
        try:
            if sink is not None:
                sink.reset()
            emb = layerwise(model, graph, device, size, fan_out, nodes, seed, hook, sink=sink)
            kind = "exact" if fan_out < 0 else f"fan-out {fan_out}"
            return emb, f"layer-wise mini-batch ({device.type}, {kind})", size
        except Exception as exc:
            if not is_oom(exc) or size <= MIN_BATCH:
                if is_oom(exc):
                    raise InferenceOOM(
                        f"inference ran out of memory even with batch size {size}; "
                        "use --device cpu or a smaller model"
                    ) from None
                raise
            _free_cache(device)
            new = max(size // 2, MIN_BATCH)
            say(f"out of memory with infer_batch_size {size}; retrying with {new}")
            size = new
    raise InferenceOOM(f"inference ran out of memory after {MAX_HALVINGS} halvings")


@torch.no_grad()
def _full_batch(model: ClusteringModel, graph: Graph, device: torch.device) -> Tensor:
    model.to(device)
    batch = GraphBatch.full(graph, device)
    return model.embed(batch).float().cpu()


def _neighbourhood(
    colptr: Tensor, row: Tensor, dst: Tensor, fan_out: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """In-edges of ``dst`` (all, or ``fan_out`` sampled per node) as (source ids, target
    positions in ``dst``, per-target edge counts)."""
    # index_select: several times faster than tensor[idx] for 1-D gathers on the CPU.
    starts = colptr.index_select(0, dst)
    counts = colptr.index_select(0, dst + 1) - starts
    if fan_out > 0 and generator is not None:
        k = min(fan_out, int(counts.max()) if counts.numel() else 0)
        if k == 0:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty, torch.zeros_like(counts)
        picks = sample_without_replacement(counts, k, generator)  # [n, k], -1 padding
        valid = picks >= 0
        target = torch.arange(dst.numel()).unsqueeze(1).expand_as(picks)[valid]
        pos = (starts.unsqueeze(1) + picks.clamp(min=0))[valid]
        return row.index_select(0, pos).long(), target, valid.sum(1)
    total = int(counts.sum())
    target = torch.repeat_interleave(torch.arange(dst.numel()), counts)
    offsets = torch.cumsum(counts, 0) - counts
    pos = (starts - offsets).index_select(0, target) + torch.arange(total)
    return row.index_select(0, pos).long(), target, counts


def _relabel(position: Tensor, dst: Tensor, src: Tensor) -> Tensor:
    """Local ids of a batch: ``dst`` first, then its other sources, in ascending id order;
    ``position[g]`` becomes node ``g``'s local id (the caller resets it to -1 afterwards).

    A lookup table instead of ``unique`` and ``isin`` (sorts of every sampled edge, 40% of
    layer-wise inference on a 2M-node store): sources outside ``dst`` are deduplicated by
    scattering their edge index into the table and keeping the edges whose index stayed.
    """
    nd = dst.numel()
    position[dst] = torch.arange(nd)
    outside = src[position.index_select(0, src) < 0]
    slot = torch.arange(nd, nd + outside.numel())
    position[outside] = slot  # of repeated ids, one write stays
    extra = outside[position.index_select(0, outside) == slot].sort().values
    position[extra] = torch.arange(nd, nd + extra.numel())
    return torch.cat([dst, extra])


def _needed_nodes(graph: Graph, nodes: Tensor | None, layers: int) -> list[Tensor]:
    """Sorted global ids whose layer-``i`` output is needed (index ``layers - 1`` = targets)."""
    if nodes is None:
        everything = torch.arange(graph.num_nodes)
        return [everything] * layers
    need = [torch.unique(nodes.long())]
    for _ in range(layers - 1):
        src, _, _ = _neighbourhood(graph.colptr, graph.row, need[0], -1, None)
        need.insert(0, torch.unique(torch.cat([need[0], src])))
    return need


@torch.no_grad()
def layerwise(
    model: ClusteringModel,
    graph: Graph,
    device: torch.device,
    batch_size: int,
    fan_out: int = -1,
    nodes: Tensor | None = None,
    seed: int = 0,
    fault_hook: FaultHook | None = None,
    spill: bool | None = None,
    sink: EmbeddingsFile | None = None,
) -> Tensor | None:
    """Layer-by-layer inference in batches of destination nodes (see module docstring).

    ``spill``: keep per-node intermediates in scratch files (``None``: when they would take
    more than :data:`SPILL_FRACTION` of the available RAM). ``sink``: receives the final
    embeddings of every node batch by batch (``nodes`` must be None); nothing is returned.
    """
    if sink is not None and nodes is not None:
        raise UsageError("streamed embeddings are written for every node, not a subset")
    encoder = model.encoder
    if nodes is None and fan_out < 0 and device.type == "cpu" and not spill:
        tables = _table_bytes(encoder, graph)
        if tables is not None and (spill is False or tables <= SPILL_FRACTION * _available()):
            return _every_node(model, graph, device, batch_size, fault_hook, sink)
    need = _needed_nodes(graph, nodes, encoder.num_layers)
    # Layer 0's transform of every node whose features it reads (need[0] and its neighbours),
    # in one ordered pass, when it is narrower than the features (cheaper to keep and gather).
    width = _first_transform_width(encoder, graph)
    inputs = need[0]
    if width is not None and nodes is not None:
        src, _, _ = _neighbourhood(graph.colptr, graph.row, need[0], -1, None)
        inputs = torch.unique(torch.cat([need[0], src]))
    if spill is None:  # at most: the transform plus two layers' outputs for the most rows
        rows = max([inputs.numel() if width else 0, *(ids.numel() for ids in need)])
        # Layer outputs: the hidden width (propagation alone keeps the feature width).
        hidden = int(getattr(encoder, "hidden_channels", 0) or graph.num_features)
        spill = 4 * rows * ((width or 0) + 2 * hidden) > SPILL_FRACTION * _available()
    with contextlib.ExitStack() as stack:
        scratch = (
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agc-infer-")))
            if spill
            else None
        )
        return _layerwise(
            model, graph, device, batch_size, fan_out, nodes, seed, fault_hook, need,
            (inputs, width), scratch, sink,
        )  # fmt: skip


def _layerwise(
    model: ClusteringModel,
    graph: Graph,
    device: torch.device,
    batch_size: int,
    fan_out: int,
    nodes: Tensor | None,
    seed: int,
    fault_hook: FaultHook | None,
    need: list[Tensor],
    first: tuple[Tensor, int | None],
    scratch: Path | None,
    sink: EmbeddingsFile | None = None,
) -> Tensor | None:
    """:func:`layerwise` with its plan: the nodes each layer outputs, layer 0's transformed
    inputs and width (``None``: raw rows per batch), the scratch folder (``None``: memory),
    and where the final embeddings go (``None``: returned)."""
    encoder = model.encoder
    layers = encoder.num_layers
    hook = fault_hook or (lambda stage, size: None)
    model.to(device)
    inputs, width = first
    degree = graph.degree().float()
    x_sparse = SparseMatrix.from_csr(graph.x) if graph.sparse_features else None
    # Layer inputs live on the CPU, indexed by global id through `position`.
    position = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    prev: Tensor | None = None  # previous layer's outputs, rows aligned with need[i - 1]
    prev_ids: Tensor | None = None
    # Encoders whose output combines every layer (jumping knowledge) say so; the others only
    # need the last layer, so earlier layers' outputs are dropped as soon as they are used.
    keep_all = getattr(encoder, "needs_all_layers", encoder.jk in ("cat", "max"))
    outputs: list[tuple[Tensor, Tensor]] = []  # per layer (ids, outputs) when keep_all
    # The last layer's batches go straight to the sink (read out row by row) when nothing
    # combines them with earlier layers.
    stream_last = sink is not None and not keep_all
    t0 = None
    every = inputs.numel() == graph.num_nodes
    if width is not None:
        t0 = _streamed_transform(encoder, graph, x_sparse, inputs, width, device, batch_size,
                                 hook, scratch)  # fmt: skip
    for i in range(layers):
        ids = need[i]
        out = None
        generator = torch.Generator().manual_seed(derive_seed(seed, i)) if fan_out > 0 else None
        for start in range(0, ids.numel(), batch_size):
            dst = ids[start : start + batch_size]
            hook(f"layer{i}", dst.numel())
            src, target, counts = _neighbourhood(graph.colptr, graph.row, dst, fan_out, generator)
            local = _relabel(position, dst, src)
            edge_index = torch.stack([position[src], target]).to(device)
            position[local] = -1
            block = Block(edge_index, dst.numel(), degree[local].to(device), counts.to(device))
            if i == 0 and t0 is not None:
                # `inputs` is sorted: a transformed node's row is its rank there (its id when
                # every node was transformed).
                rank = local if every else torch.searchsorted(inputs, local)
                t_src = t0.take(rank).to(device)
                h = encoder.layer_forward_transformed(0, t_src, block).float().cpu()
            else:
                if i == 0:
                    # feature_rows: positioned reads for stores, float32 whatever is stored.
                    x_src = (
                        x_sparse.rows(local).to(device)
                        if x_sparse is not None
                        else graph.feature_rows(local).float().to(device)
                    )
                else:
                    position[prev_ids] = torch.arange(prev_ids.numel())
                    x_src = prev.take(position[local]).to(device)
                    position[prev_ids] = -1
                h = encoder.layer_forward(i, x_src, block).float().cpu()
            if stream_last and i == layers - 1:
                sink.write(model.readout(h.to(device)).float().cpu())
                continue
            if out is None:
                out = Rows(ids.numel(), h.shape[1], scratch and scratch / f"layer{i}.f32")
            out.append(h)  # destination batches come in the order of `ids`
        if out is None:  # streamed to the sink
            return None
        prev, prev_ids = out.done(), ids
        t0 = None
        if keep_all:
            outputs.append((ids, out))
    final_ids = need[-1]
    if sink is not None:  # every node: each layer's rows are in node order
        for start in range(0, graph.num_nodes, batch_size):
            rows = final_ids[start : start + batch_size]
            h = encoder.combine([out.take(rows) for _, out in outputs])
            sink.write(model.readout(h.to(device)).float().cpu())
        return None
    if keep_all:
        aligned = []
        for ids, out in outputs:
            position[ids] = torch.arange(ids.numel())
            aligned.append(out.take(position[final_ids]))
            position[ids] = -1
        h = encoder.combine(aligned)
    else:
        h = prev.all()
    emb = model.readout(h.to(device)).float().cpu()
    if nodes is not None:
        # need[-1] is sorted unique; map back to the caller's order.
        position[final_ids] = torch.arange(final_ids.numel())
        emb = emb.index_select(0, position[nodes.long()])
        position[final_ids] = -1
    return emb


def _table_bytes(encoder, graph: Graph) -> int | None:
    """Bytes of the per-node tables :func:`_every_node` holds at once (a layer's transform
    parts, its input and its output, float32), or ``None`` when the encoder cannot
    propagate from whole tables."""
    if not getattr(encoder, "propagates_from_tables", False):
        return None
    widest = max(sum(conv.parts.values()) for conv in encoder.convs)
    hidden = int(encoder.hidden_channels)
    layers = encoder.num_layers if encoder.jk in ("cat", "max") else 2
    return 4 * graph.num_nodes * (widest + layers * hidden)


def _range_block(colptr: Tensor, row: Tensor, start: int, stop: int, degree: Tensor) -> Block:
    """The exact block of destinations ``start .. stop - 1`` with global source ids: their
    in-edges are one contiguous slice of the CSC arrays (read in file order from a store)."""
    lo, hi = int(colptr[start]), int(colptr[stop])
    counts = colptr[start + 1 : stop + 1] - colptr[start:stop]
    target = torch.repeat_interleave(torch.arange(stop - start), counts, output_size=hi - lo)
    edge_index = torch.stack([row[lo:hi].long(), target])
    return Block(edge_index, stop - start, degree, counts, dst_offset=start)


def _every_node(
    model: ClusteringModel,
    graph: Graph,
    device: torch.device,
    batch_size: int,
    fault_hook: FaultHook | None,
    sink: EmbeddingsFile | None,
) -> Tensor | None:
    """Exact layer-wise inference of every node from whole per-node tables.

    Each layer first transforms every node's input in node order (sequential reads), keeping
    one contiguous table per weight part; then each batch of consecutive destinations reads
    its in-edges as one slice of the CSC arrays and propagates straight from those tables by
    global id. Nothing is relabelled or gathered into a local copy, which is what the general
    path spends most of its time on.
    """
    encoder = model.encoder
    layers = encoder.num_layers
    hook = fault_hook or (lambda stage, size: None)
    model.to(device)
    n = graph.num_nodes
    degree = graph.degree().float()
    x_sparse = SparseMatrix.from_csr(graph.x) if graph.sparse_features else None
    keep_all = encoder.jk in ("cat", "max")
    outputs: list[Tensor] = []
    prev: Tensor | None = None
    for i in range(layers):
        conv = encoder.convs[i]
        parts = {name: torch.empty(n, width) for name, width in conv.parts.items()}
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            hook(f"layer{i} transform", stop - start)
            if i > 0:
                x = prev[start:stop]
            elif x_sparse is not None:
                x = x_sparse.rows(torch.arange(start, stop))
            else:
                # feature_rows: positioned reads for stores, float32 whatever is stored.
                x = graph.feature_rows(torch.arange(start, stop)).float()
            t = encoder.transform(i, x.to(device))
            for name, table in parts.items():
                table[start:stop] = conv.part(t, name)
        prev = None  # the transform replaces the input (kept in `outputs` when combined)
        last = i == layers - 1
        out: Tensor | None = None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            hook(f"layer{i}", stop - start)
            block = _range_block(graph.colptr, graph.row, start, stop, degree)
            h = encoder.layer_forward_transformed(i, parts, block).float()
            if last and sink is not None and not keep_all:
                sink.write(model.readout(h).float().cpu())
                continue
            if out is None:
                out = torch.empty(n, h.shape[1])
            out[start:stop] = h
        del parts
        prev = out
        if keep_all:
            outputs.append(out)
    if sink is not None:
        if keep_all:
            for start in range(0, n, batch_size):
                h = encoder.combine([o[start : start + batch_size] for o in outputs])
                sink.write(model.readout(h).float().cpu())
        return None
    h = encoder.combine(outputs) if keep_all else prev
    return model.readout(h).float().cpu()


def _available() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _first_transform_width(encoder, graph: Graph) -> int | None:
    """Width of layer 0's transform when it is narrower than the features, else ``None``."""
    weight = getattr(getattr(encoder, "convs", [None])[0], "weight", None)
    if not hasattr(encoder, "layer_forward_transformed") or weight is None:
        return None
    width = int(weight.shape[1])
    return width if width < graph.num_features else None


def _streamed_transform(
    encoder,
    graph: Graph,
    x_sparse: SparseMatrix | None,
    ids: Tensor,
    width: int,
    device: torch.device,
    batch_size: int,
    hook: FaultHook,
    scratch: Path | None,
) -> Rows:
    """``transform(0, x)`` (``width`` columns) of the rows ``ids`` (sorted), read in order."""
    chunk = batch_size  # halves with the batch size on out-of-memory
    out = Rows(ids.numel(), width, scratch and scratch / "transform0.f32")
    for start in range(0, ids.numel(), chunk):
        rows = ids[start : start + chunk]
        hook("layer0 transform", rows.numel())
        x = x_sparse.rows(rows) if x_sparse is not None else graph.feature_rows(rows).float()
        out.append(encoder.transform(0, x.to(device)).float().cpu())
    return out.done()


class Rows:
    """A float32 ``[rows, width]`` array filled in order by :meth:`append`, in memory or, with
    ``path``, in a file (written sequentially, read back with positioned reads: no mapping, so
    neither counts towards the process's resident memory)."""

    def __init__(self, rows: int, width: int, path: Path | None = None):
        self.shape = (rows, width)
        self.path = path
        self.filled = 0
        self._tensor = torch.empty(rows, width) if path is None else None
        self._file = open(path, "wb") if path is not None else None  # noqa: SIM115
        self._reader: RowReader | None = None

    def append(self, block: Tensor) -> None:
        n = block.shape[0]
        if self._file is not None:
            block.numpy().astype(np.float32, copy=False).tofile(self._file)
        else:
            self._tensor[self.filled : self.filled + n] = block
        self.filled += n

    def done(self) -> Rows:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._reader = RowReader(self.path, 0, self.shape, np.dtype(np.float32))
        return self

    def take(self, index: Tensor) -> Tensor:
        if self._reader is None:
            return self._tensor.index_select(0, index)
        return torch.from_numpy(self._reader.take(index.numpy()))

    def all(self) -> Tensor:
        if self._reader is None:
            return self._tensor
        return torch.from_numpy(np.fromfile(self.path, np.float32).reshape(self.shape))
