"""Per-item image transforms ``transform(x [C, H, W], generator) -> x`` (seeded per item by
:func:`membra.data.base.item_generator`)."""

from __future__ import annotations

import torch

__all__ = ["ImageTransform", "EventAugment", "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN",
           "IMAGENET_STD"]

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


class EventAugment:
    r"""The event-frame augmentation of the CIFAR10-DVS / N-Caltech101 recipe, on frames
    ``[T, C, H, W]`` (the same draw for every step of a sample):

    1. horizontal flip with probability 1/2 (``flip=True``);
    2. one op drawn uniformly among identity, shear, translate, rotate, cutout:

       - shear: :math:`x' = x + s\,y` (normalised coordinates), :math:`s \sim U(-0.3, 0.3)`;
       - translate: integer shift :math:`(d_x, d_y) \sim U\{-5..5\}^2` px, zero fill;
       - rotate: angle :math:`\sim U(-30^\circ, 30^\circ)` about the centre;
       - cutout: a square of side :math:`\sim U\{1..30\}` px (clipped at the border) centred
         at a uniform pixel is set to 0.

    Shear and rotation resample with nearest neighbours (counts stay counts), zero outside.
    """

    OPS = ("identity", "shear", "translate", "rotate", "cutout")

    def __init__(self, flip: bool = True, shear: float = 0.3, translate: int = 5,
                 rotate: float = 30.0, cutout: tuple[int, int] = (1, 30)):
        self.flip, self.shear, self.translate = bool(flip), float(shear), int(translate)
        self.rotate, self.cutout = float(rotate), (int(cutout[0]), int(cutout[1]))

    @staticmethod
    def affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour resampling of ``x [T, C, H, W]`` at ``theta [2, 3]`` (normalised
        output -> input coordinates, ``align_corners=False``)."""
        grid = torch.nn.functional.affine_grid(theta.unsqueeze(0).expand(x.shape[0], 2, 3),
                                               list(x.shape), align_corners=False)
        return torch.nn.functional.grid_sample(x, grid, mode="nearest", padding_mode="zeros",
                                               align_corners=False)

    @staticmethod
    def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
        """``out[..., i, j] = x[..., i - dy, j - dx]``, zero where that falls outside."""
        out = torch.zeros_like(x)
        H, W = x.shape[-2:]
        if abs(dx) >= W or abs(dy) >= H:
            return out
        out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
            x[..., max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
        return out

    @staticmethod
    def cut(x: torch.Tensor, cy: int, cx: int, side: int) -> torch.Tensor:
        """Zero the square of ``side`` px centred at ``(cy, cx)``, clipped at the border."""
        out = x.clone()
        y0, x0 = max(cy - side // 2, 0), max(cx - side // 2, 0)
        out[..., y0:cy - side // 2 + side, x0:cx - side // 2 + side] = 0
        return out

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        def u(lo, hi):
            return lo + (hi - lo) * torch.rand((), generator=gen).item()

        def k(lo, hi):  # integer in [lo, hi]
            return int(torch.randint(lo, hi + 1, (), generator=gen))

        if self.flip and torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)
        op = self.OPS[k(0, 4)]
        if op == "shear":
            s = u(-self.shear, self.shear)
            x = self.affine(x, torch.tensor([[1.0, s, 0.0], [0.0, 1.0, 0.0]]))
        elif op == "translate":
            x = self.shift(x, k(-self.translate, self.translate),
                           k(-self.translate, self.translate))
        elif op == "rotate":
            a = torch.deg2rad(torch.tensor(u(-self.rotate, self.rotate)))
            c, s = torch.cos(a).item(), torch.sin(a).item()
            x = self.affine(x, torch.tensor([[c, -s, 0.0], [s, c, 0.0]]))
        elif op == "cutout":
            H, W = x.shape[-2:]
            x = self.cut(x, k(0, H - 1), k(0, W - 1), k(*self.cutout))
        return x
