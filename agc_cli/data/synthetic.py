"""Synthetic attributed graphs with planted clusters: a degree-corrected contextual SBM.

The model, for ``nodes`` nodes split into ``clusters`` planted clusters:

* **Clusters.** Sizes are balanced: they differ by at most one node (the first
  ``nodes % clusters`` clusters get the extra node). Clusters are assigned to node ids by a
  random permutation, so a node's id says nothing about its cluster. ``y`` is the cluster
  (int64) and ``num_classes == clusters``.
* **Edges.** Exactly ``round(nodes * degree / 2)`` distinct undirected edges, of which
  ``round(homophily * that)`` join two nodes of the same cluster (split over clusters in
  proportion to their size) and the rest join different clusters (each pair of clusters in
  proportion to the product of their sizes). Both endpoints of an edge are drawn in proportion
  to the nodes' propensities, within the chosen cluster(s); self-loops and duplicate pairs are
  discarded and drawing continues in rounds until the counts are met, so the average degree
  (directed edges per node) and the edge homophily come out as requested, not merely in
  expectation.
* **Degree skew.** Propensities are lognormal, ``exp(skew * z)`` with ``z ~ N(0, 1)``;
  ``skew = 0`` gives every node the same propensity (an ordinary SBM). They are quantised to
  1/32 of the mean with unbiased random rounding and floored at 1/32 of the mean, so every node
  can get edges; in sparse graphs a few still get none by chance (about 20 of ``sbm-small``'s
  9,600 nodes).
* **Features.** ``x[i] = snr * mu[y[i]] + noise``, float32, with ``mu[c]`` a uniformly random
  unit direction per cluster and standard Gaussian noise. ``snr`` is the distance of a cluster
  centre from the origin in noise standard deviations, whatever the number of features.

The graph is undirected (both directions stored), without self-loops or duplicate edges, in the
sorted CSC form :func:`agc_cli.data.graph.to_csc` produces. Generation is deterministic per seed
(bit-identical graphs) and vectorised. It works one cluster at a time: each cluster's
incoming edges are sorted and kept as int32 sources grouped by cluster, then copied into the
final ``row`` in node-id order, so the peak memory stays close to the final graph's size
(``sbm-reddit``: 1.48 GB final, peak RSS about 1.3x that including torch itself; see
``benchmarks/bench_synthetic.py``). :func:`build` writes the same graph into arrays the caller
provides: the on-disk store passes memory-mapped files, so graphs larger than RAM can be made.

Presets (:data:`PRESETS`): ``sbm-small`` (the default dataset: 9,600 nodes — full-batch by the
< 10K rule — raw features alone do not cluster but graph-smoothed ones do), ``sbm-reddit`` and
``sbm-products`` (the sizes of Reddit and ogbn-products). :func:`parse_synthetic` reads these
names and spec strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from agc_cli.data.graph import Graph
from agc_cli.errors import DataError, SettingsError, UsageError

# Mean number of sampling-table slots per node: the propensity resolution (1/32 of the mean).
_SLOTS_PER_NODE = 32
# At most this fraction of a block's node pairs may be edges: beyond it, rejection of duplicates
# stops converging in reasonable time, and such a dense "SBM" is not a useful test graph anyway.
_MAX_DENSITY = 0.5
_MAX_ROUNDS = 50
# Endpoint draws and final-row copies are done this many at a time, to bound temporary memory.
_CHUNK = 1 << 22
# Per-stage tags mixed into the seed, so every stage and cluster has its own random stream.
_LABELS, _PROPENSITY, _CROSS, _WITHIN, _FEATURES = range(5)

DEFAULT_PRESET = "sbm-small"


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic graph; validated on construction (``SettingsError`` otherwise).

    Attributes:
        nodes: number of nodes.
        clusters: number of planted clusters (the label classes).
        degree: average degree, i.e. directed edges per node after deduplication.
        homophily: fraction of edges that join two nodes of the same cluster.
        features: feature dimension.
        snr: distance of each cluster centre from the origin, in noise standard deviations.
        skew: standard deviation of the log-propensities; 0 means every node alike.
        seed: random seed; the same spec always gives the same graph.
        name: display name of the graph (not part of the spec's identity).
    """

    nodes: int
    clusters: int
    degree: float
    homophily: float
    features: int
    snr: float
    skew: float = 0.0
    seed: int = 0
    name: str = field(default="sbm", compare=False)

    def __post_init__(self) -> None:
        problems = _range_problems(self)
        if not problems:
            problems = _density_problems(self)
        if problems:
            raise SettingsError(problems)


def _range_problems(spec: SyntheticSpec) -> list[tuple[str, str]]:
    """Type and range problems of every field, each naming its field."""
    problems = []
    for key, low, high in (
        ("nodes", 2, 2**31 - 1),  # int32 node ids in the grouped edge buffer
        ("clusters", 1, None),
        ("features", 1, None),
        ("seed", 0, 2**63 - 1),
    ):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((key, f"must be an integer, got {value!r}"))
        elif value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            problems.append((key, f"must be {bounds}, got {value}"))
    for key, low, high in (
        ("degree", 0.0, None),
        ("homophily", 0.0, 1.0),
        ("snr", 0.0, None),
        ("skew", 0.0, 2.0),  # beyond ~2 a handful of hubs would need more partners than exist
    ):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((key, f"must be a number, got {value!r}"))
        elif not math.isfinite(value) or value < low or (high is not None and value > high):
            bounds = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
            problems.append((key, f"must be {bounds}, got {value}"))
    if not problems and spec.clusters > spec.nodes // 2:
        problems.append(
            ("clusters", f"must be at most nodes / 2 = {spec.nodes // 2}, got {spec.clusters}")
        )
    return problems


def _density_problems(spec: SyntheticSpec) -> list[tuple[str, str]]:
    """Whether the requested edges fit in the node pairs available (``_MAX_DENSITY``)."""
    sizes = _cluster_sizes(spec.nodes, spec.clusters)
    within, cross = _edge_targets(spec)
    pairs = sizes * (sizes - 1) // 2
    crowded = torch.nonzero(within > _MAX_DENSITY * pairs).flatten()
    problems = []
    if crowded.numel():
        c = int(crowded[0])
        problems.append(
            (
                "degree",
                f"degree={spec.degree:g} with homophily={spec.homophily:g} needs "
                f"{int(within[c])} same-cluster edges in a cluster of {int(sizes[c])} nodes, "
                f"more than {_MAX_DENSITY:.0%} of its {int(pairs[c])} node pairs; lower degree or "
                "use fewer clusters",
            )
        )
    cross_pairs = (spec.nodes**2 - int((sizes * sizes).sum())) // 2
    if cross > _MAX_DENSITY * cross_pairs:
        problems.append(
            (
                "homophily",
                f"degree={spec.degree:g} with homophily={spec.homophily:g} needs {cross} "
                f"cross-cluster edges, more than {_MAX_DENSITY:.0%} of the {cross_pairs} "
                f"cross-cluster node pairs of {spec.clusters} cluster(s); raise homophily or "
                "lower degree",
            )
        )
    return problems


def _cluster_sizes(nodes: int, clusters: int) -> Tensor:
    """Balanced sizes: the first ``nodes % clusters`` clusters get one extra node."""
    return nodes // clusters + (torch.arange(clusters) < nodes % clusters).long()


def _exclusive_cumsum(values: Tensor) -> Tensor:
    return torch.cumsum(values, 0) - values


def _edge_targets(spec: SyntheticSpec) -> tuple[Tensor, int]:
    """Undirected same-cluster edge count per cluster, and the cross-cluster edge count."""
    total = math.floor(spec.nodes * spec.degree / 2 + 0.5)
    within_total = math.floor(spec.homophily * total + 0.5)
    sizes = _cluster_sizes(spec.nodes, spec.clusters)
    # Largest-remainder split, in proportion to size, so the counts add up exactly.
    share = sizes.double() * within_total / spec.nodes
    within = share.floor().long()
    short = within_total - int(within.sum())
    within[torch.argsort(share - within, descending=True, stable=True)[:short]] += 1
    return within, total - within_total


# Defaults, and what a bare "sbm:" spec starts from. Published sizes: Reddit 232,965 nodes,
# 114.6M directed edges, 602 features, 41 classes, edge homophily ~0.76; ogbn-products 2,449,029
# nodes, 123.7M directed edges, 100 features, 47 classes, edge homophily ~0.81. Both have
# heavy-tailed degrees, hence skew 1 (degree standard deviation ~1.3x the mean).
PRESETS: dict[str, SyntheticSpec] = {
    "sbm-small": SyntheticSpec(
        nodes=9_600,
        clusters=10,
        degree=12.0,
        homophily=0.8,
        features=128,
        snr=1.0,
        skew=0.5,
        seed=0,
        name="sbm-small",
    ),
    "sbm-reddit": SyntheticSpec(
        nodes=232_965,
        clusters=41,
        degree=492.0,
        homophily=0.76,
        features=602,
        snr=1.0,
        skew=1.0,
        seed=0,
        name="sbm-reddit",
    ),
    "sbm-products": SyntheticSpec(
        nodes=2_449_029,
        clusters=47,
        degree=50.52,
        homophily=0.81,
        features=100,
        snr=1.0,
        skew=1.0,
        seed=0,
        name="sbm-products",
    ),
}

_INT_FIELDS = ("nodes", "clusters", "features", "seed")
_FLOAT_FIELDS = ("degree", "homophily", "snr", "skew")


def parse_synthetic(name: str) -> SyntheticSpec | None:
    """The spec a dataset name stands for, or ``None`` if it is not a synthetic name.

    Synthetic names (case-insensitive) are a preset (``sbm-small``, ``sbm-reddit``,
    ``sbm-products``), a preset with overrides (``sbm-small:seed=3,snr=2``) or ``sbm:`` followed
    by parameters (``sbm:nodes=5000,clusters=5,degree=10,homophily=0.8,features=32,snr=1.0,
    skew=0.5,seed=1``); parameters left out take their ``sbm-small`` values.

    Raises:
        UsageError: the name is synthetic but names an unknown preset or parameter, or a value
            is malformed or out of range.
    """
    text = re.sub(r"\s+", "", name).lower()
    base, _, params = text.partition(":")
    if base != "sbm" and not base.startswith("sbm-"):
        return None
    if base != "sbm" and base not in PRESETS:
        raise UsageError(
            f"unknown synthetic dataset {base!r}: use one of {', '.join(PRESETS)}, "
            "or sbm:nodes=...,clusters=...,degree=...,homophily=...,features=...,snr=..."
        )
    start = PRESETS[DEFAULT_PRESET if base == "sbm" else base]
    overrides: dict[str, int | float] = {}
    problems: list[tuple[str, str]] = []
    for item in filter(None, params.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            problems.append((key, f"expected key=value, got {item!r}"))
        elif key not in _INT_FIELDS + _FLOAT_FIELDS:
            known = ", ".join(_INT_FIELDS + _FLOAT_FIELDS)
            problems.append((key, f"unknown synthetic-graph parameter; known: {known}"))
        elif key in overrides:
            problems.append((key, "given more than once"))
        else:
            parsed = _parse_number(value, integer=key in _INT_FIELDS)
            if parsed is None:
                kind = "an integer" if key in _INT_FIELDS else "a number"
                problems.append((key, f"expected {kind}, got {value!r}"))
            else:
                overrides[key] = parsed
    if problems:
        raise SettingsError(problems)
    return replace(start, name=text, **overrides)


def describe(spec: SyntheticSpec) -> dict[str, int | float | str]:
    """Sizes of the graph ``generate(spec)`` builds, computed without building it.

    Returns:
        ``name``, ``nodes``, ``edges`` (directed), ``features``, ``classes``, ``avg_degree``,
        ``homophily`` and ``nbytes`` (what ``Graph.nbytes()`` will report). All are exact.
    """
    within, cross = _edge_targets(spec)
    edges = 2 * (int(within.sum()) + cross)
    nbytes = 8 * (spec.nodes + 1) + 8 * edges + 4 * spec.nodes * spec.features + 8 * spec.nodes
    return {
        "name": spec.name,
        "nodes": spec.nodes,
        "edges": edges,
        "features": spec.features,
        "classes": spec.clusters,
        "avg_degree": edges / spec.nodes,
        "homophily": 2 * int(within.sum()) / edges if edges else spec.homophily,
        "nbytes": nbytes,
    }


def generate(spec: SyntheticSpec) -> Graph:
    """Build the graph ``spec`` describes (see the module docstring for the model).

    Raises:
        DataError: duplicate rejection did not reach the requested edge count (only for
            extreme ``skew`` with a dense cluster).
    """
    arrays = build(spec, _allocate_in_memory)
    return Graph(
        spec.name, arrays["colptr"], arrays["row"], arrays["x"], arrays["y"], {}, spec.clusters
    )


def build(spec: SyntheticSpec, allocate: Allocate) -> dict[str, Tensor]:
    """Generate ``spec``'s graph into arrays that ``allocate`` provides (in memory or on disk).

    ``allocate(name, shape, dtype)`` is called, in this order, for ``"y"`` (int64 ``[N]``),
    ``"grouped"`` (int32 ``[E]``, scratch: every edge's source grouped by target, dropped once
    ``row`` is written), ``"colptr"`` (int64 ``[N + 1]``), ``"row"`` (int64 ``[E]``) and
    ``"x"`` (float32 ``[N, F]``). It may return another dtype for ``row`` (int32) or ``x``
    (float16): values are cast as they are written. Writes go chunk by chunk in index order,
    so memory-mapped files (``np.lib.format.open_memmap``) work as well as tensors; what stays
    in memory besides them is O(N) index arrays, the cross-cluster edge keys and one cluster's
    edges at a time (plus the propensity table, 32 int32 slots per node, when ``skew > 0``).

    Returns:
        ``colptr``, ``row``, ``x`` and ``y``, exactly as :func:`generate` builds them.

    Raises:
        DataError: as :func:`generate`.
    """
    n = spec.nodes
    sizes = _cluster_sizes(n, spec.clusters)
    offsets = _exclusive_cumsum(sizes)
    within, cross_total = _edge_targets(spec)

    # "Internal" ids number the nodes cluster by cluster (ascending node id within a cluster),
    # so each cluster is a contiguous range: order[internal] is the node id.
    labels = _generator(spec.seed, _LABELS)
    y = allocate("y", (n,), torch.long)
    y[torch.randperm(n, generator=labels)] = torch.repeat_interleave(
        torch.arange(spec.clusters), sizes
    )
    order = torch.argsort(y, stable=True)

    table = _propensity_table(spec, _generator(spec.seed, _PROPENSITY))
    cross = _cross_cluster_sources(spec, sizes, table, order, cross_total)
    grouped = allocate("grouped", (2 * int(within.sum()) + cross.numel(),), torch.int32)
    degree = _group_by_target(spec, sizes, offsets, within, table, order, cross, grouped)
    del cross, table
    colptr = allocate("colptr", (n + 1,), torch.long)
    row = allocate("row", (grouped.numel(),), torch.long)
    _scatter_to_node_order(grouped, degree, order, colptr, row)
    del grouped
    x = allocate("x", (n, spec.features), torch.float32)
    _features(spec, y, x)
    return {"colptr": colptr, "row": row, "x": x, "y": y}


Allocate = Callable[[str, tuple[int, ...], torch.dtype], Tensor]


def _allocate_in_memory(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    return torch.empty(shape, dtype=dtype)


def _parse_number(text: str, integer: bool) -> int | float | None:
    """``text`` as an int (``10_000``, ``1e6`` accepted) or a float; ``None`` if malformed."""
    try:
        return int(text) if integer else float(text)
    except ValueError:
        pass
    if not integer:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _generator(seed: int, *tags: int) -> torch.Generator:
    """A generator for one stage (and cluster), independent of every other stage's stream."""
    state = np.random.SeedSequence([seed, *tags]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _propensity_table(spec: SyntheticSpec, gen: torch.Generator) -> Tensor | None:
    """Sampling table over internal ids: node ``i`` fills propensity-many slots (int32).

    Drawing a uniform slot is drawing a node in proportion to its propensity, at the cost of one
    gather instead of a binary search. ``None`` when every node has the same propensity.
    """
    if spec.skew == 0:
        return None
    theta = torch.exp(spec.skew * torch.randn(spec.nodes, generator=gen, dtype=torch.float64))
    theta *= _SLOTS_PER_NODE * spec.nodes / theta.sum()
    slots = (theta + torch.rand(spec.nodes, generator=gen, dtype=torch.float64)).floor_()
    slots = slots.clamp_(min=1).long()
    return torch.repeat_interleave(torch.arange(spec.nodes, dtype=torch.int32), slots)


def _draw_nodes(count: int, table: Tensor | None, size: int, gen: torch.Generator) -> Tensor:
    """``count`` int64 node indices in ``[0, size)``, in proportion to their table slots."""
    if table is None:
        return torch.randint(size, (count,), generator=gen)
    return table[torch.randint(table.numel(), (count,), generator=gen)].long()


def _unique_sorted(keys: Tensor) -> Tensor:
    """Sorted distinct values of an int64 tensor (sorts ``keys`` in place)."""
    # NumPy's in-place sort needs no index buffer and is several times faster than torch.sort.
    keys.numpy().sort()
    if keys.numel() < 2:
        return keys
    return torch.cat([keys[:1], keys[1:][keys[1:] != keys[:-1]]])


def _distinct_pairs(
    draw: Callable[[int], Tensor],
    target: int,
    first_draws: int,
    gen: torch.Generator,
) -> Tensor:
    """Sorted keys of exactly ``target`` distinct pairs, drawing in rounds until there are enough.

    Args:
        draw: ``draw(count)`` returns the keys of up to ``count`` random pairs (rejected pairs,
            such as self-loops, already removed).
        first_draws: draws for the first round, an estimate of what yields ``target`` distinct.
    """
    keys = torch.empty(0, dtype=torch.long)
    draws = first_draws
    for _ in range(_MAX_ROUNDS):
        before = keys.numel()
        fresh = [draw(min(_CHUNK, draws - start)) for start in range(0, draws, _CHUNK)]
        keys = _unique_sorted(torch.cat([keys, *fresh]))
        del fresh
        if keys.numel() >= target:
            break
        # Later draws hit already-taken pairs more often, so ask for 20% more than this round's
        # yield suggests; the cap keeps a saturated block from asking for unbounded memory.
        rate = max(keys.numel() - before, 1) / draws
        draws = min(math.ceil(1.2 * (target - keys.numel()) / rate) + 64, 4 * target + 1024)
    else:
        raise DataError(
            f"could only place {keys.numel()} of {target} distinct edges in a block; "
            "lower skew or degree"
        )
    if keys.numel() > target:
        # Drop a random surplus through a mask, which keeps the survivors sorted.
        keep = torch.ones(keys.numel(), dtype=torch.bool)
        keep[torch.randperm(keys.numel(), generator=gen)[: keys.numel() - target]] = False
        keys = keys[keep]
    return keys


def _first_draws(target: int, pairs: float, collision: float, accept: float) -> int:
    """Draws expected to give ``target`` distinct pairs.

    ``collision`` is the sum of squared pair probabilities, so ``1 / collision`` node pairs
    behave like that many equally likely ones; ``accept`` is the fraction of draws not rejected.
    """
    effective = min(pairs, 1.0 / collision) if collision > 0 else pairs
    if target >= 0.9 * effective:
        draws = 3.0 * target
    else:
        # Distinct values after m uniform draws from P: P * (1 - exp(-m / P)); solve for m.
        draws = -effective * math.log1p(-target / effective)
    return math.ceil(draws / accept * 1.02) + 16


def _cross_cluster_sources(
    spec: SyntheticSpec, sizes: Tensor, table: Tensor | None, order: Tensor, target: int
) -> Tensor:
    """Sorted keys ``target_internal * n + source_node`` of both directions of the cross edges."""
    n = spec.nodes
    if target == 0:
        return torch.empty(0, dtype=torch.long)
    cluster_of = torch.repeat_interleave(torch.arange(spec.clusters, dtype=torch.int32), sizes)
    gen = _generator(spec.seed, _CROSS)

    def draw(count: int) -> Tensor:
        u, v = _draw_nodes(count, table, n, gen), _draw_nodes(count, table, n, gen)
        keep = cluster_of[u] != cluster_of[v]
        u, v = u[keep], v[keep]
        return torch.minimum(u, v) * n + torch.maximum(u, v)

    weight = _node_weights(table, n)
    cluster_weight = torch.zeros(spec.clusters, dtype=torch.float64)
    cluster_weight.index_add_(0, cluster_of.long(), weight)
    accept = 1.0 - float((cluster_weight**2).sum())
    collision = 2.0 * float((weight**2).sum()) ** 2 / accept**2
    pairs = (n**2 - float((sizes.double() ** 2).sum())) / 2
    keys = _distinct_pairs(draw, target, _first_draws(target, pairs, collision, accept), gen)
    low, high = keys // n, keys % n
    del keys
    directed = torch.cat([low * n + order[high], high * n + order[low]])
    directed.numpy().sort()
    return directed


def _node_weights(table: Tensor | None, size: int) -> Tensor:
    """Probability of each node under ``_draw_nodes`` (float64)."""
    if table is None:
        return torch.full((size,), 1.0 / size, dtype=torch.float64)
    return torch.bincount(table, minlength=size).double() / table.numel()


def _group_by_target(
    spec: SyntheticSpec,
    sizes: Tensor,
    offsets: Tensor,
    within: Tensor,
    table: Tensor | None,
    order: Tensor,
    cross: Tensor,
    grouped: Tensor,
) -> Tensor:
    """Write every edge's source node into ``grouped`` (int32 ``[E]``), grouped by target in
    internal order and sorted per target.

    Returns:
        The degree of each internal id.
    """
    n = spec.nodes
    degree = torch.empty(n, dtype=torch.long)
    # Where each cluster's slots start in the table: its nodes' slots are contiguous.
    table_bounds = None
    if table is not None:
        table_bounds = torch.searchsorted(table, offsets.int()).tolist() + [table.numel()]
    position = 0
    for c, (start, size, target) in enumerate(
        zip(offsets.tolist(), sizes.tolist(), within.tolist(), strict=True)
    ):
        members = order[start : start + size]
        local = None
        if table_bounds is not None:
            local = table[table_bounds[c] : table_bounds[c + 1]] - start
        keys = _within_cluster_pairs(spec, c, size, target, local)
        low, high = keys // size, keys % size
        del keys
        lo, hi = torch.searchsorted(cross, torch.tensor([start * n, (start + size) * n])).tolist()
        # Key target_local * n + source_node: one sort groups by target and orders the sources.
        incoming = torch.cat(
            [low * n + members[high], high * n + members[low], cross[lo:hi] - start * n]
        )
        del low, high
        incoming.numpy().sort()
        end = position + incoming.numel()
        grouped[position:end] = incoming % n
        degree[start : start + size] = torch.bincount(incoming // n, minlength=size)
        position = end
    return degree


def _within_cluster_pairs(
    spec: SyntheticSpec, cluster: int, size: int, target: int, table: Tensor | None
) -> Tensor:
    """Sorted keys ``low * size + high`` (local ids, ``low < high``) of a cluster's edges."""
    if target == 0:
        return torch.empty(0, dtype=torch.long)
    gen = _generator(spec.seed, _WITHIN, cluster)

    def draw(count: int) -> Tensor:
        u, v = _draw_nodes(count, table, size, gen), _draw_nodes(count, table, size, gen)
        keep = u != v
        u, v = u[keep], v[keep]
        return torch.minimum(u, v) * size + torch.maximum(u, v)

    weight = _node_weights(table, size)
    self_loop = float((weight**2).sum())
    collision = 2.0 * self_loop**2 / (1.0 - self_loop) ** 2
    pairs = size * (size - 1) / 2
    return _distinct_pairs(draw, target, _first_draws(target, pairs, collision, 1 - self_loop), gen)


def _scatter_to_node_order(
    grouped: Tensor, degree: Tensor, order: Tensor, colptr: Tensor, row: Tensor
) -> None:
    """Write CSC ``colptr`` ``[N + 1]`` and ``row`` ``[E]`` in node-id order from sources
    grouped by internal target."""
    n = order.numel()
    node_degree = torch.empty_like(degree)
    node_degree[order] = degree
    grouped_start = torch.empty_like(degree)
    grouped_start[order] = _exclusive_cumsum(degree)
    colptr[0] = 0
    torch.cumsum(node_degree, 0, out=colptr[1:])
    # Per column, how far its sources sit in `grouped` from where they go in `row`.
    shift = grouped_start - colptr[:-1]
    del grouped_start
    step = max(1, _CHUNK * n // max(grouped.numel(), 1))
    for a in range(0, n, step):
        b = min(n, a + step)
        lo, hi = int(colptr[a]), int(colptr[b])
        source = torch.arange(lo, hi) + torch.repeat_interleave(shift[a:b], node_degree[a:b])
        row[lo:hi] = grouped[source]


def _features(spec: SyntheticSpec, y: Tensor, x: Tensor) -> None:
    """Write ``x`` ``[N, F]``: ``snr`` times the cluster's unit centre, plus standard Gaussian
    noise, drawn in float32 whatever ``x``'s dtype."""
    gen = _generator(spec.seed, _FEATURES)
    centres = torch.randn(spec.clusters, spec.features, generator=gen)
    centres *= spec.snr / centres.norm(dim=1, keepdim=True)
    step = max(1, _CHUNK // spec.features)
    # Other dtypes (float16 on disk) go through a float32 chunk, so the values are the float32
    # graph's, rounded.
    direct = x.dtype == torch.float32
    scratch = None if direct else torch.empty(min(step, spec.nodes), spec.features)
    for a in range(0, spec.nodes, step):
        b = min(spec.nodes, a + step)
        chunk = x[a:b] if direct else scratch[: b - a]
        torch.randn(b - a, spec.features, generator=gen, out=chunk)
        chunk += centres[y[a:b]]
        if not direct:
            x[a:b] = chunk


# Bump when generate() changes its output, so cached graphs are rebuilt.
GENERATOR_VERSION = 1


def spec_key(spec: SyntheticSpec) -> str:
    """Identity of the generated graph (display name excluded) for cache keys."""
    fields = ("nodes", "clusters", "degree", "homophily", "features", "snr", "skew", "seed")
    values = ",".join(f"{f}={getattr(spec, f)}" for f in fields)
    return f"v{GENERATOR_VERSION}:{values}"
