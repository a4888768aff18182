"""Device, precision and thread settings for one process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from agc_cli.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device when present, else the CPU; explicit names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"device: {name} requested but CUDA is not available (use --device cpu)"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"device: {name} does not exist ({torch.cuda.device_count()} visible)")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = full fp32)."""
    if precision == "32":
        return None
    if precision == "16":
        if device.type != "cuda":
            raise UsageError("precision: 16 (fp16) needs a CUDA device; use bf16 on CPU")
        return torch.float16
    return torch.bfloat16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A grad scaler that is active only for fp16 on CUDA (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random streams."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(processes: int | None = None) -> int:
    """Use cores ÷ processes intra-op threads (at least one); returns the count.

    ``processes`` defaults to the processes torchrun started on this machine
    (``LOCAL_WORLD_SIZE``), else one.
    """
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // max(processes, 1))
    torch.set_num_threads(threads)
    return threads
