"""An image-folder tree: ``root/<split>/<class>/<image>`` decoded with Pillow (no
torchvision).

``split="train"`` reads ``root/train``; ``split="test"`` reads ``root/test`` or, when absent,
``root/val``. Classes are the sorted, visible sub-folder names of ``root/train`` for both
splits: a label is the index of its folder's name, so labels agree between splits. Images
(``.png .jpg .jpeg .bmp .gif .ppm .pgm .tif .tiff .webp``) become values in [0, 1] in RGB
(or grey with ``channels=1``) whatever their bit depth (:func:`load_image`), resized so the
shorter side is ``round(size * resize_ratio)`` (bilinear) and centre-cropped to
``size x size``; ``augment`` adds a seeded random crop (pad 4) + horizontal flip;
``normalize`` applies the ImageNet mean/std (3 channels).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from ..base import StaticDataset, check_encoding, resolve_T
from ..registry import DatasetInfo, register_dataset
from ..transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from ._common import (
    BadFileError,
    bad_file,
    corrupt,
    labelled_files,
    require_root,
    shared_classes,
    skip_bad_samples,
)

__all__ = ["load_image", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")
_WIDE_MAX = 65535   # 'I;16*' and 'I' pixels are read as 16-bit values


def _pillow():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the image-folder reader needs Pillow: pip install "
                          "'membra[data]'") from e
    return Image


def _resize_crop(im, size: int, resize_ratio: float):
    """Shorter side to ``round(size * resize_ratio)`` (at least ``size``, bilinear), then the
    centre ``size x size``."""
    Image = _pillow()
    w, h = im.size
    short = max(size, round(size * resize_ratio))
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def _wide_unit(im, path) -> np.ndarray:
    """Pixels of a 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) image as float
    in [0, 1]: integers / 65535 (values must lie in 0..65535), floats as they are (they must
    lie in [0, 1]); anything else is a :class:`BadFileError` (its range is unknown)."""
    a = np.asarray(im)
    if im.mode == "F":
        if not np.isfinite(a).all():
            raise bad_file(path, "has NaN or infinite float pixels; membra reads float images "
                                 "as values in [0, 1]")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise bad_file(path, f"has float pixels from {lo} to {hi}; membra reads float "
                                 "images as values in [0, 1]")
        return a.astype(np.float32)
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi > _WIDE_MAX:
        raise bad_file(path, f"has {im.mode} integer pixels from {lo} to {hi}; membra reads "
                             f"integer images of mode {im.mode!r} as 16-bit values 0..65535")
    return (a / _WIDE_MAX).astype(np.float32)


def load_image(path: Path, size: int, resize_ratio: float, channels: int) -> torch.Tensor:
    """float32 ``[C, size, size]`` in [0, 1]: shorter side to ``round(size * resize_ratio)``
    (bilinear), centre crop. 8-bit modes (``1 L LA P RGB RGBA CMYK ...``) go through
    Pillow's RGB / L conversion (alpha dropped) and / 255; ``I;16``, ``I`` and ``F`` keep
    their depth (:func:`_wide_unit`), grey repeated to 3 channels. A file Pillow cannot
    decode, or one larger than ``PIL.Image.MAX_IMAGE_PIXELS``, is a :class:`BadFileError`."""
    Image = _pillow()
    try:
        with Image.open(path) as im:
            if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                g = _resize_crop(Image.fromarray(_wide_unit(im, path)), size, resize_ratio)
                x = torch.from_numpy(np.asarray(g, dtype=np.float32).copy())
                return x.unsqueeze(0).expand(channels, -1, -1).contiguous()
            im = _resize_crop(im.convert("RGB" if channels == 3 else "L"), size, resize_ratio)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing image file {str(path)!r}") from None
    except BadFileError:
        raise
    except Image.DecompressionBombError as e:
        raise bad_file(path, f"is too large to decode safely ({e}); raise "
                             "PIL.Image.MAX_IMAGE_PIXELS if you trust it") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise corrupt(path, f"Pillow cannot decode it as an image ({e})") from None
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


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
                 normalize: bool = False, skip_bad: bool = False):
    """Images from class folders, encoded over T steps (default T=4). Classes are the
    folder names of ``train/`` (for both splits); ``skip_bad=True`` decodes every image once
    and drops bad files (reported)."""
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
    classes, dirs = shared_classes(root / "train", folder, "image-folder")
    files, labels = labelled_files(dirs, IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"image-folder: no images ({', '.join(IMAGE_EXTENSIONS)}) "
                                f"under {str(folder)!r}")
    files, labels, skipped = skip_bad_samples(
        "image-folder", files, labels, lambda f: load_image(f, size, resize_ratio, channels),
        skip_bad)
    stats = (IMAGENET_MEAN, IMAGENET_STD) if normalize else (None, None)
    tf = ImageTransform(augment, 4, *stats)
    info = DatasetInfo("image-folder", (channels, size, size), len(classes), resolve_T(T, 4))
    ds = ImageFileDataset(files, labels, info, size=size, resize_ratio=resize_ratio,
                          encoding=encoding, seed=seed, transform=tf)
    ds.skipped = skipped
    return ds
