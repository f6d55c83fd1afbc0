"""A variance-preserving noise schedule over ``T`` discrete timesteps: the cosine one our teachers
train with, or an external model's own table."""

from __future__ import annotations

import math

import torch


class Schedule:
    """``alpha_bar[t]`` for t in 0..T-1; ``Schedule.cosine(T)`` (Nichol & Dhariwal) or
    ``Schedule.tabulated(alpha_bar)`` (an external model's training schedule).

    Timestep 0 is the least noisy one (alpha_bar ~ 1); clean images are treated as
    latents at t = 0, which keeps DDIM inversion and decoding exact inverses on a grid.
    """

    def __init__(self, alpha_bar: torch.Tensor):
        self.T = int(alpha_bar.shape[0])
        self.alpha_bar = alpha_bar.detach().float().cpu()

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
        f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        betas = [min(1 - f((t + 1) / T) / f(t / T), max_beta) for t in range(T)]
        return cls(torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0))

    @classmethod
    def tabulated(cls, alpha_bar: torch.Tensor) -> Schedule:
        return cls(alpha_bar)

    def ab(self, t: torch.Tensor | int) -> torch.Tensor:
        return self.alpha_bar.to(t.device if isinstance(t, torch.Tensor) else "cpu")[t]

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self.ab(t).view(-1, *[1] * (x0.dim() - 1))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def index(self, frac: float) -> int:
        """Timestep index of a fraction of the schedule (0 -> 0, 1 -> T-1)."""
        return int(round(frac * (self.T - 1)))

    def grid(self, t_lo: int, t_hi: int, steps_full: int) -> list[int]:
        """Ascending DDIM grid from t_lo to t_hi with a step density of ``steps_full`` per T."""
        n = max(1, round(steps_full * (t_hi - t_lo) / (self.T - 1)))
        return sorted({int(round(v)) for v in torch.linspace(t_lo, t_hi, n + 1).tolist()})
