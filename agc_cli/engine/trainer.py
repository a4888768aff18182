"""One trainer for every model, full-batch and mini-batch.

The loop: (optionally sampled) batch → ``model.loss`` under autocast → scaled backward →
optimizer step every ``accumulate`` batches. Counters live in :class:`TrainState` so a
checkpoint can restore them; the seed order of epoch ``e`` is a pure function of
``(seed, e)`` and each batch's sampling generator of ``(seed, e, batch)``, so a resumed run
draws exactly what the uninterrupted one would have.

Data-parallel (``dist`` with more than one process, see :mod:`agc_cli.engine.distributed`):
each rank trains on its shard of every epoch's seeds under DistributedDataParallel; one small
all-reduce per step agrees on the step's global batch size, a stop request and a non-finite
loss, so every rank leaves the loop at the same step. Epoch losses are averaged over all ranks'
seeds; checkpoints hold every rank's RNG state and are written by rank 0 alone.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch_geometric.data import Data

from agc_cli.data.graph import Graph
from agc_cli.engine import checkpoint as ckpt
from agc_cli.engine.distributed import (
    SINGLE,
    DistContext,
    all_gather_objects,
    all_reduce_sum,
    broadcast_object,
    wrap,
)
from agc_cli.engine.memory import MemoryMonitor, PeakMemory
from agc_cli.engine.optim import JointOptimizer
from agc_cli.engine.profiling import NullProfiler, stage
from agc_cli.engine.progress import NullProgress, Progress
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.runtime import autocast, autocast_dtype, make_grad_scaler, seed_everything
from agc_cli.errors import DivergedError, InterruptedRun, UsageError
from agc_cli.models.base import ClusteringModel
from agc_cli.models.batch import GraphBatch
from agc_cli.sampling import derive_seed, drop_consumed, make_loader, shard_batches
from agc_cli.settings import Settings
from agc_cli.utils.heap import retained_heap


@dataclass
class TrainState:
    """The trainer's counters (what a checkpoint needs besides weights and RNG states)."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch
    seeds_done: int = 0  # seed nodes of the current epoch trained on (all ranks together)
    step: int = 0  # optimizer steps taken
    loss: float = math.nan  # last epoch's mean loss
    best_loss: float = math.inf
    bad_epochs: int = 0  # epochs without improvement (early stopping)
    epoch_loss_sum: float = 0.0  # running sums of the current, unfinished epoch
    epoch_weight: int = 0
    epoch_parts: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# best.pt states up to this size wait in memory for the next periodic checkpoint; larger ones
# (a per-node embedding table) are written when they improve.
BEST_IN_MEMORY_BYTES = 256 * 2**20


def _nbytes(state: Any) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_nbytes(v) for v in state)
    return 0


@dataclass
class TrainResult:
    epochs: int
    seconds: float
    ms_per_epoch: float
    loss: float
    best_loss: float
    peak: PeakMemory
    stopped_early: bool
    history: list[dict[str, Any]]


def build_optimizer(
    model: torch.nn.Module, settings: Settings, device: torch.device | str
) -> torch.optim.Optimizer | JointOptimizer:
    """Adam over ``model``'s parameters that require gradients, with the settings' learning
    rate and weight decay.

    The fused kernel updates every parameter in one pass: about 5x faster on the CPU for a wide
    first layer (8,415 x 512 on Physics), where the step is otherwise memory-bound. Parameters
    that do not require gradients are the model's own business (ARGA's discriminator trains
    itself). Sparse embedding tables (``nn.Embedding(sparse=True)``, S3GC's per-node table) get
    sparse gradients, which Adam refuses: they go to SparseAdam (Adam on the rows a step
    touches; no weight decay), stepped together with the dense Adam, if any (Node2Vec is a
    table alone).
    """
    sparse = {
        id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse
    }
    trained = [p for p in model.parameters() if p.requires_grad]
    dense = [p for p in trained if id(p) not in sparse]
    tables = [p for p in trained if id(p) in sparse]
    if tables and not dense:
        return JointOptimizer(sparse=torch.optim.SparseAdam(tables, lr=settings.lr))
    adam = torch.optim.Adam(
        dense, lr=settings.lr, weight_decay=settings.weight_decay,
        fused=torch.device(device).type in ("cpu", "cuda"),
    )  # fmt: skip
    if not tables:
        return adam
    return JointOptimizer(dense=adam, sparse=torch.optim.SparseAdam(tables, lr=settings.lr))


class Trainer:
    """Train ``model`` on ``graph`` with ``settings``; ``run`` (optional) receives checkpoints,
    metrics and the log."""

    def __init__(
        self,
        graph: Graph,
        model: ClusteringModel,
        settings: Settings,
        device: torch.device,
        run: RunDir | None = None,
        progress: Progress | None = None,
        mini_batch: bool | None = None,
        profiler: NullProfiler | None = None,
        max_steps: int | None = None,
        dist: DistContext | None = None,
    ):
        self.graph = graph
        self.dist = dist or SINGLE
        self.settings = settings
        self.device = device
        self.model = model.to(device)
        self.run = run
        self.progress = progress or NullProgress()
        self.mini_batch = settings.mini_batch if mini_batch is None else mini_batch
        self.optimizer = build_optimizer(self.model, settings, device)
        self.amp_dtype = autocast_dtype(settings.precision, device)
        self.scaler = make_grad_scaler(device, self.amp_dtype)
        self.state = TrainState()
        self.history: list[dict[str, Any]] = []
        self._full_batch: GraphBatch | None = None
        self._stop_signal: int | None = None
        self.log = run.logger() if run is not None else None
        self.profiler = profiler or NullProfiler()
        self.max_steps = max_steps  # stop after this many batches (profiling)
        self._batches_run = 0
        self._last_save = -math.inf  # monotonic time of the last periodic checkpoint
        self._pending_best: dict[str, Any] | None = None  # best.pt not yet written
        self.notes: list[str] = []  # what loading a checkpoint changed (shown by the CLI)
        self._ddp: torch.nn.Module | None = None
        if self.dist.enabled:
            if not self.mini_batch:
                raise UsageError(
                    "mini_batch: data-parallel training shards each epoch's seed nodes; "
                    "full-batch training runs in one process"
                )
            self._ddp = wrap(self.model, device)  # rank 0's initial weights on every rank
            # Dropout masks and corruptions differ per rank (a pure function of seed and rank).
            seed_everything(derive_seed(settings.seed, 0xD15, self.dist.rank))

    # ----- checkpoint state -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint contents (in data-parallel runs a collective: call it on every rank)."""
        ranks = all_gather_objects(
            {"rng": ckpt.rng_state(), "partial": self._partial_sums()}, self.dist
        )
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "settings": self.settings.to_yaml_dict(),
            "run_id": self.run.run_id if self.run is not None else None,  # ties it to its run
            "trainer": self.state.state_dict(),
            "mini_batch": bool(self.mini_batch),
            "world_size": self.dist.world_size,
            "ranks": ranks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; one from another number of processes is re-sharded (noted)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        trainer = dict(state["trainer"])
        if "seeds_done" not in trainer:  # written before positions were counted in seeds
            trainer["seeds_done"] = int(trainer.get("batch", 0)) * self.settings.batch_size
        self.state.load_state_dict(trainer)
        saved_world = int(state.get("world_size", 1))
        ranks = state.get("ranks") or [{"rng": state["rng"], "partial": None}]
        world, rank = self.dist.world_size, self.dist.rank
        if saved_world == world:
            ckpt.set_rng_state(ranks[rank]["rng"])
            if ranks[rank]["partial"] is not None:
                self._set_partial_sums(ranks[rank]["partial"])
            return
        # Another process count: the epoch's remaining seeds are re-sharded from the recorded
        # position, random streams re-derived; the partial epoch's sums go to rank 0.
        seed_everything(derive_seed(self.settings.seed, 0x5EA, self.state.step, rank))
        if rank > 0:
            self.state.epoch_loss_sum, self.state.epoch_weight, self.state.epoch_parts = 0.0, 0, {}
        elif all(r.get("partial") is not None for r in ranks):
            total = [0.0, 0, {}]
            for r in ranks:
                loss_sum, weight, parts = r["partial"]
                total[0] += loss_sum
                total[1] += weight
                for k, v in parts.items():
                    total[2][k] = total[2].get(k, 0.0) + v
            self._set_partial_sums(total)
        self.notes.append(
            f"checkpoint written by {saved_world} process(es), resuming on {world}: the rest of "
            f"epoch {self.state.epoch + 1} ({self.state.seeds_done:,} seeds done) is re-sharded "
            "and random streams are re-derived, so the run is not bit-identical to an "
            "uninterrupted one"
        )

    def _partial_sums(self) -> list[Any]:
        st = self.state
        return [st.epoch_loss_sum, st.epoch_weight, dict(st.epoch_parts)]

    def _set_partial_sums(self, partial: list[Any]) -> None:
        self.state.epoch_loss_sum = float(partial[0])
        self.state.epoch_weight = int(partial[1])
        self.state.epoch_parts = dict(partial[2])

    def save(self, kind: str = "last") -> None:
        """Write ``last.pt`` (plus a numbered copy, pruned to ``keep_checkpoints``) or
        ``best.pt``."""
        if self.run is None and not self.dist.enabled:
            return
        state = self.state_dict()  # every rank takes part (the RNG states are gathered)
        if self.run is None or not self.dist.is_main:
            return
        directory = self.run.checkpoints
        if kind == "best":
            if self.settings.checkpoint_interval and _nbytes(state) <= BEST_IN_MEMORY_BYTES:
                # Held until the next periodic checkpoint (or the end, or an interruption), so
                # best.pt on disk always matches the best loss recorded in last.pt.
                self._pending_best = copy.deepcopy(state)
            else:
                ckpt.save_checkpoint(directory / ckpt.BEST, state)
            return
        self._flush_best()
        self._last_save = time.monotonic()
        ckpt.save_checkpoint(directory / ckpt.LAST, state)
        if self.settings.keep_checkpoints:
            ckpt.save_checkpoint(directory / f"step-{self.state.step:08d}.pt", state)
            ckpt.prune(directory, self.settings.keep_checkpoints)

    def _flush_best(self) -> None:
        if self._pending_best is not None and self.run is not None:
            ckpt.save_checkpoint(self.run.checkpoints / ckpt.BEST, self._pending_best)
        self._pending_best = None

    def _checkpoint_due(self) -> bool:
        """Every ``save_every`` epochs, but no sooner than ``checkpoint_interval`` seconds after
        the previous one (the first is always written)."""
        s = self.settings
        if not s.save_every or self.state.epoch % s.save_every:
            return False
        due = time.monotonic() - self._last_save >= s.checkpoint_interval
        # Writing one is a collective: every rank follows rank 0's clock.
        return bool(broadcast_object(due, self.dist))

    # ----- loop -------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        s = self.settings
        start_epoch = self.state.epoch
        self.progress.start(
            {"epochs": s.epochs, "start_epoch": start_epoch, "mini_batch": self.mini_batch}
        )
        t0 = time.perf_counter()
        # Freed step memory stays in the process on the CPU (agc_cli.utils.heap: no page
        # faults on the same large tensors every step).
        cpu = torch.device(self.device).type == "cpu"
        with MemoryMonitor(self.device) as mon, self._signals(), self.profiler, retained_heap(cpu):
            try:
                while (
                    self.state.epoch < s.epochs
                    and not self.state.stopped_early
                    and not self._step_limit_reached()
                ):
                    self._run_epoch(self.state.epoch)
            except KeyboardInterrupt:
                if self.dist.enabled:  # the other ranks may be inside a collective: no save
                    raise InterruptedRun(
                        "SIGINT: abandoned mid-step; the last checkpoint written stands"
                    ) from None
                self._interrupted(signal.SIGINT)
            self._flush_best()  # a step limit ends the loop without a last checkpoint
        seconds = time.perf_counter() - t0
        done = max(self.state.epoch - start_epoch, 1)
        return TrainResult(
            epochs=self.state.epoch,
            seconds=seconds,
            ms_per_epoch=1000 * seconds / done,
            loss=self.state.loss,
            best_loss=self.state.best_loss,
            peak=mon.peak,
            stopped_early=self.state.stopped_early,
            history=self.history,
        )

    def _run_epoch(self, epoch: int) -> None:
        s = self.settings
        self.model.train()
        self.model.begin_epoch(epoch, self.graph)
        t0 = time.perf_counter()
        batches, num_batches, total_nodes = self._batches(epoch, self.state.batch)
        done_nodes = min(self.state.seeds_done, total_nodes) if self.mini_batch else 0
        self.progress.epoch_start(epoch, s.epochs, total_nodes, done_nodes)
        for index, batch in batches:
            global_size, stop = self._train_step(batch, index, num_batches)
            self.state.batch = index + 1
            self.state.seeds_done += global_size
            self._batches_run += 1
            self.profiler.step()
            self.progress.advance(global_size)
            if self._step_limit_reached():
                return
            if stop is None and not self.dist.enabled:
                stop = self._stop_signal  # alone, a signal stops right after this step
            if stop is not None:
                self._interrupted(stop)
            if (
                self.mini_batch
                and s.save_every_batch
                and self.state.batch % s.save_every_batch == 0
                and self.state.batch < num_batches
            ):
                self.save()
        self._end_epoch(epoch, time.perf_counter() - t0, total_nodes)

    def _batches(self, epoch: int, start: int) -> tuple[Iterator[tuple[int, GraphBatch]], int, int]:
        """Batches of ``epoch`` from batch ``start`` on, their count and the epoch's node count."""
        if not self.mini_batch:
            if self._full_batch is None:
                self._full_batch = GraphBatch.full(self.graph, self.device)
            # start == 1: the epoch's only step was taken before an interruption.
            steps = [(0, self._full_batch)] if start == 0 else []
            return iter(steps), 1, self.graph.num_nodes
        loader = self._loader(epoch)
        seeds_done = self.state.seeds_done
        # A method may choose the epoch's seed batches itself (MAGI's random-walk communities);
        # its choice is a pure function of (seed, epoch), so a resumed epoch replays it.
        order = torch.Generator().manual_seed(derive_seed(self.settings.seed, epoch))
        custom = self.model.seed_batches(self.graph, self.settings.batch_size, order)
        if custom is None:
            loader.set_epoch(epoch, start_seed=seeds_done)
            total = self.graph.num_nodes
            num_batches = start + len(loader)
            sampled = iter(loader)
        else:
            seeds = list(custom)
            total = sum(int(b.numel()) for b in seeds)
            mine = shard_batches(
                drop_consumed(seeds, seeds_done), self.dist.rank, self.dist.world_size
            )
            num_batches = start + len(mine)
            sampled = (self._sample_seeds(loader, b) for b in mine)

        def generate() -> Iterator[tuple[int, GraphBatch]]:
            index = start
            while True:
                with stage("sampling"):
                    data = next(sampled, None)
                if data is None:
                    return
                with stage("host-to-device copy"):
                    batch = GraphBatch.from_sampled(
                        data, self.graph, self.device, self.settings.sampled_norm
                    )
                yield index, batch
                index += 1

        return generate(), num_batches, total

    @staticmethod
    def _sample_seeds(loader, seeds: torch.Tensor):
        """The loader's sampled ``Data`` around explicit seed nodes (input ids = node ids)."""
        out = loader.collate_fn(seeds)
        return out if isinstance(out, Data) else loader.filter_fn(out)

    def fan_out_at(self, epoch: int) -> list[int]:
        """Per-layer fan-out of ``epoch``: constant, or growing linearly from ``fan_out`` to
        ``fan_out_final`` over the epochs (the adaptive schedule). A layer with ``-1`` (all
        neighbours) at either end keeps its start value until the last epoch."""
        s = self.settings
        start, final = s.fan_out_list(), s.fan_out_list(final=True)
        if start == final or s.epochs <= 1:
            return start
        t = epoch / (s.epochs - 1)
        return [
            (b if t == 1 else a) if -1 in (a, b) else max(1, round(a + (b - a) * t))
            for a, b in zip(start, final, strict=True)
        ]

    def _loader(self, epoch: int):
        fan_out = self.fan_out_at(epoch)
        cached = getattr(self, "_loader_cache", None)
        if cached is None or cached[0] != fan_out:
            s = self.settings
            loader = make_loader(
                self.graph,
                input_nodes=None,
                fan_out=fan_out,
                batch_size=s.batch_size,
                shuffle=True,
                num_workers=s.num_workers,
                seed=s.seed,
                sampler=s.sampler,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
            )
            self._loader_cache = (fan_out, loader)
        return self._loader_cache[1]

    def _train_step(
        self, batch: GraphBatch, index: int, num_batches: int
    ) -> tuple[int, int | None]:
        """One batch; returns the step's global batch size and a stop signal if any rank got
        one (the step is finished first)."""
        s = self.settings
        step_now = (index + 1) % s.accumulate == 0 or index + 1 == num_batches
        # Between optimizer steps DDP skips the gradient all-reduce (accumulation).
        sync = contextlib.nullcontext() if self._ddp is None or step_now else self._ddp.no_sync()
        with sync:
            with autocast(self.device, self.amp_dtype), stage("loss"):
                if self._ddp is None:
                    out = self.model.loss(batch)
                    loss, parts = out.loss, out.parts
                else:
                    loss, parts = self._ddp(batch)
            finite = bool(torch.isfinite(loss.detach()).all())
            bad, stopping, global_size = all_reduce_sum(
                [not finite, self._stop_signal is not None, batch.batch_size],
                self.dist,
                self.device,
            )
            if bad:
                value = f"{float(loss.detach()):.4g}" if not finite else "on another process"
                raise DivergedError(
                    f"non-finite loss ({value}) at epoch {self.state.epoch + 1}, batch "
                    f"{index + 1}; stopped before the optimizer step (try a lower --lr)"
                )
            with stage("backward"):
                self.scaler.scale(loss / s.accumulate).backward()
        if step_now:
            with stage("optimizer step"):
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            self.state.step += 1
        weight = int(batch.batch_size)
        self.state.epoch_loss_sum += float(loss.detach()) * weight
        self.state.epoch_weight += weight
        for name, value in parts.items():
            self.state.epoch_parts[name] = (
                self.state.epoch_parts.get(name, 0.0) + float(value) * weight
            )
        stop = None
        if stopping:
            stop = self._stop_signal if self._stop_signal is not None else signal.SIGTERM
        return int(global_size), stop

    def _step_limit_reached(self) -> bool:
        return self.max_steps is not None and self._batches_run >= self.max_steps

    def _end_epoch(self, epoch: int, seconds: float, nodes: int) -> None:
        st, s = self.state, self.settings
        if self.dist.enabled:  # the epoch's loss over every rank's seeds
            names = sorted(st.epoch_parts)
            sums = all_reduce_sum(
                [st.epoch_loss_sum, st.epoch_weight, *(st.epoch_parts[k] for k in names)],
                self.dist,
                self.device,
            )
            st.epoch_loss_sum, st.epoch_weight = sums[0], int(sums[1])
            st.epoch_parts = dict(zip(names, sums[2:], strict=True))
        weight = max(st.epoch_weight, 1)
        st.loss = st.epoch_loss_sum / weight
        record = {
            "epoch": epoch + 1,
            "loss": st.loss,
            **{k: v / weight for k, v in st.epoch_parts.items()},
            "seconds": seconds,
            "nodes_per_s": nodes / seconds if seconds > 0 else None,
            "step": st.step,
        }
        st.epoch += 1
        st.batch = 0
        st.seeds_done = 0
        st.epoch_loss_sum, st.epoch_weight, st.epoch_parts = 0.0, 0, {}
        improved = st.loss < st.best_loss
        if improved:
            st.best_loss, st.bad_epochs = st.loss, 0
        else:
            st.bad_epochs += 1
            if s.patience and st.bad_epochs >= s.patience:
                st.stopped_early = True
        self.history.append(record)
        if self.run is not None and self.dist.is_main:
            self.run.append_metrics(record)
            if self.log:
                self.log.info("epoch %d loss %.6f", epoch + 1, st.loss)
        if improved:
            self.save("best")
        last_epoch = st.epoch == s.epochs or st.stopped_early
        if last_epoch or self._checkpoint_due():
            self.save()
        self.progress.epoch_end(epoch, record)

    # ----- interruption -----------------------------------------------------------------------

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM finish the current step, then checkpoint and stop; a second SIGINT
        abandons the step at once (its gradients are never applied)."""

        def on_signal(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum

        try:
            previous = {
                sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _interrupted(self, signum: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.save()
        where = f" {self.run.path}" if self.run is not None else ""
        name = signal.Signals(signum).name
        stopped = (
            f"{name}: stopped at epoch {self.state.epoch + 1}, batch {self.state.batch}; "
            "checkpoint written"
        )
        raise InterruptedRun(f"{stopped}; continue with: agc resume{where}", stopped=stopped)
