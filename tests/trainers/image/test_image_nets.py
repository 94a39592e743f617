"""The DDPM U-Net and the NCSN network: sizes, shapes, and conditioning on t / sigma."""
import torch

from trainers.image.config import load_config
from trainers.image.unet import DDPMNet, NCSNNet, build_net, count_params


def randomise_zero_inits(net, seed=0):
    """The paper zero-initialises the last conv of each block, so at init the output ignores t;
    give those weights random values to test the conditioning path."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net


def test_cifar10_unet_has_the_papers_35_7M_parameters():
    cfg = load_config("ddpm_cifar10")
    n = count_params(build_net(cfg))
    assert abs(n - 35.7e6) / 35.7e6 < 0.02, n


def test_unet_shapes_and_time_conditioning():
    torch.manual_seed(0)
    net = randomise_zero_inits(DDPMNet(in_ch=3, ch=16, ch_mult=(1, 2), num_res_blocks=1,
                                       attn_resolutions=(8,), dropout=0.0, resolution=16)).eval()
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.tensor([10, 10]))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert not torch.allclose(out, net(x, torch.tensor([500, 500])), atol=1e-4)
    # per-example: changing one example's t leaves the other's output unchanged
    out2 = net(x, torch.tensor([10, 900]))
    assert torch.allclose(out[0], out2[0], atol=1e-5) and not torch.allclose(out[1], out2[1], atol=1e-4)


def test_ncsn_net_is_sigma_conditioned_and_scaled_by_one_over_sigma():
    torch.manual_seed(0)
    net = randomise_zero_inits(NCSNNet(in_ch=1, ch=16, ch_mult=(1, 2), num_res_blocks=1,
                                       attn_resolutions=(), dropout=0.0, resolution=8)).eval()
    x = torch.rand(3, 1, 8, 8)
    s1 = torch.full((3,), 1.0)
    s2 = torch.full((3,), 0.1)
    a, b = net(x, s1), net(x, s2)
    assert a.shape == x.shape
    body_a = net.unet(x, s1.log())
    assert torch.allclose(a, body_a / 1.0, atol=1e-6)
    assert torch.allclose(b, net.unet(x, s2.log()) / 0.1, atol=1e-5)
    # not only the 1/sigma scaling: the body itself depends on sigma
    assert not torch.allclose(a * 1.0, b * 0.1, atol=1e-4)


def test_digits_configs_build_small_nets():
    for name in ("ddpm_digits", "ncsn_digits"):
        cfg = load_config(name)
        net = build_net(cfg)
        assert count_params(net) < 5e6
        x = torch.rand(2, 1, 8, 8)
        c = torch.tensor([1, 2]) if cfg.method == "ddpm" else torch.tensor([0.5, 0.1])
        assert net(x, c).shape == x.shape
