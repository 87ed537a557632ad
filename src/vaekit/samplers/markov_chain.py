"""The Markov-chain sampler: runs any transition kernel from a chosen start, records a trajectory.

With the default ``EncodeDecodeKernel`` this is the sampler of Creswell, Arulkumaran & Bharath
(2016): start from z_0 ~ p(z) (or a wider Gaussian, or encodings of data) and iterate
decode -> corrupt -> encode, so that the latents move from the prior towards the model's
aggregate posterior, where the decoder was trained.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder
from vaekit.samplers.base import Sampler
from vaekit.samplers.kernels import ChainState, EncodeDecodeKernel, TransitionKernel

STARTS = ("prior", "wide", "data")


@dataclass(frozen=True)
class Trajectory:
    """States of the chains at the recorded steps (0 = the start) and per-step diagnostics.

    ``diagnostics`` holds, for steps 1..T: ``latent_power`` (mean of ||z||²/D over the chains,
    1 under an N(0, I) prior) and, for kernels with an accept/reject step, ``acceptance``
    (fraction of chains that accepted) and the overall ``acceptance_rate``.
    """

    states: dict[int, ChainState]
    diagnostics: dict[str, list[float] | float] = field(default_factory=dict)

    @property
    def final(self) -> ChainState:
        """The state at the last recorded step."""
        return self.states[max(self.states)]


class MarkovChainSampler(Sampler):
    """Draws by running ``steps`` transitions of ``kernel`` from a start distribution.

    Args:
        data: images [N, C, H, W] whose encodings start the chains when ``start="data"``.
        kernel: one Markov step; default ``EncodeDecodeKernel(model, decode=decode)``.
        steps: transitions per chain for ``sample`` / ``sample_latent`` (0 = the start itself).
        start: "prior" (z_0 ~ p(z)), "wide" (z_0 ~ N(0, start_scale² I), a start further from
            the aggregate posterior than the prior) or "data" (z_0 ~ q(z|x), x drawn from data).
        decode: "mean" or "sample", for the images returned and for the default kernel.
    """

    def __init__(
        self,
        model: Autoencoder,
        data: Tensor | None = None,
        *,
        kernel: TransitionKernel | None = None,
        steps: int = 10,
        start: str = "prior",
        start_scale: float = 2.0,
        decode: str = "mean",
    ):
        super().__init__(model, decode=decode)
        if start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
        if start == "data" and data is None:
            raise ValueError("start='data' needs data to encode")
        if steps < 0:
            raise ValueError(f"steps must be non-negative, got {steps}")
        self.kernel = kernel if kernel is not None else EncodeDecodeKernel(model, decode=decode)
        self.data = data
        self.steps = int(steps)
        self.start = start
        self.start_scale = float(start_scale)

    @torch.no_grad()
    def initial_state(
        self, num_chains: int, *, generator: torch.Generator | None = None
    ) -> ChainState:
        """z_0 for ``num_chains`` chains, with x the data encoded or the decoder mean at z_0."""
        if self.start == "data":
            assert self.data is not None
            where = generator.device if generator is not None else self.device
            index = torch.randint(len(self.data), (num_chains,), generator=generator, device=where)
            x = self.data[index.to(self.data.device)].to(self.device)
            return ChainState(z=draw(self.model.encoder(x), generator=generator), x=x)
        z = draw(self.model.prior(), (num_chains,), generator=generator)  # [N, D]
        if self.start == "wide":
            z = self.start_scale * z
        return ChainState(z=z, x=self.model.decode_mean(z))

    @torch.no_grad()
    def run(
        self,
        start: ChainState | int,
        num_steps: int,
        *,
        record: Iterable[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> Trajectory:
        """Run ``num_steps`` transitions from a state (or that many fresh chains).

        ``record`` lists the steps whose states are kept (default: only the last).
        """
        state = (
            start
            if isinstance(start, ChainState)
            else self.initial_state(start, generator=generator)
        )
        keep = {num_steps} if record is None else set(record)
        if any(t < 0 or t > num_steps for t in keep):
            raise ValueError(f"recorded steps must lie in 0..{num_steps}, got {sorted(keep)}")
        states = {0: state} if 0 in keep else {}
        power: list[float] = []
        acceptance: list[float] = []
        for t in range(1, num_steps + 1):
            state = self.kernel.step(state, generator=generator)
            power.append(float(state.z.pow(2).mean()))
            if state.accepted is not None:
                acceptance.append(float(state.accepted.float().mean()))
            if t in keep:
                states[t] = state
        diagnostics: dict[str, list[float] | float] = {"latent_power": power}
        if acceptance:
            diagnostics["acceptance"] = acceptance
            diagnostics["acceptance_rate"] = sum(acceptance) / len(acceptance)
        return Trajectory(states, diagnostics)

    @torch.no_grad()
    def collect(
        self,
        num_chains: int,
        *,
        burn_in: int,
        num_steps: int,
        thin: int = 1,
        generator: torch.Generator | None = None,
    ) -> ChainState:
        """Pool the states of ``num_chains`` chains at every ``thin``-th step after ``burn_in``.

        Returns one ChainState of ``num_chains * ceil(num_steps / thin)`` draws (z and x
        concatenated chain-wise per kept step): long-run samples of the chain's stationary law.
        """
        if burn_in < 0 or num_steps < 1 or thin < 1:
            raise ValueError("need burn_in >= 0, num_steps >= 1 and thin >= 1")
        kept = range(burn_in + 1, burn_in + num_steps + 1, thin)
        trajectory = self.run(num_chains, burn_in + num_steps, record=kept, generator=generator)
        states = [trajectory.states[t] for t in kept]
        return ChainState(z=torch.cat([s.z for s in states]), x=torch.cat([s.x for s in states]))

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.run(num_samples, self.steps, generator=generator).final.z
