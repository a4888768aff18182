"""ARGA and ARGVA (Pan et al., IJCAI 2018), https://arxiv.org/abs/1802.04407."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agc_cli.models import rng
from agc_cli.models.base import LossOutput
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder
from agc_cli.models.gae import GAE
from agc_cli.models.vgae import VGAE, reconstruction

# The reference configuration: a 64-wide discriminator, its Adam and the encoder's adversarial
# Adam both at 1e-3 (the authors' code), five discriminator steps per encoder step (PyG's
# ARGVA example; the authors take one).
DISCRIMINATOR_HIDDEN = 64
DISCRIMINATOR_LR = 1e-3
DISCRIMINATOR_STEPS = 5


class Discriminator(nn.Module):
    """MLP ``channels -> hidden -> hidden -> 1``: the logit that a vector was drawn from the
    prior rather than produced by the encoder."""

    def __init__(self, channels: int, hidden: int = DISCRIMINATOR_HIDDEN):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(-1)


def discriminator_loss(discriminator: nn.Module, z: Tensor, prior: Tensor) -> Tensor:
    """Binary cross-entropy with prior samples as real (1) and embeddings as fake (0)."""
    return F.softplus(-discriminator(prior)).mean() + F.softplus(discriminator(z)).mean()


def adversarial_loss(discriminator: nn.Module, z: Tensor) -> Tensor:
    """The encoder's term: cross-entropy of its embeddings labelled real (non-saturating)."""
    return F.softplus(-discriminator(z)).mean()


class AdversarialRegulariser(nn.Module):
    """The adversarial half of ARGA: a discriminator and the encoder's step against it, each
    with its own Adam, as in the authors' code (three optimizers: reconstruction, discriminator,
    generator).

    :meth:`step` runs one round on the current embeddings: :data:`DISCRIMINATOR_STEPS`
    discriminator steps on them (detached), then one generator step of the encoder's
    parameters on the adversarial term. Separate optimizers matter: summed into one loss under
    one Adam, the adversarial gradient of a winning discriminator swamps the reconstruction's
    (agc measured Cora NMI 4 that way, 46 with separate steps). The discriminator's parameters
    do not require gradients, so the trainer's optimizer (which updates those that do) leaves
    them alone; both optimizers' states are in the state dict, so a resumed run continues
    exactly. Under data parallelism the private gradients are averaged over the processes,
    which keeps the discriminator and the encoder identical on every rank.

    Args:
        channels: width of the embeddings.
        encoder: the module whose parameters the generator step updates.
        hidden: width of the discriminator's hidden layers.
        lr: learning rate of both private optimizers.
        steps: discriminator steps per round.
    """

    def __init__(
        self,
        channels: int,
        encoder: nn.Module,
        hidden: int = DISCRIMINATOR_HIDDEN,
        lr: float = DISCRIMINATOR_LR,
        steps: int = DISCRIMINATOR_STEPS,
    ):
        super().__init__()
        self.discriminator = Discriminator(channels, hidden).requires_grad_(False)
        self.steps = steps
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr)
        # A list, not a submodule: the encoder's weights belong to the model's state dict once.
        self._encoder_params = list(encoder.parameters())
        self.g_optimizer = torch.optim.Adam(self._encoder_params, lr=lr)

    def step(self, z: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One round on embeddings ``z`` (with their autograd graph); returns the detached
        ``{"discriminator": ..., "adversarial": ...}`` losses it stepped on."""
        d_loss = self.fit_discriminator(z, generator)
        return {"discriminator": d_loss, "adversarial": self.fool(z)}

    def fit_discriminator(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``steps`` discriminator steps on ``z`` (detached) against fresh prior samples;
        returns the last step's loss."""
        z = z.detach().float()
        params = list(self.discriminator.parameters())
        # Full precision whatever the trainer's autocast: the discriminator is tiny.
        with torch.enable_grad(), torch.autocast(z.device.type, enabled=False):
            self.discriminator.requires_grad_(True)
            try:
                for _ in range(self.steps):
                    prior = rng.normal(tuple(z.shape), z.device, generator)
                    loss = discriminator_loss(self.discriminator, z, prior)
                    _apply(self.d_optimizer, params, torch.autograd.grad(loss, params))
            finally:
                self.discriminator.requires_grad_(False)
        return loss.detach()

    def fool(self, z: Tensor) -> Tensor:
        """One generator step: the encoder's parameters down the adversarial term through
        ``z``; returns the term (detached)."""
        loss = adversarial_loss(self.discriminator, z)
        grads = torch.autograd.grad(loss, self._encoder_params, allow_unused=True)
        _apply(self.g_optimizer, self._encoder_params, grads)
        return loss.detach()

    def evaluate(self, z: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Both losses on ``z`` without a step (evaluation, or no gradients)."""
        with torch.no_grad():
            prior = rng.normal(tuple(z.shape), z.device, generator)
            return {
                "discriminator": discriminator_loss(self.discriminator, z, prior),
                "adversarial": adversarial_loss(self.discriminator, z),
            }

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "discriminator": self.d_optimizer.state_dict(),
            "generator": self.g_optimizer.state_dict(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.d_optimizer.load_state_dict(state["discriminator"])
        self.g_optimizer.load_state_dict(state["generator"])


def _apply(
    optimizer: torch.optim.Optimizer, params: list[Tensor], grads: tuple[Tensor | None, ...]
) -> None:
    """One ``optimizer`` step with ``grads`` (averaged over data-parallel processes), leaving
    the parameters' ``.grad`` as it was: the trainer may be accumulating there."""
    grads = _averaged(grads)
    saved = [p.grad for p in params]
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad
    optimizer.step()
    for param, grad in zip(params, saved, strict=True):
        param.grad = grad


def _averaged(grads: tuple[Tensor | None, ...]) -> tuple[Tensor | None, ...]:
    """The gradients averaged over the data-parallel processes (as they are in one)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return grads
    present = [g for g in grads if g is not None]
    flat = torch.cat([g.reshape(-1) for g in present])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    parts = iter(flat.split([g.numel() for g in present]))
    return tuple(None if g is None else next(parts).view_as(g) for g in grads)


def _with_terms(
    losses: dict[str, Tensor],
    z: Tensor,
    round_parts: dict[str, Tensor],
    regulariser: AdversarialRegulariser,
    generator: torch.Generator | None,
) -> LossOutput:
    """``sum(losses)`` to minimise, every part logged; the adversarial parts come from the
    training round, or (evaluation) from the final embeddings ``z``."""
    parts = round_parts or regulariser.evaluate(z, generator)
    total = sum(losses.values())
    return LossOutput(total, {**{k: v.detach() for k, v in losses.items()}, **parts})


class ARGA(GAE):
    """Adversarially regularised graph auto-encoder: GAE whose embeddings a discriminator
    must not tell apart from samples of ``N(0, I)``.

    A training step is the reference's three: :class:`AdversarialRegulariser` first takes its
    round on the current embeddings (:data:`DISCRIMINATOR_STEPS` discriminator steps on
    ``-mean log sigmoid(D(prior)) - mean log(1 - sigmoid(D(z)))``, then one encoder step on
    ``-mean log sigmoid(D(z))``, each with its own Adam), then the loss returned to the
    trainer is GAE's reconstruction on the updated encoder. The adversarial and
    discriminator losses are logged beside it. Mini-batch, everything runs over the seeds
    (GAE's edge-endpoint batches).

    Paper: https://arxiv.org/abs/1802.04407
    """

    name = "arga"
    paper = "https://arxiv.org/abs/1802.04407"

    def __init__(self, encoder: Encoder):
        super().__init__(encoder)
        self.regulariser = AdversarialRegulariser(encoder.out_channels, encoder)

    def loss(self, batch: GraphBatch) -> LossOutput:
        adversarial = {}
        if self.training and torch.is_grad_enabled():
            adversarial = self.regulariser.step(self.encoder(batch.x, batch), self.generator)
        z = self.encoder(batch.x, batch)
        recon = reconstruction(z, batch, self.generator)
        return _with_terms(
            {"reconstruction": recon}, z, adversarial, self.regulariser, self.generator
        )


class ARGVA(VGAE):
    """Adversarially regularised variational graph auto-encoder: VGAE (reconstruction plus
    ``KL / N``) with ARGA's adversarial round on the sampled latent ``z``. The embedding is
    ``mu``; ``hidden_channels`` must be even.

    Paper: https://arxiv.org/abs/1802.04407
    """

    name = "argva"
    paper = "https://arxiv.org/abs/1802.04407"

    def __init__(self, encoder: Encoder):
        super().__init__(encoder)
        self.regulariser = AdversarialRegulariser(self.latent_channels, encoder)

    def loss(self, batch: GraphBatch) -> LossOutput:
        adversarial = {}
        if self.training and torch.is_grad_enabled():
            adversarial = self.regulariser.step(self.latent(batch)[0], self.generator)
        z, terms = self.latent(batch)
        recon = reconstruction(z, batch, self.generator)
        losses = {"reconstruction": recon, "kl": terms["kl"]}
        return _with_terms(losses, z, adversarial, self.regulariser, self.generator)
