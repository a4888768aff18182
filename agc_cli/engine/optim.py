"""Several optimizers stepped as one (dense Adam plus SparseAdam for sparse embedding tables)."""

from __future__ import annotations

from typing import Any

import torch


class JointOptimizer:
    """Optimizers over disjoint parameters, behind the one-optimizer interface the trainer and
    the grad scaler use (``param_groups``, ``step``, ``zero_grad``, state dicts).

    ``param_groups`` is the members' groups themselves (the same dicts), so the grad scaler
    unscales every gradient once and a change of ``lr`` reaches the member that owns the group.

    Args:
        optimizers: name -> optimizer; the names key :meth:`state_dict`.
    """

    def __init__(self, **optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers.values() for group in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.optimizers) - set(state)
        if missing:
            raise ValueError(f"optimizer state lacks {', '.join(sorted(missing))}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])
