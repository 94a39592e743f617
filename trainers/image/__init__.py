"""Headless image trainer: NCSN and DDPM on MNIST, CIFAR-10, CelebA, image folders and the 8x8 digits.

Modules: ``config`` (TOML -> dataclasses, typed overrides), ``datasets`` (readers, step-indexed
batch order), ``unet`` (DDPM U-Net, sigma-conditioned NCSN net), ``methods`` (binds a config to
the shared training methods ``trainers.methods`` and the samplers ``trainers.samplers``), ``train``
(model, step, loop), ``runtime`` (device, DDP, threads, stop signals), ``progress`` (the
progress.jsonl event log), ``run_layout`` (the run folder's paths, shared with the explorer),
``checkpoints``, ``imageio`` (grids, chains), ``evaluate`` (FID/IS when available, the digits
classifier metric), ``hostreads`` (counting host syncs per training / sampler step). CLI:
``python -m trainers.image``; the first GPU's check: ``python benchmarks/gpu_check.py``.
"""
