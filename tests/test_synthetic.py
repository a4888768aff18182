"""Synthetic graph generator: requested statistics, structural invariants, spec parsing."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from agc_cli.data.graph import Graph, to_csc
from agc_cli.data.synthetic import (
    PRESETS,
    SyntheticSpec,
    describe,
    generate,
    parse_synthetic,
)
from agc_cli.errors import UsageError

UNIFORM = SyntheticSpec(
    nodes=3000, clusters=6, degree=10.0, homophily=0.8, features=16, snr=1.0, seed=1
)
SKEWED = SyntheticSpec(
    nodes=4000, clusters=5, degree=20.0, homophily=0.7, features=8, snr=1.0, skew=1.0, seed=2
)
# ~20% of each cluster's node pairs are edges: many draws collide and must be made up for.
DENSE = SyntheticSpec(
    nodes=1200, clusters=4, degree=60.0, homophily=0.9, features=4, snr=1.0, skew=0.5, seed=3
)
SPECS = {"uniform": UNIFORM, "skewed": SKEWED, "dense": DENSE}

_cache: dict[SyntheticSpec, Graph] = {}


def graph_of(spec: SyntheticSpec) -> Graph:
    """Generate each spec once per test session."""
    if spec not in _cache:
        _cache[spec] = generate(spec)
    return _cache[spec]


def homophily(graph: Graph) -> float:
    return float((graph.y[graph.row] == graph.y[graph.col()]).double().mean())


@pytest.mark.parametrize("kind", SPECS)
def test_average_degree_is_within_5_percent_of_request(kind):
    spec = SPECS[kind]
    graph = graph_of(spec)
    assert graph.num_edges / graph.num_nodes == pytest.approx(spec.degree, rel=0.05)


@pytest.mark.parametrize("kind", SPECS)
def test_homophily_is_within_5_percent_of_request(kind):
    spec = SPECS[kind]
    assert homophily(graph_of(spec)) == pytest.approx(spec.homophily, rel=0.05)


@pytest.mark.parametrize("kind", SPECS)
def test_describe_gives_the_generated_sizes_exactly(kind):
    spec = SPECS[kind]
    graph = graph_of(spec)
    planned = describe(spec)
    assert planned["nodes"] == graph.num_nodes
    assert planned["edges"] == graph.num_edges
    assert planned["features"] == graph.num_features
    assert planned["classes"] == graph.num_classes
    assert planned["nbytes"] == graph.nbytes()
    assert planned["homophily"] == pytest.approx(homophily(graph), abs=1e-12)


@pytest.mark.parametrize("kind", SPECS)
def test_graph_has_no_self_loops_or_duplicate_edges(kind):
    graph = graph_of(SPECS[kind])
    col = graph.col()
    assert not bool((graph.row == col).any())
    keys = col * graph.num_nodes + graph.row
    assert torch.unique(keys).numel() == graph.num_edges


@pytest.mark.parametrize("kind", SPECS)
def test_graph_is_symmetric(kind):
    graph = graph_of(SPECS[kind])
    col, n = graph.col(), graph.num_nodes
    forward = torch.sort(col * n + graph.row).values
    backward = torch.sort(graph.row * n + col).values
    assert torch.equal(forward, backward)


@pytest.mark.parametrize("kind", SPECS)
def test_topology_is_the_sorted_csc_that_to_csc_builds(kind):
    graph = graph_of(SPECS[kind])
    colptr, row = to_csc(graph.edge_index(), graph.num_nodes, undirected=False)
    assert graph.colptr.dtype == graph.row.dtype == torch.long
    assert torch.equal(graph.colptr, colptr)
    assert torch.equal(graph.row, row)


def test_cluster_sizes_differ_by_at_most_one_with_the_extra_nodes_in_the_first_clusters():
    spec = SyntheticSpec(nodes=1003, clusters=4, degree=6.0, homophily=0.8, features=2, snr=1.0)
    sizes = torch.bincount(generate(spec).y, minlength=4)
    assert sizes.tolist() == [251, 251, 251, 250]


def test_clusters_are_not_contiguous_in_node_order():
    y = graph_of(UNIFORM).y
    # With contiguous blocks the label would change only clusters - 1 times along the ids.
    assert int((y[1:] != y[:-1]).sum()) > 10 * UNIFORM.clusters


def test_labels_are_the_int64_planted_clusters():
    graph = graph_of(UNIFORM)
    assert graph.y.dtype == torch.long
    assert graph.y.shape == (UNIFORM.nodes,)
    assert int(graph.y.min()) == 0 and int(graph.y.max()) == UNIFORM.clusters - 1
    assert graph.num_classes == UNIFORM.clusters


def test_features_are_dense_float32_nodes_by_features():
    graph = graph_of(UNIFORM)
    assert graph.x.dtype == torch.float32
    assert graph.x.layout == torch.strided
    assert graph.x.shape == (UNIFORM.nodes, UNIFORM.features)


def test_feature_cluster_means_lie_snr_from_the_origin_with_unit_noise():
    spec = SyntheticSpec(
        nodes=20_000, clusters=4, degree=4.0, homophily=0.5, features=8, snr=3.0, seed=5
    )
    graph = generate(spec)
    for c in range(spec.clusters):
        members = graph.x[graph.y == c]
        centre = members.mean(0)
        assert float(centre.norm()) == pytest.approx(spec.snr, rel=0.05)
        assert float((members - centre).std()) == pytest.approx(1.0, rel=0.05)


def test_skew_widens_the_degree_distribution():
    uniform = SyntheticSpec(
        nodes=4000, clusters=5, degree=20.0, homophily=0.7, features=8, snr=1.0, seed=2
    )

    def spread(graph: Graph) -> float:
        degree = graph.degree().double()
        return float(degree.std() / degree.mean())

    assert spread(graph_of(SKEWED)) > 2 * spread(generate(uniform))


def test_same_seed_gives_a_bit_identical_graph():
    first, second = generate(SKEWED), generate(SKEWED)
    assert torch.equal(first.colptr, second.colptr)
    assert torch.equal(first.row, second.row)
    assert torch.equal(first.x, second.x)
    assert torch.equal(first.y, second.y)


def test_different_seeds_give_different_graphs():
    first = graph_of(SKEWED)
    other = generate(replace(SKEWED, seed=SKEWED.seed + 1))
    assert not torch.equal(first.y, other.y)
    assert not torch.equal(first.row, other.row)
    assert not torch.equal(first.x, other.x)


def test_zero_degree_gives_an_edgeless_graph():
    spec = SyntheticSpec(nodes=100, clusters=2, degree=0.0, homophily=0.8, features=3, snr=1.0)
    graph = generate(spec)
    assert graph.num_edges == 0
    assert torch.equal(graph.colptr, torch.zeros(101, dtype=torch.long))


def test_sbm_small_needs_the_graph_raw_features_fail_and_smoothed_ones_cluster():
    spec = PRESETS["sbm-small"]
    graph = generate(spec)
    col, n = graph.col(), graph.num_nodes
    # Two hops of symmetric-normalised propagation with self-loops (SGC), as a GNN would do.
    degree = graph.degree().double() + 1
    weight = (degree[graph.row] * degree[col]).rsqrt().float()
    adjacency = torch.sparse_coo_tensor(
        torch.stack([col, graph.row]), weight, (n, n), check_invariants=False
    )
    smoothed = graph.x
    for _ in range(2):
        smoothed = torch.sparse.mm(adjacency, smoothed) + smoothed / degree[:, None].float()

    def nmi(x: torch.Tensor) -> float:
        labels = KMeans(spec.clusters, n_init=1, random_state=0).fit_predict(x.numpy())
        return normalized_mutual_info_score(graph.y.numpy(), labels)

    assert nmi(graph.x) < 0.2
    assert nmi(smoothed) > 0.7


@pytest.mark.parametrize(
    ("name", "nodes", "edges", "features", "classes"),
    [
        ("sbm-small", 9_600, 115_200, 128, 10),
        ("sbm-reddit", 232_965, 114.6e6, 602, 41),
        ("sbm-products", 2_449_029, 123.7e6, 100, 47),
    ],
)
def test_presets_have_the_published_sizes(name, nodes, edges, features, classes):
    planned = describe(PRESETS[name])
    assert planned["nodes"] == nodes
    assert planned["edges"] == pytest.approx(edges, rel=1e-3)
    assert planned["features"] == features
    assert planned["classes"] == classes


def test_parse_returns_the_preset_case_insensitively():
    assert parse_synthetic("SBM-Reddit") == PRESETS["sbm-reddit"]
    assert parse_synthetic(" sbm-small ") == PRESETS["sbm-small"]


def test_parse_override_replaces_only_the_named_fields():
    spec = parse_synthetic("sbm-small:seed=3,SNR=2")
    base = PRESETS["sbm-small"]
    assert spec == replace(base, seed=3, snr=2.0)
    assert spec.name == "sbm-small:seed=3,snr=2"


def test_parse_custom_spec_sets_every_field():
    spec = parse_synthetic(
        "sbm:nodes=5000,clusters=5,degree=10,homophily=0.8,features=32,snr=1.0,skew=0.5,seed=1"
    )
    assert spec == SyntheticSpec(
        nodes=5000, clusters=5, degree=10.0, homophily=0.8, features=32, snr=1.0, skew=0.5, seed=1
    )


def test_parse_custom_spec_takes_left_out_fields_from_sbm_small():
    spec = parse_synthetic("sbm:nodes=1e4,clusters=20")
    assert spec == replace(PRESETS["sbm-small"], nodes=10_000, clusters=20)


@pytest.mark.parametrize("name", ["cora", "ogbn-products", "reddit", "./graphs/sbm.npz", "sbmx"])
def test_parse_returns_none_for_names_that_are_not_synthetic(name):
    assert parse_synthetic(name) is None


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("sbm-huge", "sbm-huge"),
        ("sbm:nodes=100,colours=3", "colours"),
        ("sbm:nodes=ten", "nodes"),
        ("sbm:nodes=100.5", "nodes"),
        ("sbm:degree", "degree"),
        ("sbm:seed=1,seed=2", "seed"),
        ("sbm:homophily=1.5", "homophily"),
    ],
)
def test_parse_rejects_bad_names_with_a_usage_error_naming_the_part(name, named):
    with pytest.raises(UsageError, match=named):
        parse_synthetic(name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nodes", 1),
        ("nodes", 10.0),
        ("clusters", 0),
        ("clusters", 600),
        ("degree", -1.0),
        ("degree", float("nan")),
        ("homophily", 1.1),
        ("features", 0),
        ("snr", -0.5),
        ("skew", 3.0),
        ("seed", -1),
        ("seed", True),
    ],
)
def test_invalid_spec_raises_usage_error_naming_the_parameter(field, value):
    with pytest.raises(UsageError, match=rf"\b{field}\b"):
        replace(UNIFORM, **{field: value})


def test_degree_too_dense_for_the_clusters_raises_usage_error_naming_degree():
    with pytest.raises(UsageError, match="degree"):
        SyntheticSpec(nodes=100, clusters=10, degree=9.0, homophily=1.0, features=2, snr=1.0)


def test_cross_cluster_edges_with_one_cluster_raise_usage_error_naming_homophily():
    with pytest.raises(UsageError, match="homophily"):
        SyntheticSpec(nodes=100, clusters=1, degree=4.0, homophily=0.5, features=2, snr=1.0)
