"""Headless image trainer: NCSN and DDPM on MNIST, CIFAR-10, CelebA, image folders and the 8x8 digits.

Modules: ``config`` (TOML -> dataclasses, typed overrides), ``datasets`` (readers, step-indexed
batch order), ``unet`` (DDPM U-Net, sigma-conditioned NCSN net), ``methods`` (binds the shared
core losses/samplers in ``trainers.objectives`` / ``trainers.samplers`` to a config), ``train``
(loop, progress log, DDP), ``checkpoints``, ``imageio`` (grids, chains), ``evaluate``
(FID/IS when available, the digits classifier metric). CLI: ``python -m trainers.image``.
"""
