"""Counting what makes the host wait for the device inside a training or sampler step.

On a GPU, every read of a device value from Python (``.item()``, ``float(t)``, ``bool(t)``, ``if t:``,
``.tolist()``), every op whose output size depends on the data (``nonzero``, boolean-mask indexing,
``unique``, ``masked_select``), ``torch.equal`` and every tensor built from Python data
(``torch.tensor([...], device=...)``, ``torch.as_tensor(0.5, device=...)``: a copy from pageable host
memory) blocks the host until the device has caught up. ``torch.cuda.set_sync_debug_mode`` reports
most of them, but only on a GPU; ``HostReads`` counts the same operations on any device (the CPU in
CI), with a ``TorchDispatchMode`` (every aten op passes through it) plus Python-level hooks on
``Tensor.tolist`` / ``Tensor.numpy`` (which bypass the dispatcher). On the CPU these reads are cheap,
but each one found there would be a sync on a GPU.

``StepProbe`` is what the training loop and the samplers' callers use: ``with probe.step(kind):``
around one step records that step's count under ``kind``; ``CUDASyncProbe`` counts the warnings of
``torch.cuda.set_sync_debug_mode("warn")`` instead (the real thing, on a GPU). ``NO_PROBE`` does
nothing and costs nothing.
"""
from __future__ import annotations

import contextlib
import warnings
from collections import Counter, defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
# ops that read a device value on the host, or whose output shape depends on device data
_READS = {
    _aten._local_scalar_dense.default: "scalar read (.item / float / bool / int)",
    _aten.equal.default: "torch.equal",
    _aten.is_nonzero.default: "bool(tensor)",
    _aten.nonzero.default: "nonzero",
    _aten.masked_select.default: "masked_select",
    _aten.lift_fresh.default: "tensor from Python data (host copy)",
}
for _name in ("_unique", "_unique2", "unique_dim", "unique_consecutive"):
    _op = getattr(_aten, _name, None)
    if _op is not None:
        _READS[_op.default] = "unique"


class _Mode(TorchDispatchMode):
    def __init__(self, owner: "HostReads"):
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        what = _READS.get(func)
        if what is None and func is _aten.index.Tensor:
            idx = args[1] if len(args) > 1 else ()
            if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in idx):
                what = "boolean-mask indexing"
        if what is not None:
            self.owner.record(what)
        return func(*args, **(kwargs or {}))


class HostReads:
    """``with HostReads() as r: ...`` counts host reads of tensor values in the block (``r.total``,
    ``r.kinds`` by kind). Not thread-safe; meant for tests and the GPU check."""

    def __init__(self):
        self.kinds: Counter = Counter()

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def record(self, what: str) -> None:
        self.kinds[what] += 1

    def __enter__(self) -> "HostReads":
        self._mode = _Mode(self)
        self._mode.__enter__()
        self._saved = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}
        for name, real in self._saved.items():
            def hooked(t, *a, _real=real, _name=name, **k):
                self.record(f"Tensor.{_name}")
                return _real(t, *a, **k)
            setattr(torch.Tensor, name, hooked)
        return self

    def __exit__(self, *exc) -> None:
        for name, real in self._saved.items():
            setattr(torch.Tensor, name, real)
        self._mode.__exit__(*exc)


class StepProbe:
    """Per-step host-read counts by step kind ("train", "sample", ...): ``counts[kind]`` is a list,
    one entry per step; ``what[kind]`` sums the kinds of read seen."""

    def __init__(self):
        self.counts: dict[str, list[int]] = defaultdict(list)
        self.what: dict[str, Counter] = defaultdict(Counter)

    @contextlib.contextmanager
    def step(self, kind: str):
        with HostReads() as r:
            yield
        self.counts[kind].append(r.total)
        self.what[kind].update(r.kinds)

    def summary(self) -> dict:
        """{kind: {"steps": n, "total": Σ, "max_per_step": m, "what": {kind of read: n}}}."""
        return {k: {"steps": len(v), "total": sum(v), "max_per_step": max(v, default=0),
                    "what": dict(self.what[k])} for k, v in self.counts.items()}


class CUDASyncProbe(StepProbe):
    """Per-step counts of the synchronisations ``torch.cuda.set_sync_debug_mode("warn")`` reports
    (CUDA only). The debug mode is on only inside ``step``."""

    @contextlib.contextmanager
    def step(self, kind: str):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        self.counts[kind].append(len(syncs))
        for w in syncs:
            self.what[kind][str(w.message).split("\n")[0][:120]] += 1


class _NoProbe:
    @contextlib.contextmanager
    def step(self, kind: str):
        yield


NO_PROBE = _NoProbe()
