"""Continuing a run from a checkpoint, exactly where it stopped.

Settings come from the checkpoint. A few may be overridden (they change neither the model's
shape nor the data); the others are refused with the setting named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agc_cli.engine import checkpoint as ckpt
from agc_cli.engine.distributed import DistContext
from agc_cli.engine.rundir import SETTINGS_FILE, RunDir
from agc_cli.engine.session import Session, open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.errors import CheckpointError, SettingsError, UsageError
from agc_cli.settings import load_settings

# May change on resume (with a note): they affect speed, length or bookkeeping only.
OVERRIDABLE = {"epochs", "device", "num_workers", "save_every", "save_every_batch",
               "checkpoint_interval", "keep_checkpoints", "patience"}  # fmt: skip
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
    previous one to use with ``--checkpoint``; nothing is overwritten. A checkpoint is always
    one of the run's own (inside its ``checkpoints/``, recording its run id).
    """
    if checkpoint is not None and best:
        raise UsageError("--best and --checkpoint name two checkpoints; give one of them")
    directory = run.checkpoints
    if checkpoint is not None:
        path = run.checkpoint_path(checkpoint)
        return path, _load(run, path)
    if best:
        return directory / ckpt.BEST, _load(run, run.checkpoint_path(ckpt.BEST))
    options = ckpt.candidates(directory)
    if not options:
        raise CheckpointError(
            f"{run.path} has no checkpoint to resume from (training stopped before the first "
            f"was written); start it again with `agc train --config {run.path / SETTINGS_FILE}`"
        )
    try:
        return options[0], _load(run, options[0])
    except CheckpointError as exc:
        for older in options[1:]:
            try:
                _load(run, older)
            except CheckpointError:
                continue
            raise CheckpointError(
                f"{exc}; the previous checkpoint {older.name} is intact: "
                f"agc resume {run.path} --checkpoint {older.name}"
            ) from None
        raise


def _load(run: RunDir, path: Path) -> dict[str, Any]:
    state = run.load_checkpoint(path)
    ckpt.require(state, path, ckpt.RESUME_FIELDS)
    return state


def resume(
    run_dir: Path, overrides: dict[str, Any], checkpoint: str | None = None, best: bool = False
) -> Resumed:
    """Rebuild the session and trainer of ``run_dir`` from a checkpoint (no training yet).

    The process takes the run's lock first (rank 0 of a data-parallel run), so a second
    ``agc resume`` or ``agc train`` of the same run is refused while this one runs.
    """
    run = RunDir.open(run_dir, clean=False)  # rank 0 cleans as it takes the lock
    if DistContext.from_env().rank == 0:
        run.lock()
    try:
        return _resume(run, overrides, checkpoint, best)
    except BaseException:
        run.release()
        raise


def _resume(run: RunDir, overrides: dict[str, Any], checkpoint: str | None, best: bool) -> Resumed:
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
        given = [(k, m) for k, m in exc.problems if overrides.get(k) is not None]
        if given:  # the value the user passed is wrong: a usage error
            raise SettingsError(given) from None
        raise CheckpointError(f"{path}: stored settings are invalid ({exc})") from None
    session = open_session(settings.model_copy(update={"mini_batch": state["mini_batch"]}))
    trainer = Trainer(
        session.graph, session.model, session.settings, session.device,
        run if session.dist.is_main else None, dist=session.dist,
    )  # fmt: skip
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the model ({' '.join(str(exc).split())[:160]})"
        ) from None
    notes.extend(trainer.notes)
    if session.dist.is_main:
        run.write_settings(session.settings)  # settings.yaml says what the run now trains with
    if overrides.get("epochs") is not None and trainer.state.epoch >= settings.epochs:
        notes.append(f"already at epoch {trainer.state.epoch}: nothing left to train")
    return Resumed(session, trainer, path, notes)
