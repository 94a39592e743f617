"""Class-conditional 2D models (issue #22): one network gives s(x|c) and s(x).

Training (`ToyConfig.n_classes` > 0, any method with noise levels: ncsn, ddpm, …): each batch is drawn
with its classes (`GaussianMixture.sample_labelled`), and each label is replaced by the null class
(index n_classes) with probability `p_uncond` (label dropout, Ho & Salimans 2022), from a generator of
its own (seed cfg.seed + 3), so the method's loss sees the same points and noise as unconditional
training would. `ClassBound(net, label)` is the network with its label bound: what the method's loss
and the ScoreModel wrappers call as net(x, σ or t).

Sampling: `class_score(net, cfg, density, c)` is s(x|c) as a ScoreModel (c None: s(x), the null class),
`guided_score(…, c, w)` CFG's (1 + w) s(x|c) − w s(x) (trainers.guidance), `exact_guided` the same with
the exact scores over the method's range, and `auto_guided` autoguidance with a weaker network.
"""
from __future__ import annotations

import torch
from torch import nn


class ClassBound(nn.Module):
    """net(x, c) with the class `label` bound (an int, a (N,) tensor of labels, or None: the null class)."""

    def __init__(self, net: nn.Module, label):
        super().__init__()
        self.net, self.label, self.cond = net, label, getattr(net, "cond", None)
        if hasattr(net, "infer") and (label is None or isinstance(label, int)):
            self.infer = lambda batches: net.infer(batches, label=label)

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        return self.net(x, c, label=self.label)


def drop_labels(labels: torch.Tensor, n_classes: int, p_uncond: float, generator: torch.Generator) -> torch.Tensor:
    """Each label replaced by the null class n_classes with probability p_uncond."""
    drop = torch.rand(len(labels), generator=generator) < p_uncond
    return torch.where(drop, torch.full_like(labels, n_classes), labels)


def labelled_training_data(cfg, density, gen: torch.Generator):
    """fitting.training_data for a class-conditional config: (sample_batch(n) → (points, labels after
    dropout), the fixed training points or None). The points are the draws unconditional training makes."""
    def check():     # at the first batch: the fixed points alone (a view drawing them) need no match
        if density.n_classes != cfg.n_classes:
            raise ValueError(f"the model has {cfg.n_classes} classes but the density {density.name or ''} has "
                             f"{density.n_classes}")
    drop_gen = torch.Generator().manual_seed(cfg.seed + 3)
    if not cfg.n_data:
        def batch(n):
            check()
            x, y = density.sample_labelled(n, gen)
            return x, drop_labels(y, cfg.n_classes, cfg.p_uncond, drop_gen)
        return batch, None
    points, labels = density.sample_labelled(cfg.n_data, torch.Generator().manual_seed(cfg.seed + 2))

    def fixed(n):
        check()
        idx = torch.randint(len(points), (n,), generator=gen)
        return points[idx], drop_labels(labels[idx], cfg.n_classes, cfg.p_uncond, drop_gen)
    return fixed, points


def _stats(density) -> dict:
    m, c = density.mean(), density.covariance()
    return {"mean": m.tolist(), "var": float(torch.diagonal(c).mean()), "cov": c.tolist()}


def class_score(net, cfg, density, c=None, sigmas=None):
    """s(x|c) of a class-conditional network as a ScoreModel (c: index or name; None: s(x), the null
    class), over the method's σ range; its start is matched to the class's (or the density's) moments."""
    from .fitting import score_model
    if not getattr(net, "n_classes", 0):
        raise ValueError("this network is not class-conditional (train with --conditional)")
    label = None if c is None else density.class_index(c)
    target = density if label is None else density.conditional(label)
    return score_model(ClassBound(net, label), cfg, density, sigmas, _stats(target))


def guided_score(net, cfg, density, c, w: float, sigmas=None):
    """CFG on one class-conditional network: (1 + w) s(x|c) − w s(x)."""
    from .guidance import cfg as cfg_guidance
    return cfg_guidance(class_score(net, cfg, density, c, sigmas), class_score(net, cfg, density, None, sigmas), w)


def exact_guided(cfg, density, c, w: float, sigmas=None):
    """CFG with the exact scores of p(x|c) and p(x), over the method's range (its schedule, its σ levels)."""
    from .fitting import noise_levels, score_model
    from .guidance import cfg as cfg_guidance
    sigmas = sigmas if sigmas is not None else noise_levels(cfg, density)
    return cfg_guidance(score_model(None, cfg, density.conditional(c), sigmas),
                        score_model(None, cfg, density, sigmas), w)


def auto_guided(good, bad, w: float):
    """Autoguidance of two ScoreModels (e.g. class_score of a network and of an earlier checkpoint)."""
    from .guidance import autoguidance
    return autoguidance(good, bad, w)


GUIDE_CHOICES = ("cfg", "auto")


def _load(path, density):
    """(network, cfg, density, σ levels, data stats) of a 2D checkpoint (the CLI's reading of it)."""
    from .fitting import load_checkpoint, noise_levels, sigmas_from_extra, stats_from_extra
    net, cfg, ckpt_density, extra = load_checkpoint(path)
    density = density or ckpt_density
    sigmas = sigmas_from_extra(extra)
    if sigmas is None:
        sigmas = noise_levels(cfg, density)
    return net, cfg, density, sigmas, stats_from_extra(extra)


def sampling_score(ckpt, density, exact: bool, c=None, w: float = 0.0, guide: str = "cfg", bad_ckpt=None):
    """The score model `sample --class C --guidance W [--guide auto --bad-ckpt B]` drives a sampler with:

    - guide "cfg" (c required): (1 + w) s(x|c) − w s(x) from the conditional checkpoint `ckpt`, or from
      the exact scores (exact, or no ckpt) over the checkpoint's range (else the exact score's own);
    - guide "auto": s_good + w (s_good − s_bad) with the good model `ckpt` and the bad `bad_ckpt`
      (each at class c when given and conditional)."""
    from .fitting import score_model
    from .guidance import autoguidance, exact_cfg
    if guide not in GUIDE_CHOICES:
        raise ValueError(f"unknown --guide {guide!r}; choose one of {', '.join(GUIDE_CHOICES)}")
    if guide == "auto":
        if exact or not ckpt or not bad_ckpt:
            raise ValueError("autoguidance needs a trained model: --ckpt GOOD.pt --bad-ckpt BAD.pt (not --score exact)")
        models = []
        for path in (ckpt, bad_ckpt):
            net, cfg, dens, sigmas, stats = _load(path, density)
            if c is not None and getattr(net, "n_classes", 0):
                models.append(class_score(net, cfg, dens, c, sigmas))
            elif c is not None:
                raise ValueError(f"{path} is not class-conditional, so it has no class {c!r} (train with --conditional)")
            else:
                models.append(score_model(net, cfg, dens, sigmas, stats))
        return autoguidance(models[0], models[1], w)
    if bad_ckpt:
        raise ValueError("--bad-ckpt is for --guide auto")
    if c is None:
        raise ValueError("classifier-free guidance needs --class K (an index or a class name)")
    if not ckpt:
        if density is None:
            raise ValueError("give --ckpt, or --score exact with --density D")
        return exact_cfg(density, c, w)
    net, cfg, density, sigmas, _ = _load(ckpt, density)
    if density is None:
        raise ValueError("this checkpoint holds no density, so the exact score needs --density")
    if exact:
        return exact_guided(cfg, density, density.class_index(c), w, sigmas)
    if not getattr(net, "n_classes", 0):
        raise ValueError(f"{ckpt} is not class-conditional (train with --conditional), so it cannot guide by class")
    return guided_score(net, cfg, density, c, w, sigmas)


def for_class(sm, density, c):
    """The class-c version of a ScoreModel: an ExactScore of `density` → the exact score of p(x|c) over
    the same range (and schedule); a class-conditional network's model → a copy with class c bound
    (its start matched to p(x|c)). ValueError for an unconditional network."""
    import copy

    from .score_models import ExactScore
    c = density.class_index(c)
    cond = density.conditional(c)
    if isinstance(sm, ExactScore):
        return ExactScore(cond, sm.sigma_min, sm.sigma_max, getattr(sm, "schedule", None))
    net = getattr(sm, "net", None)
    if not getattr(net, "n_classes", 0):
        raise ValueError("the model is not class-conditional (train it with 'Conditional on class')")
    out = copy.copy(sm)
    out.net = ClassBound(net, c)
    out.extrapolated = []
    return out.with_data_stats(cond.mean(), cov=cond.covariance())


def guide(sm, density, c, w: float):
    """CFG of any ScoreModel `sm` of `density` (exact or a conditional network, answering the null class
    itself): (1 + w) s(x|c) − w s(x)."""
    from .guidance import cfg as cfg_guidance
    return cfg_guidance(for_class(sm, density, c), sm, w)
