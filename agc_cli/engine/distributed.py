"""Data-parallel training across processes with ``torch.distributed`` (gloo on CPU, nccl on GPU).

Processes are started by ``torchrun`` (``torchrun --nproc-per-node 2 -m agc_cli train ...``, or
across machines with its rendezvous flags) or by ``agc train --nproc-per-node N``, which runs
torchrun's launcher in-process (:func:`launch`). Each process reads its place from the
variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), trains
on its shard of each epoch's seeds (:mod:`agc_cli.sampling.shard`) and averages gradients with
``DistributedDataParallel``. Rank 0 alone writes the run directory.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from agc_cli.errors import UsageError


@dataclass(frozen=True)
class DistContext:
    """This process's place among the data-parallel processes (a world of one by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """The place torchrun's variables describe (a world of one when they are absent)."""
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        return cls(
            rank=int(env.get("RANK", "0")),
            world_size=world,
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))),
        )


SINGLE = DistContext()


def under_launcher() -> bool:
    """True inside a process torchrun started (its variables are set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def device_for(name: str, ctx: DistContext) -> str:
    """The device setting for this rank: ``auto``/``cuda`` become ``cuda:LOCAL_RANK``."""
    if not ctx.enabled or name not in ("auto", "cuda"):
        return name
    if torch.cuda.is_available():
        if torch.cuda.device_count() < ctx.local_world_size:
            raise UsageError(
                f"nproc_per_node: {ctx.local_world_size} processes on this machine but "
                f"{torch.cuda.device_count()} GPU(s) visible; use --device cpu or fewer processes"
            )
        return f"cuda:{ctx.local_rank}"
    return "cpu"


def init(device: torch.device) -> DistContext:
    """Join the process group torchrun prepared (gloo for CPU, nccl for CUDA devices).

    Outside torchrun this returns the world of one and starts nothing.
    """
    ctx = DistContext.from_env()
    if not ctx.enabled:
        return SINGLE
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size, backend)


def shutdown(synchronize: bool = False) -> None:
    """Leave the process group (nothing outside torchrun).

    ``synchronize`` (a rank that finished its work normally) waits at a barrier first: a rank
    destroying the group while a peer is still in it can hang there (observed with gloo: rank
    1 gone, rank 0 blocked in ``destroy_process_group``). Never after an error, when a peer
    may never arrive.
    """
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: Sequence[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (float64; the values themselves if alone)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    where = device if ctx.backend == "nccl" else torch.device("cpu")
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=where)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` when alone)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class LossModule(torch.nn.Module):
    """Makes a model's ``loss(batch)`` its ``forward``, which DistributedDataParallel hooks.

    Returns ``(loss, parts)``: a tuple DDP can look through for the tensors autograd reaches.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.model.loss(batch)
        return out.loss, out.parts


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model``'s loss under DistributedDataParallel (parameters broadcast from rank 0).

    Inputs are never moved (``device_ids=None``): batches are built on the device already.
    Models whose loss leaves some parameters without gradients in a step (e.g. a training
    phase that uses only the encoder) declare ``ddp_find_unused_parameters = True``.
    """
    from torch.nn.parallel import DistributedDataParallel

    find_unused = bool(getattr(model, "ddp_find_unused_parameters", False))
    return DistributedDataParallel(
        LossModule(model), device_ids=None, find_unused_parameters=find_unused
    )


def launch(nproc_per_node: int, argv: Sequence[str]) -> int:
    """Run ``python -m agc_cli ARGV`` in ``nproc_per_node`` local processes (torchrun's
    standalone launcher, in-process) and return the exit code of the lowest rank that failed on
    its own (ranks the launcher terminated because of it come last)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # One machine: gloo talks over loopback (a hostname that does not resolve to a reachable
    # address would otherwise fail the rendezvous, as in some containers).
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the ranks report their errors
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc_per_node,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "agc_cli", *argv)
    except ChildFailedError as exc:
        codes = [exc.failures[rank].exitcode for rank in sorted(exc.failures)]
        # A rank that exited on its own failed; the others may have been terminated by the
        # launcher because of it (SIGTERM, -15), whatever their rank: report the former.
        own = [c for c in codes if c > 0]
        code = own[0] if own else codes[0]
        return 128 - code if code < 0 else (code or 1)  # killed by a signal: 128 + signal
    return 0
