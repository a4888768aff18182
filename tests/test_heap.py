"""agc_cli.utils.heap: a training step's large tensors reuse the previous step's pages."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest
import torch

from agc_cli.utils import heap

glibc = pytest.mark.skipif(heap._libc() is None, reason="glibc only")


def _faults_of_second_allocation() -> int:
    """Minor page faults while filling a 64 MB tensor, after one the same size was freed."""
    first = torch.ones(16 * 2**20)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = torch.ones(16 * 2**20)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del second
    return faults


_CONTROL = """
import resource, torch
def faults():
    first = torch.ones(16 * 2**20); del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = torch.ones(16 * 2**20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(min(faults() for _ in range(8)))
"""


@glibc
def test_inside_a_freed_large_tensor_is_reused_without_page_faults():
    pages = 64 * 2**20 // resource.getpagesize()
    with heap.retained_heap() as applied:
        assert applied
        # The first cycles grow the heap (aligned chunks settle after a few), as a training
        # loop's first steps do; then the same sizes come back from it.
        inside = min(_faults_of_second_allocation() for _ in range(8))
    assert inside < pages // 10
    # Control, in a fresh process with glibc's own settings: every cycle faults anew.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", _CONTROL], capture_output=True, text=True,
                          env=env, check=True, timeout=120)  # fmt: skip
    assert int(done.stdout) > pages // 2


@glibc
def test_nested_contexts_restore_only_at_the_outermost_exit():
    pages = 64 * 2**20 // resource.getpagesize()
    with heap.retained_heap():
        with heap.retained_heap():
            pass
        assert heap._depth == 1
        assert min(_faults_of_second_allocation() for _ in range(8)) < pages // 10
    assert heap._depth == 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


@glibc
def test_leaving_hands_the_retained_memory_back():
    with heap.retained_heap():
        block = torch.ones(64 * 2**20)  # 256 MB
        del block
        retained = _rss()
    assert retained - _rss() > 128 * 2**20


def test_disabled_changes_nothing():
    with heap.retained_heap(enabled=False) as applied:
        assert not applied
