"""Random draws from an optional ``torch.Generator``, on any device.

Models draw their randomness (corruptions, negative pairs, augmentations) through these, so a
run is reproducible from torch's global RNG state, or from an explicit generator when one is
set. A generator lives on one device; the draws are made there and moved.
"""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws from U[0, 1)."""
    if generator is None:
        return torch.rand(n, device=device)
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def randperm(n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation of ``0 .. n - 1``."""
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def randint(
    high: int, size: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """Integers drawn uniformly from ``0 .. high - 1``."""
    if generator is None:
        return torch.randint(high, size, device=device)
    return torch.randint(high, size, generator=generator, device=generator.device).to(device)


def normal(
    size: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """Draws from the standard normal distribution."""
    if generator is None:
        return torch.randn(size, device=device)
    return torch.randn(size, generator=generator, device=generator.device).to(device)
