"""Checkpoints: atomic, schema-versioned, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing that
unpickling could turn into code. It holds the model, optimizer and grad-scaler states, the
resolved settings, the trainer's counters and every RNG state, so a resumed run continues
bit-identically on CPU.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agc_cli import __version__
from agc_cli.errors import CheckpointError
from agc_cli.utils.io import atomic_torch_save, reading

SCHEMA_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"
_NUMBERED = re.compile(r"^step-(\d+)\.pt$")


def rng_state() -> dict[str, Any]:
    """Every global RNG state, in forms ``weights_only`` loading accepts."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus schema and agc version) atomically to ``path``."""
    payload = {"schema": SCHEMA_VERSION, "agc_version": __version__, **state}
    atomic_torch_save(payload, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely; every problem is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with reading(path, "truncated or corrupted, or not a checkpoint", CheckpointError):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            reason = " ".join(str(exc).split("\n")[0].split())[:160]
            raise CheckpointError(
                f"checkpoint {path} holds objects that are not plain data (refused: {reason})"
            ) from None
    schema = state.get("schema") if isinstance(state, dict) else None
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise CheckpointError(f"{path} is not an agc checkpoint (no integer schema version)")
    if schema > SCHEMA_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has schema {schema}, newer than this agc "
            f"({__version__}, schema {SCHEMA_VERSION}); upgrade agc"
        )
    return state


# What resuming reads from a checkpoint, and the type each entry must have.
RESUME_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": dict, "optimizer": dict, "scaler": dict, "settings": dict, "trainer": dict,
    "mini_batch": bool,
}  # fmt: skip


def require(state: dict[str, Any], path: Path, fields: dict[str, type | tuple[type, ...]]) -> None:
    """Refuse a checkpoint that lacks one of ``fields`` or holds it with another type."""
    for key, kind in fields.items():
        if key not in state:
            raise CheckpointError(f"{path}: not a complete agc checkpoint (no {key!r})")
        if not isinstance(state[key], kind):
            raise CheckpointError(
                f"{path}: not a complete agc checkpoint ({key!r} is a {type(state[key]).__name__})"
            )


def numbered_checkpoints(directory: Path) -> list[Path]:
    """``step-N.pt`` files, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NUMBERED.match(p.name))]
    return [p for _, p in sorted(found)]


def candidates(directory: Path) -> list[Path]:
    """Checkpoints to resume from, newest first: ``last.pt`` then numbered ones."""
    out = []
    if (directory / LAST).is_file():
        out.append(directory / LAST)
    out.extend(reversed(numbered_checkpoints(directory)))
    return out


def prune(directory: Path, keep: int) -> None:
    """Keep the ``keep`` newest numbered checkpoints (``last``/``best`` are never pruned)."""
    old = numbered_checkpoints(directory)
    for path in old[: max(len(old) - keep, 0)]:
        path.unlink(missing_ok=True)
