"""Method name -> model class."""

from __future__ import annotations

from agc_cli.errors import UsageError
from agc_cli.models.arga import ARGA, ARGVA
from agc_cli.models.base import ClusteringModel
from agc_cli.models.ccassg import CCASSG
from agc_cli.models.daegc import DAEGC
from agc_cli.models.dgi import DGI
from agc_cli.models.dinknet import DinkNet
from agc_cli.models.dmon import DMoN
from agc_cli.models.gae import GAE
from agc_cli.models.gbt import GraphBarlowTwins
from agc_cli.models.magi import MAGI
from agc_cli.models.mincut import MinCut
from agc_cli.models.nafs import NAFS
from agc_cli.models.neuromap import Neuromap
from agc_cli.models.node2vec import Node2Vec
from agc_cli.models.ns4gc import NS4GC
from agc_cli.models.propagation import SGC, SSGC
from agc_cli.models.raw_features import KMeansBaseline
from agc_cli.models.s2cag import MS2CAG, S2CAG
from agc_cli.models.s3gc import S3GC
from agc_cli.models.sagsc import SAGSC
from agc_cli.models.vgae import VGAE

MODELS: dict[str, type[ClusteringModel]] = {
    cls.name: cls
    for cls in (
        DGI,
        GAE,
        CCASSG,
        DMoN,
        MAGI,
        DAEGC,
        SGC,
        SSGC,
        S2CAG,
        MS2CAG,
        NS4GC,
        DinkNet,
        GraphBarlowTwins,
        VGAE,
        KMeansBaseline,
        MinCut,
        S3GC,
        ARGA,
        ARGVA,
        Neuromap,
        SAGSC,
        NAFS,
        Node2Vec,
    )
}


def get_model_class(name: str) -> type[ClusteringModel]:
    """The model class registered as ``name`` (case-insensitive)."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise UsageError(
            f"model: unknown {name!r}; choose one of {', '.join(sorted(MODELS))}"
        ) from None
