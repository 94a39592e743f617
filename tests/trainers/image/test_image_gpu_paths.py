"""The GPU-only options, run where they can run (issue #24): channels_last and torch.compile in
training on the CPU, DataLoader workers on an image folder, bf16 sampling (CPU autocast), SDPA's
contiguous q/k/v, the reference code's downsampling padding and the NCSNv2 CIFAR-10 config."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainers.image import unet as unet_mod
from trainers.image.config import ConfigError, from_dict, load_config
from trainers.image.datasets import batch_stream, build_dataset
from trainers.image.methods import generate, image_method, image_sampler, sampling_precision
from trainers.image.train import TrainCore, train
from trainers.image.unet import AttnBlock, Downsample, build_net

TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "model.dropout=0.0", "train.batch_size=8", "train.warmup=2", "train.threads=1",
        "train.ckpt_every=0", "train.sample_every=0", "train.log_every=1", "ddpm.T=20"]


def randomise(net, seed=0):
    """Random values for the zero-initialised output convs, so the network's output depends on
    its input (a zero network would make precision comparisons vacuous)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net


def steps(core, n=3, seed=0):
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return torch.stack([core.step(x, torch.Generator().manual_seed(s), 1e-3, s)[0].detach()
                        for s in range(n)])


# ------------------------------------------------------------------ channels_last, torch.compile
def test_channels_last_trains_on_the_cpu_as_nchw_does():
    cores = {}
    for cl in (False, True):
        torch.manual_seed(0)
        cores[cl] = TrainCore(load_config("ddpm_digits", TINY + [f"train.channels_last={str(cl).lower()}"]),
                              torch.device("cpu"), log=lambda m: None)
    def a_conv(core):                   # a 3x3 conv with several input channels (C = 1 is both layouts)
        return next(m for m in core.model.modules() if isinstance(m, torch.nn.Conv2d)
                    and m.kernel_size == (3, 3) and m.in_channels > 1)

    conv = a_conv(cores[True])
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not a_conv(cores[False]).weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    conv.register_forward_hook(lambda m, i, o: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    a, b = steps(cores[False]), steps(cores[True])
    assert seen and all(seen)                             # the batch flows in channels_last
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # same maths, another memory layout
    for p, q in zip(cores[False].model.parameters(), cores[True].model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)


def _inductor_builds_a_kernel() -> str:
    """'' when inductor compiles a small function here, else why not (a missing C++ toolchain)."""
    try:
        f = torch.compile(lambda x: F.silu(x * 2 + 1).sum(1))
        f(torch.randn(4, 8))
    except Exception as e:                                # noqa: BLE001 (the reason is reported)
        return f"torch.compile's inductor backend cannot build a kernel here: {type(e).__name__}: {e}"
    return ""


@pytest.mark.slow
def test_torch_compile_trains_the_same_losses_on_the_cpu(monkeypatch):
    """train.compile=true: the training step through torch.compile gives the eager losses. Inductor
    must build a kernel here (skip, with the reason, only where its toolchain is missing); the U-Net
    itself is compiled with the aot_eager backend (dynamo capture + AOTAutograd: graph breaks,
    autocast, the optimiser around the compiled module), since inductor's C++ build of the whole
    U-Net takes minutes on two shared cores (338 s measured); gpu_check.py compiles it with inductor."""
    why = _inductor_builds_a_kernel()
    if why:
        pytest.skip(why)
    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    losses = {}
    for comp in (False, True):
        torch.manual_seed(0)
        core = TrainCore(load_config("ddpm_digits", TINY + [f"train.compile={str(comp).lower()}"]),
                         torch.device("cpu"), log=lambda m: None)
        assert (core.train_model is not core.model) == comp
        losses[comp] = steps(core, n=2)
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


# ------------------------------------------------------------------ DataLoader workers
def image_folder(root, n=12, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(sub / f"{i:02d}.png")
    return root


def test_dataloader_workers_on_an_image_folder_give_the_same_run(tmp_path):
    folder = image_folder(tmp_path / "imgs")
    over = TINY + ["data.dataset=folder", "data.channels=3", "data.image_size=8", "train.batch_size=4",
                   "train.n_steps=4", "train.precision=fp32", "data.random_flip=true"]
    cfg = load_config("ddpm_digits", over)
    ds = build_dataset(cfg.data, str(folder))
    stream = batch_stream(ds, 4, 0, 0, num_workers=2)
    first = next(stream)
    assert first.dtype == torch.uint8 and first.shape == (4, 3, 8, 8)   # converted on the device
    runs = {}
    for workers in (0, 2):
        c = load_config("ddpm_digits", over + [f"data.num_workers={workers}"])
        runs[workers] = train(c, tmp_path / f"run{workers}", data_dir=str(folder), quiet=True)["losses"]
    assert len(runs[2]) == 4 and runs[2] == runs[0]       # the batches are a function of the step


# ------------------------------------------------------------------ bf16 sampling
def test_bf16_sampling_where_the_run_trained_in_bf16_and_fp32_on_request():
    cfg = load_config("ddpm_digits", TINY + ["train.precision=bf16"])
    net = randomise(build_net(cfg)).eval()
    dtypes = []
    net.unet.conv_in.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    assert sampling_precision(cfg, "cpu") == "bf16"
    assert sampling_precision(load_config("ddpm_digits", TINY), "cpu") == "fp32"   # an fp32 run
    with pytest.raises(ConfigError, match="precision"):
        sampling_precision(cfg, "cpu", "fp8")
    out = {}
    for precision in ("auto", "fp32"):
        dtypes.clear()
        out[precision] = generate(cfg, net, 4, "cpu", seed=3, sampler="ddim", nfe=10,
                                  precision=precision).x
        assert set(dtypes) == {torch.bfloat16 if precision == "auto" else torch.float32}
    assert out["auto"].dtype == torch.float32 and torch.isfinite(out["auto"]).all()
    err = float((out["auto"] - out["fp32"]).norm() / out["fp32"].norm())
    assert 0 < err < 0.05, err          # bf16's 8-bit mantissa, not another sampler


# ------------------------------------------------------------------ the network's pieces
def test_attention_hands_sdpa_contiguous_q_k_v_and_computes_softmax_attention(monkeypatch):
    torch.manual_seed(0)
    blk = AttnBlock(8)
    torch.nn.init.normal_(blk.proj.weight, std=0.2)
    x = torch.randn(2, 8, 4, 4)
    seen = []
    real = F.scaled_dot_product_attention

    def sdpa(q, k, v, *a, **kw):
        seen.append([t.stride(-1) == 1 and t.is_contiguous() for t in (q, k, v)])
        return real(q, k, v, *a, **kw)

    monkeypatch.setattr(unet_mod.F, "scaled_dot_product_attention", sdpa)
    out = blk(x)
    assert seen == [[True, True, True]]
    qkv = blk.qkv(blk.norm(x)).reshape(2, 3, 8, 16)
    q, k, v = qkv[:, 0].transpose(1, 2), qkv[:, 1].transpose(1, 2), qkv[:, 2].transpose(1, 2)
    att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1) @ v       # (N, HW, C)
    ref = x + blk.proj(att.transpose(1, 2).reshape(2, 8, 4, 4))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def tf_same_conv(x, w, b, stride=2):
    """TensorFlow's padding="SAME": pad_total = max((ceil(n/s) − 1)·s + k − n, 0), pad_before =
    pad_total // 2, the rest after; then a valid convolution, written out as a sum over taps."""
    n, k = x.shape[-1], w.shape[-1]
    total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
    xp = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
    m = math.ceil(n / stride)
    out = b.view(1, -1, 1, 1).expand(x.shape[0], -1, m, m).clone()
    for a in range(k):
        for c in range(k):
            patch = xp[..., a:a + stride * m:stride, c:c + stride * m:stride]
            out += torch.einsum("nihw,oi->nohw", patch, w[:, :, a, c])
    return out


@pytest.mark.parametrize("side", [8, 16, 32])
def test_downsampling_pads_as_the_reference_code(side):
    torch.manual_seed(0)
    same, sym = Downsample(4, True, "tf_same"), Downsample(4, True, "symmetric")
    sym.conv.load_state_dict(same.conv.state_dict())
    x = torch.randn(2, 4, side, side)
    ref = tf_same_conv(x, same.conv.weight, same.conv.bias)
    torch.testing.assert_close(same(x), ref, rtol=1e-5, atol=1e-5)
    assert sym(x).shape == ref.shape and not torch.allclose(sym(x), ref, atol=1e-3)   # ours differs
    with pytest.raises(ValueError, match="padding"):
        Downsample(4, True, "reflect")


def test_paper_configs_pad_as_the_reference_and_older_runs_keep_theirs():
    for name in ("ddpm_cifar10", "ddpm_celeba", "ncsn_cifar10", "ncsn_celeba", "ncsnv2_cifar10"):
        assert load_config(name).model.downsample_pad == "tf_same", name
    old = load_config("ddpm_cifar10").to_dict()
    del old["model"]["downsample_pad"]                    # a checkpoint's config from before the key
    assert from_dict(old).model.downsample_pad == "symmetric"
    net = build_net(load_config("ddpm_digits", ["model.downsample_pad=tf_same"]))
    assert [m.pad for m in net.modules() if isinstance(m, Downsample)] == ["tf_same"]
    with pytest.raises(ConfigError, match="downsample_pad"):
        load_config("ddpm_digits", ["model.downsample_pad=same"])


# ------------------------------------------------------------------ NCSNv2's CIFAR-10 recipe
def test_ncsnv2_cifar10_is_ncsnv2s_recipe_beside_the_2019_one():
    cfg = load_config("ncsnv2_cifar10")
    n, t = cfg.ncsn, cfg.train
    assert (n.sigma_max, n.sigma_min, n.n_levels, n.steps_per_level, n.final_denoise) == (50.0, 0.01, 232, 5, True)
    assert (t.lr, t.beta1, t.warmup, t.grad_clip, t.ema_decay, t.batch_size) == (1e-4, 0.9, 0, 0.0, 0.999, 128)
    assert cfg.data.random_flip and cfg.data_range == (0.0, 1.0) and cfg.method == "ncsn"
    s = image_method(cfg).noise_levels().double()
    assert len(s) == 232 and float(s[0]) == pytest.approx(50) and float(s[-1]) == pytest.approx(0.01)
    ratios = s[1:] / s[:-1]                                # geometric: one ratio, (0.01/50)^(1/231)
    assert torch.allclose(ratios, torch.full_like(ratios, (0.01 / 50) ** (1 / 231)), rtol=1e-5)
    sampler, _ = image_sampler(cfg, build_net(load_config("ncsnv2_cifar10", TINY[:4])), "annealed")
    assert sampler.n_steps == 232 * 5 + 1 and sampler.final_denoise
    # the reference steps x + a s + √(2a) z with a = 6.2e-6 σᵢ²/σ_L²: Algorithm 1's αᵢ = 2a
    for i in (0, 100, 231):
        assert sampler.alpha(i) == pytest.approx(2 * 6.2e-6 * float(s[i]) ** 2 / 0.01 ** 2, rel=1e-5)
    assert image_method(cfg).sampler_defaults("annealed").eps == 1.24e-5
    old = load_config("ncsn_cifar10").ncsn                 # the 2019 recipe is still there
    assert (old.sigma_max, old.n_levels, old.steps_per_level) == (1.0, 10, 100)
