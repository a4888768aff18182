"""Peak memory per stage: host RSS (sampled by a thread) and CUDA max allocated."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psutil
import torch


@dataclass
class PeakMemory:
    rss_bytes: int
    cuda_bytes: int | None


class MemoryMonitor:
    """Track the peak RSS of this process (and its loader workers) and CUDA peak allocation.

    Use as a context manager around one stage; ``peak`` is valid after exit. CUDA numbers are
    read after ``torch.cuda.synchronize()`` so pending kernels are accounted for.
    """

    def __init__(self, device: torch.device | None = None, interval: float = 0.05):
        self.device = device
        self.interval = interval
        self._stop = threading.Event()
        self._peak_rss = 0
        self._thread: threading.Thread | None = None
        self.peak = PeakMemory(0, None)

    def _rss(self) -> int:
        proc = psutil.Process()
        total = proc.memory_info().rss
        try:
            total += sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            pass
        return total

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak_rss = max(self._peak_rss, self._rss())

    def __enter__(self) -> MemoryMonitor:
        self._peak_rss = self._rss()
        if self._cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak_rss = max(self._peak_rss, self._rss())
        cuda = None
        if self._cuda:
            torch.cuda.synchronize(self.device)
            cuda = int(torch.cuda.max_memory_allocated(self.device))
        self.peak = PeakMemory(self._peak_rss, cuda)

    @property
    def _cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"
