"""Per-item image transforms ``transform(x [C, H, W], generator) -> x`` (seeded per item by
:func:`membra.data.base.item_generator`)."""

from __future__ import annotations

import torch

__all__ = ["ImageTransform", "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageTransform:
    """uint8 -> float in ``[0, 1]``; with ``augment``: random crop of the image padded by
    ``pad`` zeros on each side and a horizontal flip with probability 1/2; then, with
    ``mean``/``std``, per-channel normalisation ``(x - mean) / std``."""

    def __init__(self, augment: bool = False, pad: int = 4, mean=None, std=None):
        self.augment = bool(augment)
        self.pad = int(pad)
        self.mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = x.float() / 255.0 if not x.is_floating_point() else x
        if self.augment:
            h, w = x.shape[-2:]
            if self.pad:
                x = torch.nn.functional.pad(x, (self.pad,) * 4)
            i, j = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,), generator=gen))
            x = x[..., i:i + h, j:j + w]
            if torch.rand((), generator=gen) < 0.5:
                x = x.flip(-1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x
