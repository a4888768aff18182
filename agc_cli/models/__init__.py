"""Encoders, the batch abstraction, the model contract and the clustering methods."""

from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import Block, GraphBatch
from agc_cli.models.encoder import Encoder
from agc_cli.models.registry import MODELS, get_model_class
from agc_cli.models.sparse import SparseMatrix

__all__ = [
    "MODELS",
    "Block",
    "ClusteringModel",
    "Encoder",
    "GraphBatch",
    "LossOutput",
    "SparseMatrix",
    "get_model_class",
]
