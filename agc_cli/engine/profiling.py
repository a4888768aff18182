"""Profiling: labelled pipeline stages and a ``torch.profiler`` wrapper that is a no-op when
disabled, so the training loop has no profiling branches.

Stages are ``record_function`` ranges named ``agc::<stage>``; they cost next to nothing when no
profiler is running and show up by name in the chrome trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile, schedule

STAGES = (
    "sampling",
    "feature fetch",
    "host-to-device copy",
    "forward",
    "loss",
    "backward",
    "optimizer step",
)
PREFIX = "agc::"


def stage(name: str) -> contextlib.AbstractContextManager:
    """A labelled range in the profile (``agc::<name>``)."""
    return record_function(PREFIX + name)


class NullProfiler:
    """The disabled profiler: ``step`` does nothing."""

    def __enter__(self) -> NullProfiler:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def step(self) -> None:
        pass


@dataclass
class ProfileConfig:
    wait: int = 1
    warmup: int = 1
    active: int = 3
    record_shapes: bool = True
    profile_memory: bool = True
    with_stack: bool = False

    @property
    def steps(self) -> int:
        return self.wait + self.warmup + self.active


class StepProfiler:
    """``torch.profiler.profile`` with a wait/warmup/active schedule over training steps."""

    def __init__(self, config: ProfileConfig, device: torch.device):
        self.config = config
        self.device = device
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._profile = profile(
            activities=activities,
            schedule=schedule(wait=config.wait, warmup=config.warmup, active=config.active),
            record_shapes=config.record_shapes,
            profile_memory=config.profile_memory,
            with_stack=config.with_stack,
        )

    def __enter__(self) -> StepProfiler:
        self._profile.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._profile.__exit__(*exc)

    def step(self) -> None:
        self._profile.step()

    @property
    def profile(self):
        return self._profile


@contextlib.contextmanager
def cuda_memory_history(device: torch.device, snapshot: Path) -> Iterator[None]:
    """Record CUDA allocations and dump a snapshot (viewable at pytorch.org/memory_viz)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.memory._record_memory_history(max_entries=100_000)
    try:
        yield
    finally:
        torch.cuda.memory._dump_snapshot(str(snapshot))
        torch.cuda.memory._record_memory_history(enabled=None)


def stage_summary(prof, device: torch.device) -> dict[str, float]:
    """Milliseconds per labelled stage, nested stages subtracted from their parents
    (``loss`` excludes ``forward``, ``sampling`` excludes ``feature fetch``)."""
    use_device = device.type == "cuda"
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith(PREFIX):
            name = event.key[len(PREFIX) :]
            us = event.device_time_total if use_device else event.cpu_time_total
            totals[name] = totals.get(name, 0.0) + us / 1000.0
    for parent, child in (("loss", "forward"), ("sampling", "feature fetch")):
        if parent in totals and child in totals:
            totals[parent] = max(totals[parent] - totals[child], 0.0)
    return {name: totals[name] for name in STAGES if name in totals}
