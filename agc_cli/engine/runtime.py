"""Device, precision and thread settings for one process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from agc_cli.errors import UsageError
from agc_cli.utils.cores import available_cores


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
    (``LOCAL_WORLD_SIZE``), else one. More threads than cores only make every parallel region
    wait for descheduled threads (scikit-learn's k-means ran 10× slower so), so the count never
    exceeds :func:`available_cores`. ``OMP_NUM_THREADS`` is not consulted: torchrun sets it to
    1 for every worker.
    """
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = max(1, available_cores() // max(processes, 1))
    torch.set_num_threads(threads)
    return threads


def free_cores() -> int:
    """Cores no other runnable task is using right now, at least one, at most
    :func:`available_cores`.

    ``/proc/loadavg`` counts the runnable tasks of the whole machine, this one included; where
    it cannot be read, every available core counts as free.
    """
    from pathlib import Path

    cores = available_cores()
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return cores
    return max(1, min(cores, (os.cpu_count() or cores) - (running - 1)))


@contextlib.contextmanager
def threads_within_free_cores() -> Iterator[int]:
    """Within the block, at most :func:`free_cores` intra-op threads (then the count before).

    OpenMP threads spin at the end of every parallel region; next to busy processes, one thread
    descheduled keeps its partners spinning for its whole time slice. On 2 cores next to
    busy neighbours the k-means stage of Cora took 11-19 s with 2 threads and 1.6-2.8 s with 1
    (bench_kmeans.py --busy). Results do not depend on the count beyond the last bits of float
    sums. Yields the count used.
    """
    before = torch.get_num_threads()
    threads = max(1, min(before, free_cores()))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
