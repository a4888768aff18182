"""Neighbour sampling (a PyG ``BaseSampler``), mini-batch loaders and random walks."""

from agc_cli.sampling.loader import (
    SAMPLER_KINDS,
    EpochOrder,
    GraphFeatureStore,
    GraphTopologyStore,
    SubgraphLoader,
    as_stores,
    build_sampler,
    make_loader,
)
from agc_cli.sampling.neighbor import (
    CSCTopology,
    UniformNeighborSampler,
    derive_seed,
    sample_without_replacement,
    validate_fan_out,
)
from agc_cli.sampling.random_walk import random_walk

__all__ = [
    "SAMPLER_KINDS",
    "CSCTopology",
    "EpochOrder",
    "GraphFeatureStore",
    "GraphTopologyStore",
    "SubgraphLoader",
    "UniformNeighborSampler",
    "as_stores",
    "build_sampler",
    "derive_seed",
    "make_loader",
    "random_walk",
    "sample_without_replacement",
    "validate_fan_out",
]
