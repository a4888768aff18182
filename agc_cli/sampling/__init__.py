"""Neighbour sampling (a PyG ``BaseSampler``), mini-batch loaders and random walks."""

from agc_cli.sampling.loader import (
    SAMPLER_KINDS,
    EpochOrder,
    GraphFeatureStore,
    GraphTopologyStore,
    ShardedEpochBatches,
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
from agc_cli.sampling.shard import drop_consumed, shard_batches

__all__ = [
    "SAMPLER_KINDS",
    "CSCTopology",
    "EpochOrder",
    "GraphFeatureStore",
    "GraphTopologyStore",
    "ShardedEpochBatches",
    "SubgraphLoader",
    "UniformNeighborSampler",
    "as_stores",
    "build_sampler",
    "derive_seed",
    "drop_consumed",
    "make_loader",
    "random_walk",
    "sample_without_replacement",
    "shard_batches",
    "validate_fan_out",
]
