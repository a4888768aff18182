"""The GNN encoder shared by every method: GCN, GraphSAGE, GAT or GIN layers.

Layer ``i`` is ``dropout -> conv -> norm -> activation`` (the last layer skips norm and
activation when the method asks for a plain output layer). The encoder runs on a
:class:`~agc_cli.models.batch.GraphBatch` (full graph or trimmed sampled subgraph) or one layer
at a time, for exact layer-wise inference (every node through layer 0, then layer 1, ...)::

    outputs = []
    for i in range(encoder.num_layers):
        h = empty [num_nodes, hidden]
        for b in 1-hop batches (GraphBatch.from_sampled, fan-out -1) covering every node:
            x_src = b.x if i == 0 else outputs[-1][b.n_id]
            h[b.n_id[: b.batch_size]] = encoder.layer_forward(i, x_src, b.block(0, 1))
        outputs.append(h)
    embeddings = model.readout(encoder.combine(outputs))   # == model.embed(full batch)

Every option either reaches a layer or is refused with a :class:`UsageError` naming it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.profiler import record_function

from agc_cli.errors import UsageError
from agc_cli.models.batch import Block, Features, GraphBatch
from agc_cli.models.convs import (
    GATConv,
    GATv2Conv,
    GCNConv,
    GINConv,
    SAGEConv,
    TransformPropagateConv,
)
from agc_cli.models.sparse import SparseMatrix

GNN_TYPES = ("gcn", "sage", "gat", "gatv2", "gin")
ATTENTION = ("gat", "gatv2")  # the types with heads
ACTIVATIONS = ("relu", "prelu", "elu", "gelu", "leaky_relu", "tanh", "identity")
NORMS = ("none", "batch", "layer")
JK_MODES = ("none", "last", "cat", "max")


class PReLU(nn.Module):
    """Per-channel PReLU (``nn.PReLU(channels)``) with a cheaper CPU backward.

    torch's fused PReLU backward and every op that builds a boolean mask (``where``,
    comparisons, ``relu``'s backward) run ~10-50x slower than plain arithmetic on CPU here
    (PReLU's backward: 7 ms for a 2708 x 512 input, a quarter of a DGI step on Cora); this
    backward uses arithmetic and ``sign`` only.
    """

    def __init__(self, channels: int, init: float = 0.25):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: Tensor) -> Tensor:
        return _PReLUFunction.apply(x, self.weight)


class _PReLUFunction(torch.autograd.Function):
    # Two passes forward and four backward, one new tensor in each: on a sampled Physics batch
    # ([14.9K, 512] per view) every fresh tensor is also ~7.5K first-touch page faults.
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        negative = x.clamp(max=0)
        ctx.save_for_backward(negative, weight)
        return torch.addcmul(x, negative, weight - 1)  # x + min(x, 0) (a - 1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        negative, weight = ctx.saved_tensors
        buffer = grad * negative
        grad_weight = buffer.sum(dim=0)
        # sign(min(x, 0)) is -1 where x < 0 and 0 elsewhere, so the slope is
        # 1 + sign (1 - a): grad_x = grad + grad * sign * (1 - a), built in the same buffer.
        if buffer.dtype == negative.dtype:
            torch.sign(negative, out=buffer)
        else:  # autocast: copy_ converts
            buffer.copy_(negative).sign_()
        buffer.mul_(1 - weight)
        return torch.addcmul(grad, grad, buffer, out=buffer), grad_weight


def make_activation(name: str, channels: int) -> nn.Module:
    """Activation module by name (PReLU learns one slope per channel)."""
    if name == "prelu":
        return PReLU(channels)
    modules = {
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "leaky_relu": nn.LeakyReLU,
        "tanh": nn.Tanh,
        "identity": nn.Identity,
    }
    if name not in modules:
        raise UsageError(f"activation: unknown {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return modules[name]()


class Encoder(nn.Module):
    """A stack of graph convolutions with dropout, normalisation, residual and JK options.

    Args:
        in_channels: input feature width.
        hidden_channels: output width of every layer.
        num_layers: number of message-passing layers.
        gnn_type: ``gcn``, ``sage``, ``gat``, ``gatv2`` or ``gin``.
        heads: GAT attention heads.
        concat: GAT: concatenate the heads (each ``hidden_channels / heads`` wide) or average
            them (each ``hidden_channels`` wide); default concatenate.
        dropout: dropout on every layer's input (sparse features: on their non-zeros).
        activation: activation after every layer but a plain last one.
        norm: ``none``, ``batch`` or ``layer`` normalisation after every conv but a plain last.
        residual: add a linear projection of each layer's input to its output (not for
            ``sage``, whose root weight is already that projection).
        jk: jumping knowledge: ``none``/``last`` (last layer's output), ``cat`` (all layers'
            outputs side by side) or ``max`` (element-wise maximum over layers).
        plain_last: skip norm and activation after the last layer (methods whose embedding
            is the raw conv output, such as GAE and CCA-SSG).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int,
        gnn_type: str = "gcn",
        *,
        heads: int = 1,
        concat: bool | None = None,
        dropout: float = 0.0,
        activation: str = "prelu",
        norm: str = "none",
        residual: bool = False,
        jk: str = "none",
        plain_last: bool = False,
    ):
        super().__init__()
        _check_options(
            hidden_channels, num_layers, gnn_type, heads, concat, dropout, norm, residual, jk,
            plain_last,
        )  # fmt: skip
        self.num_layers = num_layers
        self.hidden_channels = hidden_channels
        self.gnn_type = gnn_type
        self.dropout = dropout
        self.jk = jk
        self.plain_last = plain_last
        self.out_channels = hidden_channels * num_layers if jk == "cat" else hidden_channels
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        for i in range(num_layers):
            width_in = in_channels if i == 0 else hidden_channels
            self.convs.append(
                _make_conv(
                    gnn_type, width_in, hidden_channels, heads, concat, residual, activation, i
                )
            )
            plain = plain_last and i == num_layers - 1
            self.norms.append(nn.Identity() if plain else _make_norm(norm, hidden_channels))
            self.acts.append(
                nn.Identity() if plain else make_activation(activation, hidden_channels)
            )

    @classmethod
    def from_settings(cls, in_channels: int, settings: Any, plain_last: bool = False) -> Encoder:
        """Encoder from the model settings (``gnn_type``, ``hidden_channels``, ...)."""
        return cls(
            in_channels,
            settings.hidden_channels,
            settings.num_layers,
            settings.gnn_type,
            heads=settings.heads,
            dropout=settings.dropout,
            activation=settings.activation,
            norm=settings.norm,
            residual=settings.residual,
            jk=settings.jk,
            plain_last=plain_last,
        )

    def transform(self, i: int, x: Features) -> Tensor:
        """Layer ``i``'s dropout and linear transform (before propagation).

        DGI reuses layer 0's: the transform of row-permuted features is the transform permuted.
        """
        return self.convs[i].transform(self._dropout(x))

    def layer_forward(self, i: int, x_src: Features, block: Block) -> Tensor:
        """Layer ``i`` on ``block``: ``[num_src, in]`` inputs -> ``[num_dst, hidden]`` outputs.

        ``x_src`` holds the block's source nodes, destinations first; in eval mode this is
        exactly what :meth:`forward` computes for those destinations.
        """
        # The conv's own forward: it may skip the transform of every source (see GCNConv).
        return self._finish(i, self.convs[i](self._dropout(x_src), block))

    @property
    def propagates_from_tables(self) -> bool:
        """Whether every layer reads its destinations' own rows through ``block.dst_rows`` and
        its sources only through the block's adjacency, so layer-wise inference over every
        node can pass whole per-node tables (attention layers score every row they are
        given, and are left to the gathered path)."""
        return self.gnn_type in ("gcn", "sage", "gin")

    def layer_forward_transformed(self, i: int, t_src: Tensor, block: Block) -> Tensor:
        """:meth:`layer_forward` from the sources' transform ``t_src`` (row-wise: in eval mode
        ``transform(i, x)[rows] == transform(i, x[rows])``)."""
        return self._finish(i, self.convs[i].propagate(t_src, block))

    def combine(self, outputs: list[Tensor]) -> Tensor:
        """Jumping knowledge over per-layer outputs of the same nodes (layer 0 first)."""
        if self.jk == "cat":
            return torch.cat(outputs, dim=-1)
        if self.jk == "max":
            return torch.stack(outputs).amax(dim=0)
        return outputs[-1]

    def forward(self, x: Features, batch: GraphBatch) -> Tensor:
        """Embeddings ``[batch_size, out_channels]`` of the seed nodes (all nodes in full-batch)."""
        # Labelled for `agc profile` (the "forward" stage of agc_cli.engine.profiling).
        with record_function("agc::forward"):
            h = self.convs[0](self._dropout(x), batch.block(0, self.num_layers))
            return self._upper_layers(self._finish(0, h), batch)

    def forward_pair(self, x: Features, batch: GraphBatch, perm: Tensor) -> tuple[Tensor, Tensor]:
        """``(forward(x, batch), forward(x[perm], batch))`` with one dropout mask on ``x``:
        DGI's clean and corrupted embeddings, whose first layer is computed as one (see
        ``TransformPropagateConv.forward_pair``)."""
        with record_function("agc::forward"):
            if self.num_layers > 1 and not any(
                isinstance(norm, nn.BatchNorm1d) for norm in self.norms
            ):
                return self._stacked_pair(x, batch, perm)
            block = batch.block(0, self.num_layers)
            pos, neg = self.convs[0].forward_pair(self._dropout(x), block, perm)
            return (
                self._upper_layers(self._finish(0, pos), batch),
                self._upper_layers(self._finish(0, neg), batch),
            )

    def _stacked_pair(self, x: Features, batch: GraphBatch, perm: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward_pair` with both views stacked through every layer, as one graph of
        two disjoint copies (``GraphBatch.paired_block``): one product per layer instead of
        two, and no ``[sources, hidden]`` concatenation of the views' gradients in the
        backward. Row-wise norms only (batch norm would mix the views' statistics)."""
        layout = batch.pair_layout(self.num_layers)
        block = batch.block(0, self.num_layers)
        h = self._finish(
            0, self.convs[0].forward_pair_stacked(self._dropout(x), block, perm, layout)
        )
        outputs = [h]
        for i in range(1, self.num_layers):
            h = self.layer_forward(i, h, batch.paired_block(i, self.num_layers))
            outputs.append(h)
        # The first rows of every layer's output are the seeds of both views (see pair_layout).
        out = self.combine([o[: h.shape[0]] if len(o) > len(h) else o for o in outputs])
        pos, neg = out.split(out.shape[0] // 2)
        return pos, neg

    def forward_transformed(
        self, t: Tensor, batch: GraphBatch, source_perm: Tensor | None = None
    ) -> Tensor:
        """:meth:`forward` from layer 0's transform ``t`` (see :meth:`transform`); with
        ``source_perm``, from ``t[source_perm]`` (row-permuted inputs, DGI's corruption)."""
        with record_function("agc::forward"):
            block = batch.block(0, self.num_layers)
            if source_perm is None:
                h = self.convs[0].propagate(t, block)
            else:
                h = self.convs[0].propagate_permuted(t, block, source_perm)
            return self._upper_layers(self._finish(0, h), batch)

    def _upper_layers(self, h: Tensor, batch: GraphBatch) -> Tensor:
        """Layers ``1 ..`` on layer 0's output ``h``, then jumping knowledge."""
        outputs = [h]
        for i in range(1, self.num_layers):
            h = self.layer_forward(i, h, batch.block(i, self.num_layers))
            outputs.append(h)
        # Earlier layers also computed outer-hop nodes; JK combines the seeds' rows only.
        return self.combine([out[: h.shape[0]] if len(out) > len(h) else out for out in outputs])

    def _finish(self, i: int, h: Tensor) -> Tensor:
        return self.acts[i](self.norms[i](h))

    def _dropout(self, x: Features) -> Features:
        if not self.training or self.dropout == 0:
            return x
        if isinstance(x, SparseMatrix):
            return x.with_values(F.dropout(x.values, self.dropout, training=True))
        return F.dropout(x, self.dropout, training=True)


def _check_options(
    hidden_channels: int,
    num_layers: int,
    gnn_type: str,
    heads: int,
    concat: bool | None,
    dropout: float,
    norm: str,
    residual: bool,
    jk: str,
    plain_last: bool,
) -> None:
    """Refuse options that would not reach any layer, naming the option."""
    if gnn_type not in GNN_TYPES:
        raise UsageError(f"gnn_type: unknown {gnn_type!r}; choose one of {', '.join(GNN_TYPES)}")
    if num_layers < 1:
        raise UsageError(f"num_layers: must be at least 1 (got {num_layers})")
    if hidden_channels < 1:
        raise UsageError(f"hidden_channels: must be at least 1 (got {hidden_channels})")
    if not 0 <= dropout < 1:
        raise UsageError(f"dropout: must be in [0, 1) (got {dropout})")
    if norm not in NORMS:
        raise UsageError(f"norm: unknown {norm!r}; choose one of {', '.join(NORMS)}")
    if jk not in JK_MODES:
        raise UsageError(f"jk: unknown {jk!r}; choose one of {', '.join(JK_MODES)}")
    if heads < 1:
        raise UsageError(f"heads: must be at least 1 (got {heads})")
    if gnn_type not in ATTENTION:
        if heads != 1:
            raise UsageError(f"heads: only applies to gnn_type gat (gnn_type is {gnn_type})")
        if concat is not None:
            raise UsageError(f"concat: only applies to gnn_type gat (gnn_type is {gnn_type})")
    elif concat is not False and hidden_channels % heads:
        raise UsageError(
            f"heads: hidden_channels ({hidden_channels}) must be divisible by heads ({heads}) "
            "when heads are concatenated"
        )
    if residual and gnn_type == "sage":
        raise UsageError(
            "residual: gnn_type sage already adds a linear projection of the layer input "
            "(its root weight); set residual to false"
        )
    if jk in ("cat", "max") and num_layers == 1:
        raise UsageError(f"jk: {jk} combines the outputs of several layers; needs num_layers >= 2")
    if norm != "none" and num_layers == 1 and plain_last:
        raise UsageError(
            "norm: this method's only layer is its plain output layer, which is not "
            "normalised; use num_layers >= 2 or norm none"
        )


def _make_conv(
    gnn_type: str,
    in_channels: int,
    out_channels: int,
    heads: int,
    concat: bool | None,
    residual: bool,
    activation: str,
    layer: int,
) -> TransformPropagateConv:
    if gnn_type == "gcn":
        # Above the first layer the inputs are dense: (Â h) W may be cheaper than Â (h W).
        return GCNConv(in_channels, out_channels, residual=residual, reassociate=layer > 0)
    if gnn_type == "sage":
        return SAGEConv(in_channels, out_channels)
    if gnn_type == "gin":
        act = make_activation(activation, out_channels)
        return GINConv(in_channels, out_channels, act, residual=residual)
    concat = concat is not False
    head_channels = out_channels // heads if concat else out_channels
    conv = GATv2Conv if gnn_type == "gatv2" else GATConv
    return conv(in_channels, head_channels, heads=heads, concat=concat, residual=residual)


def _make_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(channels)
    if norm == "layer":
        return nn.LayerNorm(channels)
    return nn.Identity()
