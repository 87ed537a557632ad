"""Transition kernels: one Markov step each, on a state (z, x) of a batch of parallel chains.

- ``EncodeDecodeKernel``: the generative-autoencoder chain of Creswell, Arulkumaran & Bharath
  (2016): x ~ p(x|z), x̃ ~ C(x̃|x), z ~ q(z|x̃). Its stationary z-distribution is the model's
  aggregate posterior; with the exact posterior as encoder it is a Gibbs sampler of p(x, z).
- ``PseudoGibbsKernel``: imputation (Rezende, Mohamed & Wierstra 2014, appendix F):
  z ~ q(z|x), then the missing pixels from p(x_missing|z); approximate when q is.
- ``MetropolisWithinGibbsKernel``: imputation (Mattei & Frellsen 2018, MIWAE section 3):
  a widened q(z|x) is only a proposal, accepted with the Metropolis-Hastings ratio, so the chain
  targets p(z, x_missing | x_observed) of the model exactly, however imperfect the encoder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from vaekit.distributions.posteriors import Delta, widened
from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder


@dataclass(frozen=True)
class ChainState:
    """The state of N parallel chains.

    ``z`` [N, D] is the current latent; ``x`` [N, C, H, W] the image the last step encoded (for
    imputation: the completed image, observed pixels fixed). ``accepted`` [N] says which chains
    accepted their last proposal, for kernels with an accept/reject step (else None). ``memo``
    holds what the kernel that made this state computed at its z, for its next step to reuse
    (None: nothing); it never changes the chain's values.
    """

    z: Tensor
    x: Tensor
    accepted: Tensor | None = None
    memo: object | None = field(default=None, repr=False, compare=False)


def _decode(
    model: Autoencoder, z: Tensor, decode: str, generator: torch.Generator | None
) -> Tensor:
    p = model.decoder(z)
    return p.mean if decode == "mean" else draw(p, generator=generator)


def _check_decode(decode: str) -> str:
    if decode not in ("mean", "sample"):
        raise ValueError(f"decode must be 'mean' or 'sample', got {decode!r}")
    return decode


class TransitionKernel(ABC):
    """One step of a Markov chain driven by a trained autoencoder (no gradients)."""

    def __init__(self, model: Autoencoder):
        self.model = model

    @abstractmethod
    def step(self, state: ChainState, *, generator: torch.Generator | None = None) -> ChainState:
        """The next state of every chain."""


class EncodeDecodeKernel(TransitionKernel):
    """z_t -> x ~ p(x|z_t) (or its mean) -> x̃ ~ C(x̃|x) -> z_{t+1} ~ q(z|x̃).

    Args:
        decode: "sample" draws x from p(x|z) (the chain of the paper's theory, a Gibbs sampler
            for an exact encoder); "mean" uses E[x|z] (the usual choice for image figures).
        corrupt: apply the model's corruption, when it has one, before encoding (the chain of a
            denoising model, as in the paper).
    """

    def __init__(self, model: Autoencoder, *, decode: str = "sample", corrupt: bool = True):
        super().__init__(model)
        self.decode = _check_decode(decode)
        self.corrupt = corrupt

    @torch.no_grad()
    def step(self, state: ChainState, *, generator: torch.Generator | None = None) -> ChainState:
        x = _decode(self.model, state.z, self.decode, generator)  # [N, C, H, W]
        x_tilde = self.model.corrupt(x, generator) if self.corrupt else x
        z = draw(self.model.encoder(x_tilde), generator=generator)  # [N, D]
        return ChainState(z=z, x=x)


class ImputationKernel(TransitionKernel):
    """A kernel on p(z, x_missing | x_observed): ``missing`` [N, C, H, W] marks unknown pixels.

    The observed pixels of the state's x never change; ``complete`` writes new values into the
    missing ones only.
    """

    def __init__(self, model: Autoencoder, missing: Tensor, *, decode: str = "sample"):
        super().__init__(model)
        self.missing = missing.bool()
        self.decode = _check_decode(decode)

    def complete(self, x: Tensor, values: Tensor) -> Tensor:
        """x with its missing pixels replaced by ``values`` (same shape)."""
        return torch.where(self.missing, values, x)


class PseudoGibbsKernel(ImputationKernel):
    """z ~ q(z|x), x_missing ~ p(x_missing|z): exact only when q(z|x) = p(z|x)."""

    @torch.no_grad()
    def step(self, state: ChainState, *, generator: torch.Generator | None = None) -> ChainState:
        z = draw(self.model.encoder(state.x), generator=generator)
        x = self.complete(state.x, _decode(self.model, z, self.decode, generator))
        return ChainState(z=z, x=x)


class MetropolisWithinGibbsKernel(ImputationKernel):
    """Metropolis-within-Gibbs imputation: a z-step with a Metropolis-Hastings test, then
    x_missing ~ p(x_missing | z). The chain targets p(z, x_missing | x_observed) of the model
    exactly, however imperfect the encoder (Mattei & Frellsen 2018); the encoder must have a
    Gaussian density (not a Delta). ``decode="mean"`` breaks exactness and exists only for
    figures.

    ``marginal=True`` (the default; needs a decoder whose pixels are an ``Independent`` product,
    as every vaekit likelihood is): the z-step targets p(z | x_observed), with x_missing summed
    out, so z is not tied to the last noisy draw of the missing pixels. The proposal is
    z' ~ q_s(z | x̄(z_t)), where x̄(z) fills the missing pixels with the decoder mean E[x|z] and
    q_s is the encoder's Gaussian with its scale times ``proposal_scale``; it is accepted with
    probability min(1, ρ),
        ρ = p(x_obs|z') p(z') q_s(z_t | x̄(z')) / (p(x_obs|z_t) p(z_t) q_s(z' | x̄(z_t))).
    A q wider than the posterior keeps p/q bounded, which is what makes an independence-type
    proposal mix (Mengersen & Tweedie 1996); p(z | x_observed) is wider than q(z | x) of a full
    image, hence the default 1.5.

    ``marginal=False``: the z-step of Mattei & Frellsen 2018, eq. 9, on p(z | x_t) for the
    completed image x_t: z' ~ q_s(z | x_t),
        ρ = p(x_t|z') p(z') q_s(z_t|x_t) / (p(x_t|z_t) p(z_t) q_s(z'|x_t)).
    """

    def __init__(
        self,
        model: Autoencoder,
        missing: Tensor,
        *,
        decode: str = "sample",
        proposal_scale: float = 1.5,
        marginal: bool = True,
    ):
        super().__init__(model, missing, decode=decode)
        if not proposal_scale > 0:
            raise ValueError(f"proposal_scale must be positive, got {proposal_scale}")
        self.proposal_scale = proposal_scale
        self.marginal = marginal

    def _proposal(self, x: Tensor) -> Distribution:
        """q(z|x) with its scale times ``proposal_scale``."""
        q = self.model.encoder(x)
        if isinstance(q, Delta):
            raise ValueError("Metropolis-within-Gibbs needs an encoder with a density, not a Delta")
        if self.proposal_scale == 1.0:
            return q
        return widened(q, self.proposal_scale)

    def _log_observed(self, z: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(log p(x_observed | z) + log p(z) [N], the decoder mean [N, ...])."""
        p = self.model.decoder(z)
        if not isinstance(p, Independent):
            raise ValueError(
                "marginal Metropolis-within-Gibbs needs a decoder returning an Independent "
                "product over pixels; use marginal=False"
            )
        per_pixel = p.base_dist.log_prob(x).masked_fill(self.missing, 0.0)  # [N, ...]
        return per_pixel.flatten(1).sum(1) + self.model.prior().log_prob(z), p.mean

    @torch.no_grad()
    def step(self, state: ChainState, *, generator: torch.Generator | None = None) -> ChainState:
        if self.marginal:
            return self._marginal_step(state, generator)
        q = self._proposal(state.x)
        proposal = draw(q, generator=generator)  # [N, D]
        prior = self.model.prior()
        log_target_new = self.model.decoder(proposal).log_prob(state.x)
        log_target_old = self.model.decoder(state.z).log_prob(state.x)
        log_target_new = log_target_new + prior.log_prob(proposal)
        log_target_old = log_target_old + prior.log_prob(state.z)
        log_ratio = log_target_new - log_target_old + q.log_prob(state.z) - q.log_prob(proposal)
        u = torch.rand(
            log_ratio.shape, generator=generator, device=log_ratio.device, dtype=log_ratio.dtype
        )
        accepted = torch.log(u) < log_ratio  # [N]; NaN ratios reject
        z = torch.where(accepted[:, None], proposal, state.z)
        x = self.complete(state.x, _decode(self.model, z, self.decode, generator))
        return ChainState(z=z, x=x, accepted=accepted)

    def _marginal_step(self, state: ChainState, generator: torch.Generator | None) -> ChainState:
        """The z-step on p(z | x_observed), then x_missing. The target, the decoder mean and the
        proposal at the current z come from the previous step where it made this state (a
        ``_AtZ`` memo): one decoder and one encoder pass fewer per step, the same values."""
        memo = state.memo
        if isinstance(memo, _AtZ) and memo.kernel is self and memo.z is state.z:
            log_target_old, mean_old = memo.log_target, memo.mean
            q_forward = memo.proposal
            if q_forward is None:
                q_forward = self._proposal(self.complete(state.x, mean_old))
        else:
            log_target_old, mean_old = self._log_observed(state.z, state.x)
            q_forward = self._proposal(self.complete(state.x, mean_old))
        proposal = draw(q_forward, generator=generator)  # [N, D]
        log_target_new, mean_new = self._log_observed(proposal, state.x)
        q_reverse = self._proposal(self.complete(state.x, mean_new))
        log_ratio = (
            log_target_new
            - log_target_old
            + q_reverse.log_prob(state.z)
            - q_forward.log_prob(proposal)
        )
        u = torch.rand(
            log_ratio.shape, generator=generator, device=log_ratio.device, dtype=log_ratio.dtype
        )
        accepted = torch.log(u) < log_ratio  # [N]; NaN ratios reject
        z = torch.where(accepted[:, None], proposal, state.z)
        rows = accepted.view(-1, *[1] * (mean_new.dim() - 1))
        mean = torch.where(rows, mean_new, mean_old)  # E[x|z] at the new z, row by row
        # E[x|z] is the decoder's mean at z: "mean" decoding needs no further decoder pass
        values = mean if self.decode == "mean" else _decode(self.model, z, "sample", generator)
        memo = _AtZ(
            self,
            z,
            torch.where(accepted, log_target_new, log_target_old),
            mean,
            _select_gaussian(accepted, q_reverse, q_forward),
        )
        return ChainState(z=z, x=self.complete(state.x, values), accepted=accepted, memo=memo)


@dataclass(frozen=True)
class _AtZ:
    """What a marginal Metropolis-within-Gibbs step knows at the z it moved to: the target
    log p(x_observed | z) + log p(z) [N], the decoder mean [N, ...] and the proposal
    q_s(z | x̄(z)) (None where it is not a diagonal Gaussian, to be recomputed)."""

    kernel: MetropolisWithinGibbsKernel
    z: Tensor
    log_target: Tensor
    mean: Tensor
    proposal: Distribution | None


def _select_gaussian(keep: Tensor, a: Distribution, b: Distribution) -> Distribution | None:
    """The diagonal Gaussian that is ``a`` in the rows where ``keep`` [N] and ``b`` elsewhere;
    None unless both are ``Independent(Normal)`` over the last dimension."""
    gaussians = all(
        type(q) is Independent and type(q.base_dist) is Normal and q.reinterpreted_batch_ndims == 1
        for q in (a, b)
    )
    if not gaussians:
        return None
    base_a, base_b = a.base_dist, b.base_dist  # type: ignore[attr-defined]
    rows = keep[:, None]
    loc = torch.where(rows, base_a.loc, base_b.loc)
    scale = torch.where(rows, base_a.scale, base_b.scale)
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


# name -> kernel class for ``vaekit impute --method``
IMPUTATION_KERNELS: dict[str, type[ImputationKernel]] = {
    "pseudo-gibbs": PseudoGibbsKernel,
    "mwg": MetropolisWithinGibbsKernel,
}
