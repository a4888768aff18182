"""Continuing a run from a checkpoint, exactly where it stopped.

Settings come from the checkpoint. A few may be overridden (they change neither the model's
shape nor the data); the others are refused with the setting named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agc_cli.engine import checkpoint as ckpt
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.session import Session, open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.errors import CheckpointError, SettingsError
from agc_cli.settings import load_settings

# May change on resume (with a note): they affect speed, length or bookkeeping only.
OVERRIDABLE = {"epochs", "device", "num_workers", "save_every", "save_every_batch",
               "keep_checkpoints", "patience"}  # fmt: skip
# Refused on resume: they change the model's shape, the data or the random streams.
REFUSED = {"model", "gnn_type", "hidden_channels", "num_layers", "heads", "dataset", "seed",
           "n_clusters", "jk", "residual", "norm", "activation", "labeled_only"}  # fmt: skip


@dataclass
class Resumed:
    session: Session
    trainer: Trainer
    checkpoint: Path
    notes: list[str]


def choose_checkpoint(run: RunDir, checkpoint: str | None, best: bool) -> tuple[Path, dict]:
    """The checkpoint to resume from and its loaded state.

    Default: the newest complete one (``last.pt``). If it is unreadable the error names the
    previous one to use with ``--checkpoint``; nothing is overwritten.
    """
    directory = run.checkpoints
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            path = directory / checkpoint
        return path, ckpt.load_checkpoint(path)
    if best:
        return directory / ckpt.BEST, ckpt.load_checkpoint(directory / ckpt.BEST)
    options = ckpt.candidates(directory)
    if not options:
        raise CheckpointError(f"{run.path} has no checkpoint to resume from ({directory} is empty)")
    try:
        return options[0], ckpt.load_checkpoint(options[0])
    except CheckpointError as exc:
        for older in options[1:]:
            try:
                ckpt.load_checkpoint(older)
            except CheckpointError:
                continue
            raise CheckpointError(
                f"{exc}; the previous checkpoint {older.name} is intact: "
                f"agc resume {run.path} --checkpoint {older.name}"
            ) from None
        raise


def resume(
    run_dir: Path, overrides: dict[str, Any], checkpoint: str | None = None, best: bool = False
) -> Resumed:
    """Rebuild the session and trainer of ``run_dir`` from a checkpoint (no training yet)."""
    run = RunDir.open(run_dir)
    path, state = choose_checkpoint(run, checkpoint, best)
    saved = dict(state["settings"])
    notes = []
    for key, value in overrides.items():
        if value is None or saved.get(key) == value:
            continue
        if key in REFUSED:
            raise CheckpointError(
                f"{key}: cannot change on resume ({saved.get(key)!r} → {value!r}); it changes "
                "the model or the data — start a new run with agc train"
            )
        if key not in OVERRIDABLE:
            raise CheckpointError(f"{key}: cannot be overridden on resume")
        notes.append(f"{key}: {saved.get(key)!r} → {value!r} (override)")
        saved[key] = value
    try:
        settings = load_settings(saved)
    except SettingsError as exc:
        raise CheckpointError(f"{path}: stored settings are invalid ({exc})") from None
    session = open_session(settings.model_copy(update={"mini_batch": state["mini_batch"]}))
    trainer = Trainer(
        session.graph, session.model, session.settings, session.device,
        run if session.dist.is_main else None, dist=session.dist,
    )  # fmt: skip
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the model ({' '.join(str(exc).split())[:160]})"
        ) from None
    notes.extend(trainer.notes)
    if overrides.get("epochs") is not None and trainer.state.epoch >= settings.epochs:
        notes.append(f"already at epoch {trainer.state.epoch}: nothing left to train")
    return Resumed(session, trainer, path, notes)
