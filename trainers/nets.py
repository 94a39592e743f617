"""Small 2D score networks.

- `ScoreMLP(cond=None)`     s_θ(x): the network outputs the score vector directly.
- `ScoreMLP(cond="sigma")`  s_θ(x, σ) = net(x, emb(log σ)) / σ  — NCSNv2's 1/σ output scaling plus a
                            Fourier embedding of log σ, so one net serves every noise level.
- `ScoreMLP(cond="time")`   ε_θ(x_t, t): DDPM's ε-prediction with a sinusoidal embedding of t (0-based).
- `EBM(EnergyMLP(...))`     an energy f_θ(x[, c]); its score is −∇ₓ f_θ by autograd (docs/math.md §1).

All take `forward(x, c=None)` with x of shape (N, 2) and c of shape (N,) (σ values or timesteps).
With `n_classes` = C > 0 a network is class-conditional (issue #22): a learned class embedding (C + 1
rows, row C the null class) joins its input, and `forward(x, c, label)` takes the class per row (N,) or
one int; label None is the null class, so one network gives s(x|c) and s(x) (trainers.conditional).
A training method's `cond` (trainers.methods) says which condition its network takes.
"""
from __future__ import annotations

import functools
import math
import warnings
from types import SimpleNamespace
from typing import List

import torch
import torch.nn.functional as F
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

    def __init__(self, out_dim: int, width: int, depth: int, cond, n_timesteps: int, emb_dim: int = 32,
                 n_classes: int = 0):
        super().__init__()
        if cond not in CONDITIONS:
            raise ValueError(f"cond must be one of {CONDITIONS}, got {cond!r}")
        if depth < 1 or width < 1:
            raise ValueError("width and depth must be at least 1")
        self.cond, self.n_timesteps, self.emb_dim = cond, n_timesteps, emb_dim
        if n_classes < 0:
            raise ValueError(f"n_classes must be 0 (unconditional) or a number of classes, got {n_classes}")
        self.n_classes = int(n_classes)
        in_dim = 2 + (emb_dim if cond else 0) + (emb_dim if n_classes else 0)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else width, width), nn.SiLU()]
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        if n_classes:        # made after the layers: an unconditional network draws the same weights as before
            self.class_embedding = nn.Embedding(n_classes + 1, emb_dim)

    def _labels(self, label, x: torch.Tensor) -> torch.Tensor:
        """The class index per row (N,) long: label None → the null class n_classes."""
        if label is None:
            return torch.full((len(x),), self.n_classes, dtype=torch.long, device=x.device)
        label = torch.as_tensor(label, device=x.device, dtype=torch.long)
        if label.ndim == 0:
            label = label.expand(len(x))
        if len(label) and (int(label.min()) < 0 or int(label.max()) > self.n_classes):
            raise ValueError(f"class labels must lie in 0…{self.n_classes - 1} (or {self.n_classes}: the null "
                             f"class), got {int(label.min())}…{int(label.max())}")
        return label

    def _embed(self, c: torch.Tensor) -> torch.Tensor:
        if self.cond == "sigma":
            # log σ ∈ roughly [-7, 3]: scale so the embedding's frequencies resolve it.
            return sinusoidal_embedding(torch.log(c) * 100.0, self.emb_dim)
        return sinusoidal_embedding(c, self.emb_dim)

    def _inputs(self, x: torch.Tensor, c, label=None) -> torch.Tensor:
        if self.n_classes:
            return torch.cat([self._inputs_no_class(x, c), self.class_embedding(self._labels(label, x))], dim=1)
        if label is not None:
            raise ValueError("this network is not class-conditional: it takes no label")
        return self._inputs_no_class(x, c)

    def _inputs_no_class(self, x: torch.Tensor, c) -> torch.Tensor:
        if self.cond is None:
            return x
        if c is None:
            raise ValueError(f"this network is conditioned on {self.cond}: pass c")
        c = torch.as_tensor(c, device=x.device)
        if c.ndim == 0:
            c = c.expand(len(x))
        return torch.cat([x, self._embed(c)], dim=1)


class ScoreMLP(_MLP):
    INFER_ROWS = 2048       # rows per chunk in `infer`: 2048 × width-128 activations (1 MiB) stay in cache

    def __init__(self, width: int = 128, depth: int = 3, cond=None, n_timesteps: int = 1000, n_classes: int = 0):
        super().__init__(2, width, depth, cond, n_timesteps, n_classes=n_classes)

    def forward(self, x: torch.Tensor, c=None, label=None) -> torch.Tensor:
        return self._scaled(self.net(self._inputs(x, c, label)), c)

    def _scaled(self, out: torch.Tensor, c) -> torch.Tensor:
        """NCSNv2's output scaling: f/σ for cond="sigma", else f unchanged."""
        if self.cond != "sigma":
            return out
        sigma = torch.as_tensor(c, device=out.device, dtype=out.dtype)
        return out / (sigma[:, None] if sigma.ndim else sigma)

    @torch.no_grad()
    def infer(self, batches: list, label: int | None = None) -> list[torch.Tensor]:
        """[forward(x, c) for (x, c) in batches], without autograd and faster on a CPU (what the
        Samplers tab spends its frames on). A condition shared by every row of a batch (one sampler
        step: one σ or t) enters once, as a bias of the first layer (W [x; emb] + b = W_x x + (W_e emb
        + b)); the layers run in TorchScript (`_mlp_rows`) over chunks of INFER_ROWS rows, in place in
        two cache-sized buffers. One scripted call holds Python's GIL once instead of once per layer,
        so a sampler thread keeps its speed while the GUI thread draws. Equal to `forward` up to float
        rounding (tests/trainers/test_nets.py). A class-conditional network takes one class `label` for
        every batch (None: the null class); it enters the first layer's bias the same way."""
        linears = list(self.net)[0::2]          # Linear, SiLU, …, Linear
        first = linears[0]
        if self.n_classes:
            first = _class_folded(first, self.class_embedding, self._labels(label, first.bias[:1]), self.emb_dim)
        elif label is not None:
            raise ValueError("this network is not class-conditional: it takes no label")
        weights = [lin.weight.t() for lin in linears[1:]]
        biases = [lin.bias for lin in linears[1:]]
        outs = []
        for x, c in batches:
            c = None if self.cond is None else torch.as_tensor(c, device=x.device)
            shared = c is not None and (c.ndim == 0 or (len(c) > 0 and bool((c == c[0]).all())))
            if c is None or shared:
                inp, w_in, bias = x, first.weight[:, :2].t(), first.bias
                if shared:
                    bias = torch.addmm(first.bias, self._embed(c.reshape(-1)[:1]), first.weight[:, 2:].t())[0]
            else:
                inp, w_in, bias = self._inputs_no_class(x, c), first.weight.t(), first.bias
            outs.append(self._scaled(_mlp_rows()(inp, w_in, bias, weights, biases, self.INFER_ROWS), c))
        return outs


def _class_folded(first: nn.Linear, embedding: nn.Embedding, label: torch.Tensor, emb_dim: int):
    """The first layer's (weight, bias) with one class's embedding folded into the bias (its class
    columns dropped), as an object with .weight and .bias."""
    bias = first.bias + embedding(label[:1])[0] @ first.weight[:, -emb_dim:].t()
    return SimpleNamespace(weight=first.weight[:, :-emb_dim], bias=bias)


def _mlp_rows_eager(x: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor, weights: List[torch.Tensor],
                    biases: List[torch.Tensor], rows: int) -> torch.Tensor:
    """SiLU MLP x → (x w_in + b_in) → … → (h weights[-1] + biases[-1]), rows at a time, in place."""
    n = x.shape[0]
    out = torch.empty(n, weights[-1].shape[1], dtype=x.dtype, device=x.device)
    rows = max(1, min(rows, n))
    h = torch.empty(rows, w_in.shape[1], dtype=x.dtype, device=x.device)
    g = torch.empty_like(h)
    for i in range(0, n, rows):
        xi = x[i:i + rows]
        m = xi.shape[0]
        a, b = h[:m], g[:m]
        torch.addmm(b_in, xi, w_in, out=a)
        for j in range(len(weights) - 1):
            F.silu(a, inplace=True)
            torch.addmm(biases[j], a, weights[j], out=b)
            a, b = b, a
        F.silu(a, inplace=True)
        torch.addmm(biases[-1], a, weights[-1], out=out[i:i + m])
    return out


@functools.cache
def _mlp_rows():
    """`_mlp_rows_eager` compiled by TorchScript once, on first use (torch.compile would need a C++
    compiler on the user's machine; TorchScript ships with torch). Eager where scripting fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # torch ≥ 2.9 marks torch.jit deprecated
        try:
            return torch.jit.script(_mlp_rows_eager)
        except Exception:                                        # a torch without TorchScript
            return _mlp_rows_eager


class EnergyMLP(_MLP):
    """Scalar energy f_θ(x[, c]); for cond="sigma" it is divided by σ, so −∇f gets NCSNv2's 1/σ scaling."""

    def __init__(self, width: int = 128, depth: int = 3, cond=None, n_timesteps: int = 1000, n_classes: int = 0):
        super().__init__(1, width, depth, cond, n_timesteps, n_classes=n_classes)

    def forward(self, x: torch.Tensor, c=None, label=None) -> torch.Tensor:
        f = self.net(self._inputs(x, c, label)).squeeze(-1)
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
        self.n_classes = energy.n_classes

    def forward(self, x: torch.Tensor, c=None, label=None) -> torch.Tensor:
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            f = self.energy(x, c, label)
            (grad,) = torch.autograd.grad(f.sum(), x, create_graph=torch.is_grad_enabled() and self.training)
        return -grad


def build_model(kind: str = "mlp", cond=None, width: int = 128, depth: int = 3, n_timesteps: int = 1000,
                n_classes: int = 0) -> nn.Module:
    if kind == "mlp":
        return ScoreMLP(width, depth, cond, n_timesteps, n_classes)
    if kind == "ebm":
        return EBM(EnergyMLP(width, depth, cond, n_timesteps, n_classes))
    raise ValueError(f"unknown model kind {kind!r}; choose mlp or ebm")
