"""Small 2D score networks.

- `ScoreMLP(cond=None)`     s_θ(x): the network outputs the score vector directly.
- `ScoreMLP(cond="sigma")`  s_θ(x, σ) = net(x, emb(log σ)) / σ  — NCSNv2's 1/σ output scaling plus a
                            Fourier embedding of log σ, so one net serves every noise level.
- `ScoreMLP(cond="time")`   ε_θ(x_t, t): DDPM's ε-prediction with a sinusoidal embedding of t (0-based).
- `EBM(EnergyMLP(...))`     an energy f_θ(x[, c]); its score is −∇ₓ f_θ by autograd (docs/math.md §1).

All take `forward(x, c=None)` with x of shape (N, 2) and c of shape (N,) (σ values or timesteps).
"""
from __future__ import annotations

import math

import torch
from torch import nn

CONDITIONS = (None, "sigma", "time")


def sinusoidal_embedding(v: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style embedding [cos(v f_i), sin(v f_i)] with geometric frequencies f_i (DDPM, Ho et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=v.device, dtype=torch.float32) / half)
    args = v.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class _MLP(nn.Module):
    """x (and an optional condition embedding) → SiLU MLP → out_dim."""

    def __init__(self, out_dim: int, width: int, depth: int, cond, n_timesteps: int, emb_dim: int = 32):
        super().__init__()
        if cond not in CONDITIONS:
            raise ValueError(f"cond must be one of {CONDITIONS}, got {cond!r}")
        if depth < 1 or width < 1:
            raise ValueError("width and depth must be at least 1")
        self.cond, self.n_timesteps, self.emb_dim = cond, n_timesteps, emb_dim
        in_dim = 2 + (emb_dim if cond else 0)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else width, width), nn.SiLU()]
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def _embed(self, c: torch.Tensor) -> torch.Tensor:
        if self.cond == "sigma":
            # log σ ∈ roughly [-7, 3]: scale so the embedding's frequencies resolve it.
            return sinusoidal_embedding(torch.log(c) * 100.0, self.emb_dim)
        return sinusoidal_embedding(c, self.emb_dim)

    def _inputs(self, x: torch.Tensor, c) -> torch.Tensor:
        if self.cond is None:
            return x
        if c is None:
            raise ValueError(f"this network is conditioned on {self.cond}: pass c")
        c = torch.as_tensor(c, device=x.device)
        if c.ndim == 0:
            c = c.expand(len(x))
        return torch.cat([x, self._embed(c)], dim=1)


class ScoreMLP(_MLP):
    def __init__(self, width: int = 128, depth: int = 3, cond=None, n_timesteps: int = 1000):
        super().__init__(2, width, depth, cond, n_timesteps)

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        out = self.net(self._inputs(x, c))
        if self.cond == "sigma":
            sigma = torch.as_tensor(c, device=x.device, dtype=x.dtype)
            out = out / (sigma[:, None] if sigma.ndim else sigma)
        return out


class EnergyMLP(_MLP):
    """Scalar energy f_θ(x[, c]); for cond="sigma" it is divided by σ, so −∇f gets NCSNv2's 1/σ scaling."""

    def __init__(self, width: int = 128, depth: int = 3, cond=None, n_timesteps: int = 1000):
        super().__init__(1, width, depth, cond, n_timesteps)

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        f = self.net(self._inputs(x, c)).squeeze(-1)
        if self.cond == "sigma":
            sigma = torch.as_tensor(c, device=x.device, dtype=x.dtype)
            f = f / sigma
        return f


class EBM(nn.Module):
    """An energy model's vector field: forward(x, c) = −∇ₓ f_θ(x, c) (the partition function Z_θ drops out).

    For cond=None/"sigma" this is the score. For cond="time" the output is read as ε_θ, like ScoreMLP's,
    so the implied score is −ε_θ/√(1−ᾱ_t) = ∇f/√(1−ᾱ_t): still a conservative field, with energy
    −f/√(1−ᾱ_t). Keeps the θ-graph while training (create_graph); works inside torch.no_grad() too.
    """

    def __init__(self, energy: EnergyMLP):
        super().__init__()
        self.energy = energy
        self.cond = energy.cond

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            f = self.energy(x, c)
            (grad,) = torch.autograd.grad(f.sum(), x, create_graph=torch.is_grad_enabled() and self.training)
        return -grad


def build_model(kind: str = "mlp", cond=None, width: int = 128, depth: int = 3, n_timesteps: int = 1000) -> nn.Module:
    if kind == "mlp":
        return ScoreMLP(width, depth, cond, n_timesteps)
    if kind == "ebm":
        return EBM(EnergyMLP(width, depth, cond, n_timesteps))
    raise ValueError(f"unknown model kind {kind!r}; choose mlp or ebm")
