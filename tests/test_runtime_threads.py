"""Intra-op threads never exceed the cores the process may use (affinity, cgroup quota)."""

from __future__ import annotations

import os

import pytest
import torch

from agc_cli.engine import runtime
from agc_cli.utils import cores


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_threads_are_cores_divided_by_processes_without_a_quota(monkeypatch):
    monkeypatch.setattr(cores, "cgroup_cpu_quota", lambda: None)
    assert cores.available_cores() == affinity()
    assert runtime.configure_threads(1) == affinity() == torch.get_num_threads()
    assert runtime.configure_threads(affinity() * 4) == 1  # at least one


@pytest.mark.parametrize("quota", [0.5, 1.0, 1.5])
def test_a_cgroup_quota_caps_the_threads(monkeypatch, quota):
    monkeypatch.setattr(cores, "cgroup_cpu_quota", lambda: quota)
    assert cores.available_cores() == 1
    assert runtime.configure_threads(1) == 1 == torch.get_num_threads()


def test_a_quota_above_the_affinity_changes_nothing(monkeypatch):
    monkeypatch.setattr(cores, "cgroup_cpu_quota", lambda: affinity() + 8.0)
    assert cores.available_cores() == affinity()


def test_cgroup_cpu_quota_files_are_read(monkeypatch):
    import pathlib

    files = {"/sys/fs/cgroup/cpu.max": "150000 100000\n"}
    original = pathlib.Path.read_text

    def read_text(self, *args, **kwargs):
        if str(self) in files:
            return files[str(self)]
        if str(self).startswith("/sys/fs/cgroup"):
            raise OSError("absent")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    assert cores.cgroup_cpu_quota() == pytest.approx(1.5)
    files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"
    assert cores.cgroup_cpu_quota() is None
    # cgroup v1
    del files["/sys/fs/cgroup/cpu.max"]
    files["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "200000\n"
    files["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] = "100000\n"
    assert cores.cgroup_cpu_quota() == pytest.approx(2.0)
    files["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "-1\n"
    assert cores.cgroup_cpu_quota() is None
