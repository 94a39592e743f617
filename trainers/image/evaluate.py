"""Evaluate a run: an offline digit judge (digits, MNIST), bits/dim (DDPM runs), and FID / IS
through a well-kept library when present.

Digit judges (``trainers.image.judge``): digits runs are judged by a logistic regression on
scikit-learn's 8x8 digits, MNIST runs by a small CNN fitted on the user's own MNIST training files
(cached in the run folder as ``judge_mnist.pt``); both report mean confidence, confident share,
class coverage and nearest-training distance of the samples beside held-out real digits and noise.

Bits/dim (DDPM runs only): the negative ELBO of ``BPD_N`` held-out images with the discretised
Gaussian decoder (``metrics.ddpm_elbo_nats(decoder="discretised")``, docs/math.md §5.1), images
quantised to 8 bits, in bits per dimension (nats / (D ln 2)). The decoder's variance is by default
Ho et al.'s, β̃₂ (``decoder_variance="reference"``, as ``diffusion_utils_2.py``'s
``posterior_log_variance_clipped``), so the figure can be set beside the papers'; ``"beta1"`` uses β₁
instead; the report names the one used. NCSN runs have no ELBO: the report says so.

FID and IS need Inception-v3 weights. We never download them: they are computed with
``torch-fidelity`` (or ``torchmetrics``, which uses the same network) only when that package is
installed *and* its weights file is already in the torch hub cache; otherwise the report says
what is missing and where it is looked for.

Every evaluation appends one line to ``RUN_DIR/eval.jsonl`` (one JSON object per line, one
``os.write`` of the whole line with O_APPEND, so lines never interleave; a reader skips a torn last
line, as ``read_eval_records`` does), for plotting quality per checkpoint::

    {"step": 3600, "checkpoint": ".../ckpt_00003600.pt", "time": "2026-11-25T16:40:00Z",
     "weights": "ema", "sampler": "ddpm", "nfe": 1000, "n_samples": 500, "seed": 1,
     "judge": "digits" | "mnist" | null, "classifier_test_accuracy": 0.97,
     "samples":   {"mean_confidence", "frac_confident", "class_entropy", "classes_present",
                   "min_class_fraction", "nn_distance_to_train"},
     "reference": {... the same keys, held-out real digits},
     "noise":     {... the same keys, uniform noise},
     "bits_per_dim": 1.23 | null, "bits_per_dim_decoder_variance": "reference" | "beta1" | null,
     "fid": 12.3 | null, "is_mean": 9.1 | null}

Keys of a figure not computed are null (or absent from the three judge dicts when there is no
judge); several lines may share a step (other seeds, samplers or weights).
"""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from .. import metrics
from . import judge
from . import run_layout as layout
from .run_layout import eval_path

CONFIDENT = judge.CONFIDENT
BPD_N = 256                 # held-out images for bits/dim
TORCH_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                      + TORCH_FIDELITY_WEIGHTS)
EVAL_FIGURES = ("mean_confidence", "frac_confident", "class_entropy", "classes_present",
                "min_class_fraction", "nn_distance_to_train")
CLASS_FIGURES = ("share_requested", "share_requested_confident", "nn_within", "output_entropy",
                 "class_entropy", "set_size")      # eval.jsonl's class_figures of a class-conditional evaluation


# -------------------------------------------------------------------------------- judges
def judge_for(cfg, run_dir, data_dir=None) -> judge.Judge | None:
    """The digit judge of a run (the 8x8 digits or MNIST), or None for other datasets; the MNIST
    judge is fitted on the run's MNIST files (``data_dir`` wins over the config's) and cached in
    the run folder."""
    if cfg.data.channels != 1:
        return None
    if cfg.data.dataset == "digits" and cfg.data.image_size == 8:
        return judge.digits_judge()
    if cfg.data.dataset == "mnist":
        return judge.mnist_judge(data_dir or cfg.data.data_dir, run_dir)
    return None


def digits_report(samples01: torch.Tensor, seed: int = 0) -> dict:
    """The 8x8 digits judge's report of samples01: (N, 1, 8, 8) in [0, 1]."""
    if tuple(samples01.shape[1:]) != (1, 8, 8):
        raise ValueError(f"the digits metric needs (N, 1, 8, 8) samples, got {tuple(samples01.shape)}")
    return judge.digits_judge().report(samples01, seed)


# -------------------------------------------------------------------------------- bits/dim
def bits_per_dim_report(cfg, model, images01: torch.Tensor, device="cpu", seed: int = 0,
                        batch_size: int = 500, decoder_variance: str = "reference") -> dict:
    """The DDPM negative ELBO of images01 ((N, C, H, W) in [0, 1], quantised here to 8 bits and
    mapped to the run's data range) with the discretised decoder, in nats per image and in
    bits/dim; every term summed over all T timesteps, one draw of x_t per term (seeded).
    decoder_variance: "reference" (β̃₂, Ho et al.'s code) or "beta1" (β₁): metrics.ddpm_decoder_std."""
    from .methods import image_method

    if cfg.method != "ddpm":
        raise ValueError("bits/dim needs a DDPM run (an ELBO); NCSN runs have none")
    lo, hi = cfg.data_range
    x = (images01.clamp(0, 1) * 255).round() / 255 * (hi - lo) + lo
    sched = image_method(cfg).schedule()
    std = metrics.ddpm_decoder_std(sched, decoder_variance)          # a bad name fails before any work
    parts = {"elbo_nats": 0.0, "prior_nats": 0.0, "diffusion_nats": 0.0, "decoder_nats": 0.0}
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for chunk in x.split(batch_size):
            r = metrics.ddpm_elbo_nats(model, sched, chunk.to(device), cfg.ddpm.sample_variance,
                                       decoder="discretised", data_range=(lo, hi),
                                       decoder_variance=decoder_variance)
            for k in parts:
                parts[k] += r[k] * len(chunk) / len(x)
    dims = int(x[0].numel())
    return {"bits_per_dim": metrics.bits_per_dim(parts["elbo_nats"], dims), **parts,
            "n": int(len(x)), "dims": dims, "T": sched.T, "variance": cfg.ddpm.sample_variance,
            "decoder_variance": decoder_variance, "decoder_std": std}


# -------------------------------------------------------------------------------- FID / IS
def _hub_checkpoint(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def fid_backend() -> tuple[str | None, str]:
    """(backend name or None, explanation)."""
    weights = _hub_checkpoint(TORCH_FIDELITY_WEIGHTS)
    libs = [n for n in ("torch_fidelity", "torchmetrics") if importlib.util.find_spec(n)]
    if not libs:
        return None, ("FID/IS not computed: neither torch-fidelity nor torchmetrics is installed "
                      "(pip install torch-fidelity), and their Inception weights are needed too")
    if not weights.is_file():
        return None, (f"FID/IS not computed: {libs[0]} is installed but its Inception-v3 weights "
                      f"are not at {weights}; we do not download them. Fetch {TORCH_FIDELITY_URL} "
                      f"once and place it there (or set TORCH_HOME)")
    return libs[0], f"FID/IS by {libs[0]} with {weights}"


class _U8(torch.utils.data.Dataset):
    """uint8 (N, 3, H, W) images as a dataset torch-fidelity accepts."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def _to_u8_rgb(x01: torch.Tensor) -> torch.Tensor:
    x = (x01.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


def fid_is(samples01: torch.Tensor, real01: torch.Tensor, backend: str, device) -> dict:
    fake, real = _to_u8_rgb(samples01.cpu()), _to_u8_rgb(real01.cpu())
    if backend == "torch_fidelity":
        import torch_fidelity

        m = torch_fidelity.calculate_metrics(input1=_U8(fake), input2=_U8(real), isc=True,
                                             fid=True, cuda=torch.device(device).type == "cuda",
                                             verbose=False)
        return {"fid": float(m["frechet_inception_distance"]),
                "is_mean": float(m["inception_score_mean"]),
                "is_std": float(m["inception_score_std"])}
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    fid = FrechetInceptionDistance(feature=2048).to(device)
    isc = InceptionScore().to(device)
    for start in range(0, len(real), 256):
        fid.update(real[start:start + 256].to(device), real=True)
    for start in range(0, len(fake), 256):
        fid.update(fake[start:start + 256].to(device), real=False)
        isc.update(fake[start:start + 256].to(device))
    is_mean, is_std = isc.compute()
    return {"fid": float(fid.compute()), "is_mean": float(is_mean), "is_std": float(is_std)}


# -------------------------------------------------------------------------------- entry point
def evaluate_run(run_dir, data_dir=None, n: int | None = None, step: int | None = None,
                 device="cpu", seed: int = 1, batch_size: int = 500, sampler=None,
                 weights: str = "ema", bpd_n: int = BPD_N, record: bool = True,
                 decoder_variance: str = "reference", label: int | None = None, guidance: float = 0.0,
                 **sampler_overrides) -> dict:
    """The report of a run's checkpoint; `sampler` and `sampler_overrides` (nfe, eta, solver, snr,
    sigma_max, sigma_min) as for ``methods.generate``; ``bpd_n`` held-out images for bits/dim (0:
    skip it), its decoder variance ``decoder_variance`` ("reference" β̃₂ or "beta1" β₁);
    ``record``: append the figures to ``RUN_DIR/eval.jsonl``. ``label`` / ``guidance``: a
    class-conditional run's samples of class ``label`` with CFG weight w = ``guidance``; the digit
    judge then also reports the share recognised as that class and their diversity
    (``judge.Judge.class_report``)."""
    from .runtime import cpu_threads
    from .train import load_run

    cfg, model, ckpt, path = load_run(run_dir, step, device, weights=weights)
    # the digits configs ask for 1 thread: on a shared 2-core machine more threads oversubscribe
    threads = cfg.train.threads if torch.device(device).type == "cpu" else 0
    with cpu_threads(threads):
        report = _evaluate(cfg, model, ckpt, path, run_dir, data_dir, n, device, seed,
                           batch_size, sampler, {**sampler_overrides, "label": label, "guidance": guidance},
                           bpd_n, decoder_variance)
    report["weights"] = weights
    if record:
        try:
            report["recorded_in"] = str(append_eval_record(run_dir, eval_record(report, seed)))
        except OSError as e:
            report["record_note"] = f"could not append to {eval_path(run_dir)} ({e.strerror or e})"
    return report


def _evaluate(cfg, model, ckpt, path, run_dir, data_dir, n, device, seed, batch_size, sampler,
              sampler_overrides, bpd_n, decoder_variance="reference"):
    from .datasets import build_dataset, heldout_images
    from .imageio import to_unit
    from .methods import generate

    report = {"run": str(run_dir), "checkpoint": str(path), "step": int(ckpt["step"]),
              "method": cfg.method, "dataset": cfg.data.dataset,
              "training": training_summary(run_dir)}
    # the judge first: a missing or bad MNIST file is reported before minutes of sampling
    run_judge = judge_for(cfg, run_dir, data_dir)
    if cfg.method != "ddpm":
        report["bits_per_dim"] = None
        report["bits_per_dim_message"] = ("bits/dim not available for NCSN runs: a noise-conditional "
                                          "score network defines no ELBO (DDPM runs only)") if cfg.method == "ncsn" \
            else ("bits/dim not available for flow-matching runs: a velocity network defines no ELBO here "
                  "(DDPM runs only)")
    elif bpd_n > 0:
        images, source = heldout_images(cfg.data, data_dir, bpd_n, seed)
        t0 = time.perf_counter()
        report["bits_per_dim"] = {**bits_per_dim_report(cfg, model, images, device, seed, batch_size,
                                                        decoder_variance),
                                  "source": source, "seconds": round(time.perf_counter() - t0, 1)}
    else:
        report["bits_per_dim"] = None
        report["bits_per_dim_message"] = "bits/dim skipped (--bpd-n 0)"
    digits = run_judge is not None and run_judge.name == "digits"
    backend, why = (None, "") if digits else fid_backend()
    if run_judge is None and backend is None:
        # say so before spending minutes on sampling
        report["fid"] = None
        report["message"] = why
        return report
    n = n or (10000 if backend else (500 if digits else 1000))
    t0 = time.perf_counter()
    gen = generate(cfg, model, n, device, seed=seed, sampler=sampler, batch_size=batch_size,
                   **sampler_overrides)
    report["n_samples"] = n
    report["sampler"], report["nfe"] = gen.sampler, gen.nfe
    label = sampler_overrides.get("label")
    if label is not None:
        report["class"], report["guidance"] = int(label), float(sampler_overrides.get("guidance") or 0.0)
    if gen.note:
        report["note"] = gen.note
    report["sampling_seconds"] = round(time.perf_counter() - t0, 1)
    x01 = to_unit(gen.x, cfg.data_range).cpu()
    if run_judge is not None:
        report.update(run_judge.report(x01))
        if label is not None:
            report["class_report"] = run_judge.class_report(x01, int(label))
    if backend is None:
        if not digits:
            report["fid"] = None
            report["message"] = why
        return report
    ds = build_dataset(cfg.data, data_dir)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:max(n, 10000)]
    real = torch.stack([ds[int(i)] for i in idx])
    report.update(fid_is(x01, real, backend, device))
    report["message"] = why
    return report


# -------------------------------------------------------------------------------- eval.jsonl
def eval_record(report: dict, seed: int) -> dict:
    """The line of ``eval.jsonl`` for an evaluation report (format: the module docstring)."""
    bpd = report.get("bits_per_dim")
    rec = {"step": report["step"], "checkpoint": report["checkpoint"],
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "weights": report.get("weights"), "sampler": report.get("sampler"),
           "nfe": report.get("nfe"), "n_samples": report.get("n_samples"), "seed": seed,
           "judge": report.get("judge"),
           "classifier_test_accuracy": report.get("classifier_test_accuracy"),
           "bits_per_dim": bpd["bits_per_dim"] if bpd else None,
           "bits_per_dim_decoder_variance": bpd.get("decoder_variance") if bpd else None,
           "fid": report.get("fid"), "is_mean": report.get("is_mean")}
    if "class" in report:
        rec["class"], rec["guidance"] = report["class"], report["guidance"]
    if "class_report" in report:
        rec["class_figures"] = {k: report["class_report"]["samples"][k] for k in CLASS_FIGURES}
    for key, name in ((layout.EVAL_SAMPLES, "samples"), (layout.EVAL_REFERENCE, "reference_real_test_digits"),
                      (layout.EVAL_NOISE, "reference_uniform_noise")):
        if name in report:
            rec[key] = {k: report[name][k] for k in EVAL_FIGURES}
    return rec


def append_eval_record(run_dir, rec: dict) -> Path:
    """Append one JSON line to ``RUN_DIR/eval.jsonl`` with a single O_APPEND write (concurrent
    writers never interleave inside a line), fsynced; a torn last line left by a kill is closed
    off with a newline first so the new record stands on its own line."""
    path = eval_path(run_dir)
    line = (json.dumps(rec) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_eval_records(run_dir) -> list[dict]:
    """Every whole record of ``RUN_DIR/eval.jsonl``, in the order written ([] when none)."""
    from . import progress

    return progress.read_records(eval_path(run_dir))


def training_summary(run_dir) -> dict:
    """How the run's training went, from ``progress.jsonl`` (a torn last line, left by a kill, is
    skipped): the last logged step and loss, the total steps asked for and how the log ends
    (``done``, ``stopped``, ``failed``, or ``running or killed`` when no closing event follows)."""
    from . import progress as events
    from . import run_layout as layout

    recs = events.read_records(layout.progress_path(run_dir))
    logged = [r for r in recs if "loss" in r and "event" not in r]
    last_event = next((r["event"] for r in reversed(recs) if "event" in r), None)
    ends = (events.DONE, events.STOPPED, events.FAILED)
    return {"logged_step": logged[-1]["step"] if logged else None,
            "last_loss": logged[-1]["loss"] if logged else None,
            "total_steps": next((r["total_steps"] for r in reversed(recs) if "total_steps" in r), None),
            "state": last_event if last_event in ends else ("running or killed" if recs else "no log")}


def decoder_variance_label(b: dict) -> str:
    """How a bits/dim figure's decoder variance reads in a report ("σ² = β̃₂ (Ho et al.'s)" or "σ² = β₁")."""
    name = b.get("decoder_variance", "beta1")      # records before the option existed used β₁
    return {"reference": "σ² = β̃₂ as Ho et al.'s code", "beta1": "σ² = β₁"}.get(name, f"σ = {b.get('decoder_std')}")


def format_report(r: dict) -> str:
    lines = [f"run {r['run']}  step {r['step']}  ({r['method']} on {r['dataset']})"]
    t = r.get("training")
    if t and t.get("logged_step") is not None:
        lines.append(f"training: step {t['logged_step']} of {t['total_steps']} logged "
                     f"(loss {t['last_loss']:.4g}), {t['state']}")
    b = r.get("bits_per_dim")
    if b:
        lines.append(f"bits/dim {b['bits_per_dim']:.4f} (−ELBO {b['elbo_nats']:.1f} nats per image: "
                     f"prior {b['prior_nats']:.3g}, diffusion {b['diffusion_nats']:.1f}, decoder "
                     f"{b['decoder_nats']:.1f}; discretised decoder, {decoder_variance_label(b)}, "
                     f"{b['n']} {b['source']}, {b['seconds']} s)")
    elif r.get("bits_per_dim_message"):
        lines.append(r["bits_per_dim_message"])
    if "samples" in r:
        s, ref, noise = r["samples"], r["reference_real_test_digits"], r["reference_uniform_noise"]
        lines += [
            f"{r['n_samples']} samples ({r['sampler']}, {r['nfe']} evaluations each, "
            f"{'raw' if r.get('weights') == 'raw' else 'EMA'} weights) in "
            f"{r['sampling_seconds']} s; {r['metric']}, "
            f"held-out accuracy {r['classifier_test_accuracy']:.3f}",
            f"real test digits: {r['reference_source']}",
            f"{'':24s}{'samples':>10s}{'real test':>11s}{'noise':>9s}",
        ]
        for label, key in (("mean confidence", "mean_confidence"),
                           ("frac confident (>0.9)", "frac_confident"),
                           ("class entropy (0..1)", "class_entropy"),
                           ("NN distance to train", "nn_distance_to_train")):
            lines.append(f"{label:24s}{s[key]:10.3f}{ref[key]:11.3f}{noise[key]:9.3f}")
        lines += [
            f"{'classes present':24s}{s['classes_present']:10d}{ref['classes_present']:11d}"
            f"{noise['classes_present']:9d}",
            "class histogram (0..9): " + " ".join(str(v) for v in s["class_histogram"]),
            "confident, per class:   " + " ".join(str(v) for v in s["confident_class_histogram"]),
        ]
        if r.get("judge_note"):
            lines.append(f"judge: {r['judge_note']}")
    if "class_report" in r:
        c = r["class_report"]
        s, ref = c["samples"], c["reference_real_class"]
        lines += [f"class {c['requested_class']}, guidance w = {r['guidance']:g} (CFG (1 + w) s(x|c) − w s(x)); "
                  f"diversity in sets of {c['set_size']}",
                  f"{'':28s}{'samples':>10s}{'real class':>12s}"]
        for label, key in (("share of the class", "share_requested"),
                           ("share, confident (>0.9)", "share_requested_confident"),
                           ("NN distance within set", "nn_within"),
                           ("judge output entropy", "output_entropy"),
                           ("NN distance to class train", "nn_distance_to_class_train")):
            if key in s:
                lines.append(f"{label:28s}{s[key]:10.3f}{ref[key]:12.3f}")
    if r.get("fid") is not None:
        lines.append(f"FID {r['fid']:.2f}  IS {r['is_mean']:.2f} ± {r['is_std']:.2f} "
                     f"({r['n_samples']} samples; {r['message']})")
    elif r.get("message"):
        lines.append(r["message"])
    elif "samples" not in r:
        lines.append("no sample metric")
    if r.get("recorded_in"):
        lines.append(f"recorded in {r['recorded_in']}")
    elif r.get("record_note"):
        lines.append(r["record_note"])
    return "\n".join(lines)
