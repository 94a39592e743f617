"""The DDPM U-Net (Ho et al. 2020, appendix B) and the noise-conditional network for NCSN.

DDPM U-Net, as in the paper's TensorFlow code (``diffusion_tf/models/unet.py``): a sinusoidal
embedding of the integer timestep -> two dense layers (4*ch wide); at each resolution
``num_res_blocks`` wide-ResNet blocks (GroupNorm(32) -> swish -> 3x3 conv, plus the projected
time embedding, then GroupNorm -> swish -> dropout -> 3x3 conv) with self-attention at the
resolutions listed in ``attn_resolutions`` (16x16 for CIFAR-10); a middle block res-attn-res;
the up path concatenates the skip connections. With ch=128, ch_mult=(1,2,2,2), two blocks per
level and attention at 16x16 it has 35.7M parameters, the paper's CIFAR-10 model.

NCSN network (our variant, stated as the spec asks): the same U-Net body, conditioned on the
noise level through a Gaussian Fourier embedding of log sigma (as NCSN++ in Song et al. 2021),
with the output divided by sigma, NCSNv2's ``s(x, sigma) = f(x, sigma) / sigma`` scaling (Song &
Ermon 2020, technique 3), so its output has the score's magnitude ~1/sigma at every level.
NCSN (2019) itself used a RefineNet with conditional instance normalisation; the spec allows any
sigma conditioning that is stated.
"""
from __future__ import annotations

import math
from math import gcd

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal embedding of a (N,) float/integer tensor -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                           dtype=torch.float32) / (half - 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class GaussianFourierEmbedding(nn.Module):
    """Fixed random Fourier features of a scalar (NCSN++): [sin 2πWx, cos 2πWx], W ~ N(0, s²)."""

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        # A buffer, not a parameter: saved with the weights, never trained.
        self.register_buffer("W", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x.float()[:, None] * self.W[None] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=1)


def _norm(ch: int) -> nn.GroupNorm:
    # The paper uses 32 groups (4+ channels per group at ch >= 128). Small CPU configs must keep
    # several channels per group too: with one channel per group GroupNorm becomes instance norm
    # and subtracts the per-channel time-embedding bias the ResBlock just added, i.e. the net
    # would ignore t. So: at most 32 groups and at least 4 channels per group.
    return nn.GroupNorm(gcd(32, max(1, ch // 4)), ch, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = _norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        # The paper initialises the last conv of each block to zero (identity at init).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # (3, N, HW, C), made contiguous once: SDPA's fused kernels (flash / memory-efficient) need
        # a unit stride in the last dimension; a transposed view (stride HW) sends it to the math kernel
        qkv = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).permute(1, 0, 3, 2).contiguous()
        q, k, v = (a[:, None] for a in qkv.unbind(0))         # (N, 1 head, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out[:, 0].transpose(1, 2).reshape(n, c, h, w)
        return x + self.proj(out)


PADDINGS = ("symmetric", "tf_same")


class Downsample(nn.Module):
    """Halve the side: a stride-2 3x3 conv (or 2x2 average pooling). ``pad`` "symmetric": one pixel
    on every side (PyTorch's padding=1, our default, kept so older runs load unchanged); "tf_same":
    TensorFlow's "SAME" of the reference code (diffusion_tf, ncsnv2's TF ports), none on the top and
    left and one on the bottom and right, so output pixel i sees input rows 2i..2i+2 instead of
    2i−1..2i+1. Same shapes and parameters either way."""

    def __init__(self, ch: int, with_conv: bool, pad: str = "symmetric"):
        super().__init__()
        if pad not in PADDINGS:
            raise ValueError(f"unknown downsampling padding {pad!r}; choose one of {', '.join(PADDINGS)}")
        self.pad = pad
        self.conv = (nn.Conv2d(ch, ch, 3, stride=2, padding=1 if pad == "symmetric" else 0)
                     if with_conv else None)

    def forward(self, x):
        if self.conv is None:
            return F.avg_pool2d(x, 2)
        if self.pad == "tf_same":
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1) if with_conv else None

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class UNet(nn.Module):
    """U-Net body; ``forward(x, c, label)`` with ``c`` the (N,) scalar fed to the embedding.

    With ``n_classes`` = C > 0 it is class-conditional: a learned embedding of the class (C + 1 rows,
    row C the null class) is added to the time embedding; ``label`` is an int or an (N,) tensor of
    classes, None the null class, so one network gives s(x|c) and s(x) (trainers.conditional)."""

    def __init__(self, in_ch: int = 3, ch: int = 128, ch_mult=(1, 2, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions=(16,), dropout: float = 0.1, resolution: int = 32,
                 resamp_with_conv: bool = True, embedding: str = "sinusoidal",
                 downsample_pad: str = "symmetric", n_classes: int = 0):
        super().__init__()
        self.ch = ch
        self.n_classes = int(n_classes)
        temb_ch = 4 * ch
        if embedding == "sinusoidal":
            self.embed = None
        elif embedding == "fourier":
            self.embed = GaussianFourierEmbedding(ch)
        else:
            raise ValueError(f"unknown embedding {embedding!r}")
        self.temb = nn.Sequential(nn.Linear(ch, temb_ch), nn.SiLU(), nn.Linear(temb_ch, temb_ch))
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)

        attn_resolutions = set(attn_resolutions)
        self.down = nn.ModuleList()
        chans = [ch]
        cur, res = ch, resolution
        for level, mult in enumerate(ch_mult):
            out = ch * mult
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(cur, out, temb_ch, dropout))
                cur = out
                if res in attn_resolutions:
                    self.down.append(AttnBlock(cur))
                chans.append(cur)
            if level != len(ch_mult) - 1:
                self.down.append(Downsample(cur, resamp_with_conv, downsample_pad))
                res //= 2
                chans.append(cur)

        self.mid = nn.ModuleList([ResBlock(cur, cur, temb_ch, dropout), AttnBlock(cur),
                                  ResBlock(cur, cur, temb_ch, dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            out = ch * mult
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(cur + chans.pop(), out, temb_ch, dropout))
                cur = out
                if res in attn_resolutions:
                    self.up.append(AttnBlock(cur))
            if level != 0:
                self.up.append(Upsample(cur, resamp_with_conv))
                res *= 2
        assert not chans
        self.norm_out = _norm(cur)
        self.conv_out = nn.Conv2d(cur, in_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        if self.n_classes:     # made last: an unconditional U-Net draws the same weights as before
            self.class_embedding = nn.Embedding(self.n_classes + 1, temb_ch)

    def class_labels(self, label, x: torch.Tensor) -> torch.Tensor:
        """The class per row, (N,) long on x's device: None → the null class n_classes."""
        if not self.n_classes:
            raise ValueError("this network is not class-conditional (model.n_classes = 0): it takes no class")
        if label is None:
            return torch.full((x.shape[0],), self.n_classes, dtype=torch.long, device=x.device)
        label = torch.as_tensor(label, dtype=torch.long).to(x.device, non_blocking=True)
        return label.expand(x.shape[0]) if label.ndim == 0 else label

    def forward(self, x: torch.Tensor, c: torch.Tensor, label=None) -> torch.Tensor:
        if c.ndim == 0:
            c = c.expand(x.shape[0])
        emb = self.embed(c) if self.embed is not None else timestep_embedding(c, self.ch)
        temb = self.temb(emb)
        if self.n_classes:
            temb = temb + self.class_embedding(self.class_labels(label, x))
        elif label is not None:
            self.class_labels(label, x)              # raises: no class on an unconditional network
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            if isinstance(m, ResBlock):
                h = m(h, temb)
                hs.append(h)
            elif isinstance(m, AttnBlock):
                h = m(h)
                hs[-1] = h
            else:
                h = m(h)
                hs.append(h)
        for m in self.mid:
            h = m(h, temb) if isinstance(m, ResBlock) else m(h)
        for m in self.up:
            if isinstance(m, ResBlock):
                h = m(torch.cat([h, hs.pop()], dim=1), temb)
            else:
                h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DDPMNet(nn.Module):
    """epsilon_theta(x_t, t): t is the 0-based integer timestep (paper's t minus 1)."""

    cond = "time"

    def __init__(self, **unet_kwargs):
        super().__init__()
        self.unet = UNet(embedding="sinusoidal", **unet_kwargs)
        self.n_classes = self.unet.n_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, label=None) -> torch.Tensor:
        # float32 out even under bf16 autocast, so losses and samplers stay in fp32
        return self.unet(x, t, label).float()


class NCSNNet(nn.Module):
    """s_theta(x, sigma) = UNet(x, log sigma) / sigma; sigma is a (N,) tensor of noise levels."""

    cond = "sigma"

    def __init__(self, **unet_kwargs):
        super().__init__()
        self.unet = UNet(embedding="fourier", **unet_kwargs)
        self.n_classes = self.unet.n_classes

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, label=None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        out = self.unet(x, sigma.log(), label).float()
        return out / sigma.view(-1, *([1] * (x.ndim - 1)))


def build_net(cfg) -> nn.Module:
    """The network a RunConfig asks for."""
    m = cfg.model
    kwargs = dict(in_ch=cfg.data.channels, ch=m.ch, ch_mult=tuple(m.ch_mult),
                  num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
                  dropout=m.dropout, resolution=cfg.data.image_size,
                  resamp_with_conv=m.resamp_with_conv,
                  downsample_pad=getattr(m, "downsample_pad", "symmetric"),
                  n_classes=getattr(m, "n_classes", 0))
    return NCSNNet(**kwargs) if cfg.method == "ncsn" else DDPMNet(**kwargs)     # fm: the DDPM U-Net fed 1000·t


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
