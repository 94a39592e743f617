"""Offline quality judges for digit runs: a classifier labels the generated samples, and their
confidence and class spread, beside the same figures for held-out real digits and for uniform noise,
say how digit-like and how varied the samples are. No download, no Inception network.

One code path (``Judge``), two judges:

- ``digits_judge()``, the built-in 8x8 digits: logistic regression fitted on 75 % of scikit-learn's
  digits (stratified split, seed 0); held out: the other 25 %. Logistic regression rather than an
  MLP because it stays unconfident on noise (an MLP gave 0.89 mean confidence to uniform noise in
  our check; logistic regression 0.55).
- ``mnist_judge(data_dir, cache_dir)``, MNIST runs: a small CNN (3x3 convolutions of stride 2 to 16
  and 32 channels, then a linear layer: 25k parameters) fitted on the user's own MNIST IDX training
  files: up to 12,000 of the training images (seeded choice), 600 Adam steps of 64 digits. Each
  step also shows it 32 non-digits (uniform noise, Gaussian noise, digits with shuffled pixels)
  with the uniform class distribution as target (outlier exposure, Hendrycks et al. 2019), so that
  noise-like samples early in training do not get confident labels. Held out: the t10k test files,
  or when they are absent the training images the fit did not use. The fitted judge is cached in the
  run folder (``judge_mnist.pt``, written atomically) under a key of the IDX files' paths, sizes and
  modification times and of the fit settings: reused while they match, refitted when they change.

Figures (``Judge.stats``), for the samples, for up to 1,000 held-out real digits and for 500
uniform-noise images: ``mean_confidence`` (mean top-class probability), ``frac_confident`` (share
above 0.9), ``class_histogram`` of the top labels and ``confident_class_histogram`` of those above
0.9, ``class_entropy`` (entropy of the label histogram over log 10: 1 = all ten classes equally
often), ``classes_present``, ``min_class_fraction``, and ``nn_distance_to_train``, the mean
Euclidean distance (pixels in [0, 1]) from each image to its nearest training image (a memorisation
check; MNIST: the nearest of the images the judge was fitted on). Samples are flattened in [0, 1];
MNIST samples of another size are resized to 28x28 first.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

CONFIDENT = 0.9
N_REFERENCE = 1000          # held-out real digits scored for scale
N_NOISE = 500               # uniform-noise images scored for scale

MNIST_SIDE = 28
MNIST_CACHE = "judge_mnist.pt"
MNIST_FIT = {"version": 1, "images": 12000, "steps": 600, "batch": 64, "outliers": 32,
             "outlier_weight": 0.5, "lr": 1e-3, "seed": 0}


@dataclass
class Judge:
    name: str                                   # "digits" or "mnist"
    description: str
    side: int                                   # the classifier reads side x side images
    proba: Callable[[np.ndarray], np.ndarray]   # (N, side²) in [0, 1] -> (N, 10) probabilities
    train_bank: np.ndarray                      # (M, side²) training images, for nn_distance_to_train
    X_test: np.ndarray                          # (K, side²) held-out real digits
    y_test: np.ndarray
    test_source: str
    accuracy: float = field(init=False)
    note: str = ""                              # how the judge was obtained (fitted, cache reused)
    fitted: bool = True                         # False: loaded from the cache
    train_labels: np.ndarray | None = None      # (M,) classes of train_bank (class-conditional reports)

    def __post_init__(self):
        self.accuracy = float((self.proba(self.X_test).argmax(1) == self.y_test).mean())

    def flatten(self, samples01: torch.Tensor) -> np.ndarray:
        """(N, 1, H, W) images in [0, 1] as (N, side²) float32, resized to side x side if needed."""
        x = samples01.detach().float().cpu()
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"the {self.name} judge needs (N, 1, H, W) grey images, got {tuple(x.shape)}")
        if x.shape[-2:] != (self.side, self.side):
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", antialias=True,
                              align_corners=False)
        return x.clamp(0, 1).reshape(len(x), -1).numpy()

    def stats(self, X: np.ndarray) -> dict:
        """The figures of the module docstring for images X: (N, side²) in [0, 1]."""
        proba = self.proba(X)
        conf = proba.max(1)
        labels = proba.argmax(1)
        hist = np.bincount(labels, minlength=10)
        p = hist / max(hist.sum(), 1)
        return {
            "n": int(len(X)),
            "mean_confidence": float(conf.mean()),
            "frac_confident": float((conf > CONFIDENT).mean()),
            "class_histogram": hist.tolist(),
            "confident_class_histogram": np.bincount(labels[conf > CONFIDENT], minlength=10).tolist(),
            "class_entropy": label_entropy(hist),
            "classes_present": int((hist > 0).sum()),
            "min_class_fraction": float(p.min()),
            "nn_distance_to_train": nearest_distance(X, self.train_bank),
        }

    def report(self, samples01: torch.Tensor, seed: int = 0) -> dict:
        """The judge's figures for the samples, held-out real digits and uniform noise."""
        rng = np.random.default_rng(seed)
        ref = self.X_test[rng.permutation(len(self.X_test))[:N_REFERENCE]]
        return {
            "metric": self.description,
            "judge": self.name,
            "judge_note": self.note,
            "classifier_test_accuracy": self.accuracy,
            "confidence_threshold": CONFIDENT,
            "reference_source": self.test_source,
            "samples": self.stats(self.flatten(samples01)),
            "reference_real_test_digits": self.stats(ref),
            "reference_uniform_noise": self.stats(rng.random((N_NOISE, self.side ** 2), dtype=np.float32)),
        }


    def class_stats(self, X: np.ndarray, k: int, set_size: int) -> dict:
        """Figures of images X (N, side²) in [0, 1] drawn for class k: fidelity — ``share_requested``
        (top label = k), ``share_requested_confident`` (and above 0.9), ``mean_prob_requested`` — and
        diversity — ``nn_within`` (``within_distance`` in sets of ``set_size``: falls when the samples
        collapse onto a few images), ``class_entropy`` of their top labels, ``output_entropy`` (the
        judge's mean per-image entropy, over log 10) — and ``nn_distance_to_class_train`` (nearest
        training image of class k: memorisation)."""
        proba = self.proba(X)
        top, conf = proba.argmax(1), proba.max(1)
        hist = np.bincount(top, minlength=10)
        out = {
            "n": int(len(X)),
            "share_requested": float((top == k).mean()),
            "share_requested_confident": float(((top == k) & (conf > CONFIDENT)).mean()),
            "mean_prob_requested": float(proba[:, k].mean()),
            "class_histogram": hist.tolist(),
            "class_entropy": label_entropy(hist),
            "output_entropy": float((-(proba * np.log(np.clip(proba, 1e-300, 1))).sum(1)).mean() / math.log(10)),
            "nn_within": within_distance(X, set_size),
            "set_size": int(set_size),
        }
        if self.train_labels is not None:
            out["nn_distance_to_class_train"] = nearest_distance(X, self.train_bank[self.train_labels == k])
        return out

    def class_report(self, samples01: torch.Tensor, k: int) -> dict:
        """The class-k figures (``class_stats``) of samples drawn for class k beside those of the
        held-out real digits of class k; the within-set diversity is measured in sets as large as that
        held-out class (so both sides are compared at one set size)."""
        if not 0 <= k < 10:
            raise ValueError(f"the {self.name} judge knows the classes 0 … 9, not {k}")
        real = self.X_test[self.y_test == k]
        X = self.flatten(samples01)
        m = min(len(real), len(X))
        if m < 2:
            raise ValueError(f"a class report needs at least 2 samples, got {len(X)}")
        return {"requested_class": int(k), "set_size": m,
                "samples": self.class_stats(X, k, m),
                "reference_real_class": {**self.class_stats(real, k, m), "source": self.test_source}}


def label_entropy(hist: np.ndarray) -> float:
    """Entropy of a histogram of the ten labels over log 10 (1: all ten equally often, 0: one)."""
    p = hist / max(hist.sum(), 1)
    return float(-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(10))


def within_distance(X: np.ndarray, set_size: int) -> float:
    """Diversity: the mean distance from each image to its nearest *other* image of its set, X cut
    into consecutive sets of ``set_size`` (the rest dropped), averaged over the sets (float64)."""
    n_sets = len(X) // set_size
    if n_sets < 1 or set_size < 2:
        raise ValueError(f"within_distance needs sets of ≥ 2 images, got {len(X)} images in sets of {set_size}")
    out = []
    for i in range(n_sets):
        x = torch.from_numpy(np.asarray(X[i * set_size:(i + 1) * set_size], dtype=np.float64))
        d = torch.cdist(x, x)
        d.fill_diagonal_(float("inf"))
        out.append(d.min(1).values.mean())
    return float(torch.stack(out).mean())


def nearest_distance(X: np.ndarray, bank: np.ndarray, chunk: int = 256) -> float:
    """Mean over the rows of X of the Euclidean distance to the nearest row of bank (float64: the
    matrix-product form of the distance loses ~1e-3 to cancellation in float32)."""
    b = torch.from_numpy(np.asarray(bank, dtype=np.float64))
    best = [torch.cdist(torch.from_numpy(np.asarray(xc, dtype=np.float64)), b).min(1).values
            for xc in np.array_split(X, max(1, math.ceil(len(X) / chunk)))]
    return float(torch.cat(best).double().mean())


# -------------------------------------------------------------------------------- 8x8 digits
def digits_judge(seed: int = 0) -> Judge:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        d.data / 16.0, d.target, test_size=0.25, random_state=seed, stratify=d.target)
    clf = LogisticRegression(max_iter=3000, C=1.0).fit(X_train, y_train)
    return Judge("digits", "digits classifier (logistic regression on real 8x8 digits)", 8,
                 clf.predict_proba, X_train, X_test, y_test,
                 "25 % of scikit-learn's digits held out (stratified, seed 0)", train_labels=y_train)


# -------------------------------------------------------------------------------- MNIST
def mnist_net() -> torch.nn.Module:
    """The MNIST judge's classifier: 28x28 -> 16x14x14 -> 32x7x7 -> 10 logits."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def _non_digits(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """As many non-digit images as x: uniform noise, Gaussian noise around grey, x's pixels shuffled."""
    kind = torch.randint(0, 3, (len(x), 1, 1, 1), generator=g)
    uniform = torch.rand(x.shape, generator=g)
    gaussian = (0.5 + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    shuffled = x.reshape(len(x), -1)[:, torch.randperm(x[0].numel(), generator=g)].reshape(x.shape)
    return torch.where(kind == 0, uniform, torch.where(kind == 1, gaussian, shuffled))


def fit_mnist_net(images: torch.Tensor, labels: torch.Tensor, fit: dict | None = None) -> torch.nn.Module:
    """The judge's CNN fitted on float (N, 1, 28, 28) images in [0, 1] (settings: ``fit``, default
    ``MNIST_FIT``); deterministic for given data (its own generator; the global RNG is left as it was)."""
    fit = fit or MNIST_FIT
    g = torch.Generator().manual_seed(fit["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fit["seed"])
        net = mnist_net()
    opt = torch.optim.Adam(net.parameters(), lr=fit["lr"])
    order, pos = torch.randperm(len(images), generator=g), 0
    for _ in range(fit["steps"]):
        if pos + fit["batch"] > len(order):
            order, pos = torch.randperm(len(images), generator=g), 0
        idx = order[pos:pos + fit["batch"]]
        pos += fit["batch"]
        x = images[idx]
        loss = F.cross_entropy(net(x), labels[idx])
        outliers = _non_digits(x[:fit["outliers"]], g)
        loss = loss - fit["outlier_weight"] * F.log_softmax(net(outliers), 1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def _as_side(images_u8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images_u8.astype(np.float32) / 255.0)[:, None]
    if x.shape[-2:] != (MNIST_SIDE, MNIST_SIDE):
        x = F.interpolate(x, size=(MNIST_SIDE, MNIST_SIDE), mode="bilinear", antialias=True,
                          align_corners=False)
    return x


def _file_key(paths) -> list:
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


def mnist_judge(data_dir, cache_dir=None) -> Judge:
    """The MNIST judge for the IDX files in ``data_dir`` (train images and labels required, t10k
    optional), cached in ``cache_dir`` (None: fitted every time). Bad or missing files raise
    ``datasets.DatasetError`` with a message saying which file and what was expected."""
    from ..atomic import atomic_torch_save
    from .datasets import DatasetError, mnist_labelled

    train_images, train_labels, train_paths = mnist_labelled(data_dir, "train")
    test = mnist_labelled(data_dir, "test", required=False)
    n = len(train_images)
    if n < 100:
        raise DatasetError(f"MNIST: {train_paths[0]} holds {n} images; the MNIST judge needs at "
                           "least 100 labelled training images")
    key = json.dumps({"fit": MNIST_FIT, "files": _file_key(train_paths + (test[2] if test else []))})
    cache = Path(cache_dir) / MNIST_CACHE if cache_dir is not None else None
    cached, why = _load_cache(cache, key)
    X_all = _as_side(train_images)
    if cached is not None:
        net, fit_idx = cached
        note = f"reused the judge cached in {cache}"
    else:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(MNIST_FIT["seed"]))
        n_fit = min(MNIST_FIT["images"], n if test else n - max(1, n // 10))
        fit_idx = perm[:n_fit].sort().values
        t0 = time.perf_counter()
        net = fit_mnist_net(X_all[fit_idx], torch.from_numpy(train_labels.astype(np.int64))[fit_idx],
                            MNIST_FIT)
        note = f"fitted the judge on {n_fit} training images in {time.perf_counter() - t0:.1f} s ({why})"
        if cache is not None:
            try:
                atomic_torch_save({"key": key, "state": net.state_dict(), "fit_index": fit_idx}, cache)
                note += f"; cached in {cache}"
            except OSError as e:
                note += f"; could not cache it in {cache} ({e.strerror or e})"
    if test:
        X_test, y_test = _as_side(test[0]), test[1]
        source = f"MNIST test files ({test[2][0].name})"
    else:
        held = np.setdiff1d(np.arange(n), fit_idx.numpy())
        X_test, y_test = X_all[held], train_labels[held]
        source = (f"{len(held)} MNIST training images the judge was not fitted on (no "
                  "t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte found)")

    @torch.no_grad()
    def proba(X: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).reshape(-1, 1, MNIST_SIDE, MNIST_SIDE)
        return torch.cat([F.softmax(net(c), 1) for c in x.split(1000)]).double().numpy()

    flat = X_all.reshape(n, -1).numpy()
    return Judge("mnist", "MNIST classifier (a small CNN fitted on this run's MNIST training files)",
                 MNIST_SIDE, proba, flat[fit_idx.numpy()], X_test.reshape(len(X_test), -1).numpy(),
                 np.asarray(y_test), source, note=note, fitted=cached is None,
                 train_labels=train_labels[fit_idx.numpy()])


def _load_cache(cache: Path | None, key: str) -> tuple[tuple | None, str]:
    """((network, fit indices) of the cached judge when its key matches, else None; why not)."""
    if cache is None:
        return None, "no cache folder"
    if not cache.is_file():
        return None, "no cached judge yet"
    try:
        data = torch.load(cache, map_location="cpu", weights_only=True)
        if data["key"] != key:
            return None, "the MNIST files or the fit settings changed since the cached fit"
        net = mnist_net()
        net.load_state_dict(data["state"])
        fit_idx = torch.as_tensor(data["fit_index"], dtype=torch.long)
    except Exception as e:          # any unreadable or foreign file: refit rather than fail
        return None, f"the cached judge {cache.name} was unreadable ({type(e).__name__})"
    return (net.eval(), fit_idx), ""
