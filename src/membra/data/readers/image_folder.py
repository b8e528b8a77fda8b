"""An image-folder tree: ``root/<split>/<class>/<image>`` decoded with Pillow (no
torchvision).

``split="train"`` reads ``root/train``; ``split="test"`` reads ``root/test`` or, when absent,
``root/val``. Classes are the sorted sub-folders of ``root/train`` (of the split's folder when
there is no ``train``), so labels agree between splits. Images (``.png .jpg .jpeg .bmp .gif
.ppm .pgm .tif .tiff .webp``) are converted to RGB (or ``L`` with ``channels=1``), resized
so the shorter side is ``round(size * resize_ratio)`` (bilinear) and centre-cropped to
``size x size``; ``augment`` adds a seeded random crop (pad 4) + horizontal flip;
``normalize`` applies the ImageNet mean/std (3 channels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..base import StaticDataset, check_encoding, resolve_T
from ..registry import DatasetInfo, register_dataset
from ..transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from ._common import class_folders, corrupt, natural_key, require_root

__all__ = ["load_image", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")


def load_image(path: Path, size: int, resize_ratio: float, channels: int) -> torch.Tensor:
    """uint8 ``[C, size, size]``: shorter side to ``round(size * resize_ratio)``, centre
    crop."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the image-folder reader needs Pillow: pip install "
                          "'membra[data]'") from e

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            w, h = im.size
            short = max(size, round(size * resize_ratio))
            scale = short / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing image file {str(path)!r}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise corrupt(path, f"Pillow cannot decode it as an image ({e})") from None
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class ImageFileDataset(StaticDataset):
    """Images decoded from their files on access, then transformed and encoded."""

    def __init__(self, files, labels, info, *, size, resize_ratio, encoding, seed,
                 transform):
        super().__init__(list(files), torch.as_tensor(labels), info, encoding=encoding,
                         seed=seed, transform=transform)
        self.size = size
        self.resize_ratio = resize_ratio

    def static_item(self, index: int) -> torch.Tensor:
        return load_image(self.data[index], self.size, self.resize_ratio, self.info.in_shape[0])


def _split_folder(root: Path, split: str) -> Path:
    names = ["train"] if split == "train" else ["test", "val"]
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise FileNotFoundError(f"image-folder: no {' or '.join(repr(n) for n in names)} folder "
                            f"in {str(root)!r}; expected root/<split>/<class>/<image>")


@register_dataset("image-folder", builtin=False,
                  description="an image tree root/{train,test|val}/<class>/<image> decoded "
                              "with Pillow, [T, 3, size, size]")
def image_folder(*, split, T, root, seed, encoding, size: int = 224,
                 resize_ratio: float = 256 / 224, channels: int = 3, augment: bool = False,
                 normalize: bool = False):
    """Images from class folders, encoded over T steps (default T=4)."""
    check_encoding(encoding)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not resize_ratio >= 1:
        raise ValueError(f"resize_ratio must be >= 1, got {resize_ratio!r}")
    if normalize and (encoding != "direct" or channels != 3):
        raise ValueError("normalize=True needs encoding='direct' and channels=3")
    root = require_root(root, "image-folder", "train/<class>/<image> and test/ (or val/)")
    folder = _split_folder(root, split)
    classes = [c.name for c in class_folders(root / "train" if (root / "train").is_dir()
                                             else folder, "image-folder")]
    files, labels = [], []
    for c, name in enumerate(classes):
        cdir = folder / name
        if not cdir.is_dir():
            continue
        found = sorted((p for p in cdir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                       key=natural_key)
        files += found
        labels += [c] * len(found)
    if not files:
        raise FileNotFoundError(f"image-folder: no images ({', '.join(IMAGE_EXTENSIONS)}) "
                                f"under {str(folder)!r}")
    stats = (IMAGENET_MEAN, IMAGENET_STD) if normalize else (None, None)
    tf = ImageTransform(augment, 4, *stats)
    info = DatasetInfo("image-folder", (channels, size, size), len(classes), resolve_T(T, 4))
    return ImageFileDataset(files, labels, info, size=size, resize_ratio=resize_ratio,
                            encoding=encoding, seed=seed, transform=tf)
