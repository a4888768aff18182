"""Setting up a training session from settings: graph, device, mode, model, run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agc_cli.data.graph import Graph
from agc_cli.data.sources import GraphInfo, info_of, load_graph
from agc_cli.engine import distributed
from agc_cli.engine.distributed import SINGLE, DistContext
from agc_cli.engine.planner import Decision, Device, detect_device, recommend
from agc_cli.engine.progress import NullProgress, Progress
from agc_cli.engine.rundir import MODEL_FILE, RunDir
from agc_cli.engine.runtime import configure_threads, resolve_device, seed_everything
from agc_cli.engine.trainer import Trainer, TrainResult
from agc_cli.errors import UsageError
from agc_cli.models.base import ClusteringModel, Tools
from agc_cli.models.registry import get_model_class
from agc_cli.settings import Settings
from agc_cli.utils.io import atomic_torch_save


@dataclass
class Session:
    settings: Settings  # with ``mini_batch`` resolved
    graph: Graph
    device: torch.device
    model: ClusteringModel
    planned: list[Applied]  # the planner's choices applied (settings the user left unset)
    dist: DistContext = SINGLE  # this process's place in a data-parallel run

    @property
    def mode(self) -> str:
        return "mini-batch" if self.settings.mini_batch else "full-batch"

    def summary(self) -> dict[str, object]:
        """What the system panel shows."""
        params = sum(p.numel() for p in self.model.parameters())
        out: dict[str, object] = {
            "dataset": self.graph.name,
            "nodes": f"{self.graph.num_nodes:,}",
            "edges": f"{self.graph.num_edges:,}",
            "features": f"{self.graph.num_features:,}"
            + (" (sparse)" if self.graph.sparse_features else ""),
            "model": self.settings.model,
            "mode": self.mode,
            "encoder": (
                f"{self.settings.gnn_type} × {self.settings.num_layers}, "
                f"hidden {self.settings.hidden_channels}"
                if getattr(self.model, "trainable", True)
                else f"none (non-parametric, {self.settings.num_layers} propagation steps)"
            ),
            "parameters": f"{params:,}",
            "device": str(self.device),
            "precision": self.settings.precision,
        }
        if self.settings.mini_batch:
            out["batch"] = f"{self.settings.batch_size}, fan-out {self.settings.fan_out_list()}"
        if self.device.type == "cuda":
            out["gpu"] = torch.cuda.get_device_name(self.device)
        if self.dist.enabled:
            out["processes"] = (
                f"{self.dist.world_size} ({self.dist.backend}), "
                f"{torch.get_num_threads()} thread(s) each"
            )
        return out


# Settings the planner chooses for a run when the user (flag, env, config or preset) left them
# unset; the other decisions (inference path, storage) are advice that `agc stats` prints.
PLANNED = ("mini_batch", "batch_size", "fan_out", "infer_batch_size")
MINI_BATCH_ONLY = ("batch_size", "fan_out", "infer_batch_size")


@dataclass(frozen=True)
class Applied:
    """A planner decision a session applied: the setting, its value and the reason."""

    setting: str
    value: Any
    reason: str


def plan_settings(
    settings: Settings, info: GraphInfo, device: Device
) -> tuple[Settings, list[Applied]]:
    """``settings`` with every planner decision in :data:`PLANNED` that the user did not set.

    The mode comes first (unless given); batch size, fan-out and inference batch size follow
    only for a mini-batch run. Returns the new settings and what was applied, in that order.
    """
    plan = recommend(info, settings, device)
    chosen = plan.recommendation.decisions
    given = settings.model_fields_set
    applied = []
    for key in PLANNED:
        decision = chosen.get(key)
        if (
            decision is None
            or key in given
            or (key == "mini_batch" and settings.mini_batch is not None)
        ):
            continue
        mini = (
            applied[0].value
            if applied and applied[0].setting == "mini_batch"
            else settings.mini_batch
        )
        if key in MINI_BATCH_ONLY and not mini:
            continue
        if key == "infer_batch_size" and "batch_size" in given:  # the rule follows the user
            decision = Decision(4 * settings.batch_size, "4 × the training batch (no autograd)")
        applied.append(Applied(key, decision.value, decision.reason))
    return settings.model_copy(update={a.setting: a.value for a in applied}), applied


def _kmeans_centres(points: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    from agc_cli.cluster import kmeans

    return kmeans(points, k, seed=seed).centroids


def engine_tools() -> Tools:
    """What methods may use from ``cluster/`` and ``sampling/`` (see :class:`Tools`)."""
    from agc_cli.sampling.random_walk import random_walk

    return Tools(kmeans=_kmeans_centres, random_walk=random_walk)


def build_model(
    settings: Settings, in_channels: int, num_nodes: int, num_classes: int | None
) -> ClusteringModel:
    """The model ``settings.model`` for a graph of these sizes, with the engine's tools bound.

    The one place models are built (sessions, trained runs, benchmarks and tests)."""
    model = get_model_class(settings.model).from_settings(
        in_channels, num_nodes, num_classes, settings
    )
    model.tools = engine_tools()
    return model


def plan_without_data(settings: Settings) -> tuple[Settings, list[Applied]]:
    """The settings a run would use and the planner choices in them, decided from what is known
    without loading the data (catalog metadata, a synthetic spec, a store's ``meta.json``)."""
    from agc_cli.data.info import describe_source

    info = describe_source(settings.dataset, settings.root)
    planned, applied = plan_settings(settings, info, detect_device(None, settings.device))
    resolved = {"mini_batch": bool(planned.mini_batch), "fan_out": planned.fan_out_list()}
    return planned.model_copy(update=resolved), applied


def check_trainable(settings: Settings) -> None:
    """Refuse to train a non-parametric method (before any data is loaded)."""
    if not getattr(get_model_class(settings.model), "trainable", True):
        raise UsageError(
            f"model: {settings.model} is non-parametric (nothing to train); "
            f"`agc run --model {settings.model}` embeds and clusters it in one step"
        )


def check_data_parallel(settings: Settings) -> None:
    """Refuse what data-parallel training cannot do (before any process group is joined)."""
    if settings.mini_batch is False:
        raise UsageError(
            "mini_batch: data-parallel training shards each epoch's seed nodes; "
            "full-batch training runs in one process (drop --full-batch)"
        )
    if not getattr(get_model_class(settings.model), "trainable", True):
        raise UsageError(
            f"model: {settings.model} has no trainable parameters; run it in one process"
        )


def open_session(settings: Settings, graph: Graph | None = None) -> Session:
    """Load the graph, pick device and mode, and build the model (seeded).

    Inside torchrun this joins the process group first (rank ``r`` on ``cuda:LOCAL_RANK`` or
    the CPU); data-parallel training is mini-batch only.
    """
    configure_threads()
    place = DistContext.from_env()
    if place.enabled:
        check_data_parallel(settings)
    device = resolve_device(distributed.device_for(settings.device, place))
    dist = distributed.init(device) if place.enabled else SINGLE
    if graph is None:
        graph = load_graph(
            settings.dataset, settings.root, settings.cache_dir, settings.labeled_only,
            settings.storage,
        )  # fmt: skip
    if dist.enabled and settings.mini_batch is None:
        settings = settings.model_copy(update={"mini_batch": True})
        planned = [Applied("mini_batch", True,
                           f"data-parallel training over {dist.world_size} processes")]  # fmt: skip
    else:
        planned = []
    found = detect_device(None, str(device))
    settings, more = plan_settings(settings, info_of(graph, "loaded"), found)
    planned += more
    # Resolved values, so settings.yaml says what the run used (the mode, the per-layer fan-out
    # a rule of thumb chose).
    settings = settings.model_copy(
        update={"mini_batch": bool(settings.mini_batch), "fan_out": settings.fan_out_list()}
    )
    seed_everything(settings.seed)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    return Session(settings, graph, device, model, planned, dist)


def train(
    session: Session, run: RunDir | None, progress: Progress | None = None
) -> tuple[Trainer, TrainResult]:
    """Train the session's model, writing checkpoints, metrics and final weights into ``run``."""
    trainer = Trainer(
        session.graph, session.model, session.settings, session.device, run,
        progress or NullProgress(), dist=session.dist,
    )  # fmt: skip
    result = trainer.fit()
    if run is not None and session.dist.is_main:
        atomic_torch_save(session.model.state_dict(), run.path / MODEL_FILE)
    return trainer, result


def load_trained(
    run: RunDir, checkpoint: str | None = None
) -> tuple[Settings, ClusteringModel, Graph, Path | None]:
    """The run's settings, its model with the chosen weights, its graph, and the weights file
    (None for a method without weights).

    ``checkpoint``: None = ``best.pt`` if present, else the final ``model.pt``, else
    ``last.pt``; otherwise a file name in ``checkpoints/`` or a path.
    """

    settings = run.settings()
    graph = load_graph(
        settings.dataset, settings.root, settings.cache_dir, settings.labeled_only,
        settings.storage,
    )  # fmt: skip
    seed_everything(settings.seed)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    if not getattr(model, "trainable", True) and checkpoint is None:
        return settings, model, graph, None  # nothing learned: the settings define the model
    if checkpoint is None:
        path = run.weights_file()
        if path is None:
            from agc_cli.errors import CheckpointError

            raise CheckpointError(f"{run.path} holds no weights (no best.pt, model.pt or last.pt)")
    else:
        path = run.checkpoint_path(checkpoint, model_file=True)  # confined to the run
    state = run.load_checkpoint(path) if path.name != MODEL_FILE else {"model": _load_weights(path)}
    if not isinstance(state.get("model"), dict):
        from agc_cli.errors import CheckpointError

        raise CheckpointError(f"{path}: holds no model weights")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        from agc_cli.errors import CheckpointError

        raise CheckpointError(f"weights in {path} do not fit the model: {str(exc)[:160]}") from None
    return settings, model, graph, path


def _load_weights(path: Path) -> dict:
    from agc_cli.errors import CheckpointError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"weights file {path} is unreadable ({type(exc).__name__})") from None
