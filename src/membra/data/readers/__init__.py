"""Readers of a user's local files (registered on import). Nothing is downloaded or
unpickled; a missing root, missing file or corrupt file is an error naming the path."""

from . import aedat, atis, cifar10, image_folder  # noqa: F401
from ._common import BadFileError

__all__ = ["BadFileError"]
