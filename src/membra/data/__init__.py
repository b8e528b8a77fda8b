"""Datasets by name: built-in offline sets and readers of a user's local files.

``get_dataset(name, split=..., T=..., root=..., seed=..., encoding=..., **options)`` returns a
``torch.utils.data.Dataset`` of ``(x [T, *S] float32, y int)`` with ``.info``
(:class:`DatasetInfo`). Nothing is ever downloaded and nothing is unpickled. See
``docs/data.md`` for every dataset, its split and its options.
"""

from .events import EVENT_DTYPE, events_to_frames
from .registry import (
    DatasetEntry,
    DatasetInfo,
    dataset_entries,
    get_dataset,
    list_datasets,
    register_dataset,
)

__all__ = ["DatasetInfo", "DatasetEntry", "register_dataset", "list_datasets", "get_dataset",
           "dataset_entries", "events_to_frames", "EVENT_DTYPE"]
