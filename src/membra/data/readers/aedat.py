r"""AEDAT event files (jAER / iniVation) and the datasets stored in them: CIFAR10-DVS and
DVS128 Gesture.

**AEDAT 2.0** (``#!AER-DAT2.0`` header; CIFAR10-DVS as distributed): ASCII header lines
starting with ``#``, then big-endian pairs ``(address: uint32, timestamp: uint32 us)``. DVS128
addresses: polarity bit 0 (0 = ON, 1 = OFF), x bits 1-7, y bits 8-14.

**AEDAT 3.1** (``#!AER-DAT3.1``, header ends with ``#!END-HEADER\r\n``; DVS128 Gesture):
packets of a 28-byte little-endian header (``eventType int16, eventSource int16,
eventSize int32, eventTSOffset int32, eventTSOverflow int32, eventCapacity int32,
eventNumber int32, eventValid int32``) followed by ``eventCapacity * eventSize`` bytes.
Polarity events (type 1, 8 bytes): ``data uint32`` (bit 0 valid, bit 1 polarity 1 = ON,
bits 2-16 y, bits 17-31 x) and ``timestamp int32``; the full time is
``eventTSOverflow << 31 | timestamp``. Only the first ``eventNumber`` events with the valid
bit set are kept; other packet types are skipped.

Both readers return events (:data:`membra.data.EVENT_DTYPE`) with ``p = 1`` for ON.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..base import require_direct, resolve_T
from ..events import make_events
from ..registry import DatasetInfo, register_dataset
from ..transforms import EventAugment
from ._common import (
    FrameLoader,
    class_dirs,
    corrupt,
    frame_shape,
    labelled_files,
    lazy_dataset,
    require_file,
    require_root,
    split_per_class,
)

__all__ = ["read_aedat", "encode_aedat2", "encode_aedat31", "CIFAR10_DVS_CLASSES"]

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                       "horse", "ship", "truck")
_PACKET = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                    ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"),
                    ("valid", "<i4")])
_END_HEADER = b"#!END-HEADER"


def _split_header(data: bytes, path) -> tuple[str, int]:
    """Version string and byte offset of the first data byte."""
    if not data.startswith(b"#!AER-DAT"):
        raise corrupt(path, "expected an AEDAT file starting with '#!AER-DAT2.0' or "
                            "'#!AER-DAT3.1'")
    version = data[9:12].decode("ascii", "replace")
    pos = 0
    while pos < len(data) and data[pos:pos + 1] == b"#":
        end = data.find(b"\n", pos)
        if end < 0:
            raise corrupt(path, "header line without end")
        line = data[pos:end]
        pos = end + 1
        if line.startswith(_END_HEADER):
            break
    else:
        if version.startswith("3"):
            raise corrupt(path, "AEDAT 3.1 header without '#!END-HEADER'")
    return version, pos


def _read_aedat2(data: bytes, path) -> np.ndarray:
    if len(data) % 8:
        raise corrupt(path, f"AEDAT 2.0 body of {len(data)} bytes is not a whole number of "
                            "8-byte (address, timestamp) events")
    words = np.frombuffer(data, dtype=">u4").astype(np.int64)
    addr, t = words[0::2], words[1::2]
    x = (addr & 0xFE) >> 1
    y = (addr & 0x7F00) >> 8
    p = 1 - (addr & 1)
    return make_events(t, x, y, p)


def _read_aedat31(data: bytes, path) -> np.ndarray:
    parts, pos = [], 0
    while pos < len(data):
        if len(data) - pos < _PACKET.itemsize:
            raise corrupt(path, f"AEDAT 3.1 packet header cut at byte {pos}")
        h = np.frombuffer(data, dtype=_PACKET, count=1, offset=pos)[0]
        size, cap, num = int(h["size"]), int(h["capacity"]), int(h["number"])
        pos += _PACKET.itemsize
        if size <= 0 or cap < 0 or not 0 <= num <= cap:
            raise corrupt(path, f"AEDAT 3.1 packet header at byte {pos - 28} has eventSize "
                                f"{size}, eventCapacity {cap}, eventNumber {num}")
        if len(data) - pos < cap * size:
            raise corrupt(path, f"AEDAT 3.1 packet at byte {pos - 28} announces {cap * size} "
                                f"bytes, {len(data) - pos} left")
        if int(h["type"]) == 1:
            if size != 8:
                raise corrupt(path, f"polarity packet with eventSize {size}, expected 8")
            ev = np.frombuffer(data, dtype="<u4", count=2 * num, offset=pos).astype(np.int64)
            word, ts = ev[0::2], ev[1::2]
            ok = (word & 1) == 1
            word, ts = word[ok], ts[ok]
            t = (int(h["ts_overflow"]) << 31) | ts
            parts.append(make_events(t, (word >> 17) & 0x7FFF, (word >> 2) & 0x7FFF,
                                     (word >> 1) & 1))
        pos += cap * size
    return np.concatenate(parts) if parts else make_events([], [], [], [])


def read_aedat(path) -> np.ndarray:
    """Events of an AEDAT 2.0 (DVS128 addresses) or 3.1 (polarity packets) file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing event file {str(path)!r} (AEDAT 2.0 or 3.1)")
    data = path.read_bytes()
    version, start = _split_header(data, path)
    if version.startswith("2"):
        return _read_aedat2(data[start:], path)
    if version.startswith("3"):
        return _read_aedat31(data[start:], path)
    raise corrupt(path, f"AEDAT version {version!r} is not supported (2.0 or 3.1)")


def encode_aedat2(events: np.ndarray, header: bytes = b"") -> bytes:
    """Bytes of an AEDAT 2.0 file holding DVS128 ``events`` (x, y < 128); inverse of
    :func:`read_aedat`, for tests and tools."""
    addr = ((events["y"].astype(np.uint32) << 8) | (events["x"].astype(np.uint32) << 1)
            | (1 - events["p"].astype(np.uint32)))
    body = np.empty(2 * len(events), dtype=">u4")
    body[0::2], body[1::2] = addr, events["t"].astype(np.uint32)
    return b"#!AER-DAT2.0\r\n" + header + b"# created by membra\r\n" + body.tobytes()


def encode_aedat31(events: np.ndarray, packet_size: int = 1000, invalid_every: int = 0) -> bytes:
    """Bytes of an AEDAT 3.1 file with polarity packets of at most ``packet_size`` events
    (``invalid_every=k`` > 0 adds an invalid event after every k-th, which readers drop)."""
    out = [b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"]
    t = events["t"].astype(np.int64)
    for s in range(0, len(events), packet_size):
        e, ts = events[s:s + packet_size], t[s:s + packet_size]
        word = ((e["x"].astype(np.uint32) << 17) | (e["y"].astype(np.uint32) << 2)
                | (e["p"].astype(np.uint32) << 1) | 1)
        low = (ts & 0x7FFFFFFF).astype(np.uint32)
        if invalid_every:
            idx = np.arange(invalid_every, len(word) + 1, invalid_every)
            word = np.insert(word, idx, np.uint32(0))
            low = np.insert(low, idx, low[idx - 1])
        body = np.empty(2 * len(word), dtype="<u4")
        body[0::2], body[1::2] = word, low
        head = np.zeros(1, dtype=_PACKET)
        head["type"], head["size"], head["ts_offset"] = 1, 8, 4
        head["ts_overflow"] = int(ts[0] >> 31) if len(ts) else 0
        head["capacity"] = head["number"] = len(word)
        head["valid"] = len(e)
        out += [head.tobytes(), body.tobytes()]
    return b"".join(out)


def _read_cifar10_dvs(path):
    """Events of a CIFAR10-DVS file, turned like SpikingJelly's loader."""
    ev = read_aedat(path)
    return make_events(ev["t"], 127 - ev["y"], 127 - ev["x"], ev["p"]), path


def _read_gesture(sample):
    """Events ``start <= t < end`` of one labelled gesture of a recording; none there (a
    recording cut short, or labels of another recording) is a bad file."""
    path, t0, t1 = sample
    ev = _gesture_events(path)
    part = ev[(ev["t"] >= t0) & (ev["t"] < t1)]
    if len(part) == 0:
        span = f"{int(ev['t'].min())}..{int(ev['t'].max())} us" if len(ev) else "no events"
        raise corrupt(path, f"it has no events in the labelled gesture {t0}..{t1} us (the "
                            f"recording holds {span}); is it cut short?")
    return part, path


@register_dataset("cifar10-dvs", builtin=False,
                  description="CIFAR10-DVS from its .aedat files (root/<class>/*.aedat), "
                              "frames [T=16, 2, 128, 128], 90/10 split per class")
def cifar10_dvs(*, split, T, root, seed, encoding, binning: str = "count", size=None,
                test_fraction: float = 0.1, augment: bool = False, skip_bad: bool = False):
    """CIFAR10-DVS event frames (default T=16 equal-count frames, the recipe's binning).

    Orientation as SpikingJelly's loader: ``x' = 127 - y``, ``y' = 127 - x`` of the raw
    DVS128 address. Split: per class, files in natural order (``cifar10_<class>_<i>``), the
    first ``round(test_fraction * n)`` are ``test`` (i = 0..99 of 1000), the rest ``train``.
    ``augment=True``: the recipe's flip + one of shear/translate/rotate/cutout
    (:class:`membra.data.transforms.EventAugment`), seeded per item and epoch.
    ``skip_bad=True`` drops bad files (reported)."""
    require_direct("cifar10-dvs", encoding)
    root = require_root(root, "cifar10-dvs", "one folder per class (airplane, automobile, "
                                             "...) of .aedat files")
    T = resolve_T(T, 16)
    for name in CIFAR10_DVS_CLASSES:
        if not (root / name).is_dir():
            raise FileNotFoundError(f"cifar10-dvs: missing class folder {str(root / name)!r}; "
                                    f"expected {list(CIFAR10_DVS_CLASSES)} under the root")
    dirs = class_dirs(root, CIFAR10_DVS_CLASSES, "cifar10-dvs", "CIFAR10-DVS")
    samples, labels = labelled_files(
        dirs, (".aedat",), lambda files: split_per_class(files, split, test_fraction))
    if not samples:
        raise FileNotFoundError(f"cifar10-dvs: no .aedat files under {str(root)!r}")

    info = DatasetInfo("cifar10-dvs", frame_shape(T, (128, 128), binning, size), 10, T)
    load = FrameLoader(_read_cifar10_dvs, T, (128, 128), binning, size,
                       EventAugment() if augment else None, seed)
    return lazy_dataset("cifar10-dvs", samples, labels, load, info, skip_bad)


def _gesture_root(root) -> Path:
    root = require_root(root, "dvs128-gesture", "trials_to_train.txt, trials_to_test.txt, "
                                                "user*.aedat and user*_labels.csv")
    if not (root / "trials_to_train.txt").exists() and (root / "DvsGesture").is_dir():
        root = root / "DvsGesture"
    return root


def read_gesture_labels(path: Path) -> list[tuple[int, int, int]]:
    """Rows ``(class 0..10, start_us, end_us)`` of a DVS128 Gesture ``_labels.csv``
    (header ``class,startTime_usec,endTime_usec``; classes 1..11 in the file)."""
    require_file(path, "dvs128-gesture", "the labels of a recording, "
                                         "class,startTime_usec,endTime_usec")
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if i == 0 or not row or not "".join(row).strip():
                continue
            try:
                c, t0, t1 = (int(v) for v in row[:3])
            except ValueError:
                raise corrupt(path, f"line {i + 1} {row!r} is not 'class,start_us,end_us'") \
                    from None
            if not 1 <= c <= 11 or t1 <= t0:
                raise corrupt(path, f"line {i + 1}: class {c} (1..11) and times {t0}..{t1}")
            rows.append((c - 1, t0, t1))
    return rows


@lru_cache(maxsize=2)
def _gesture_events(path: Path) -> np.ndarray:
    return read_aedat(path)


@register_dataset("dvs128-gesture", builtin=False,
                  description="DVS128 Gesture from its AEDAT 3.1 files + _labels.csv "
                              "(official user split), frames [T, 2, 128, 128], 11 classes")
def dvs128_gesture(*, split, T, root, seed, encoding, binning: str = "count", size=None,
                   skip_bad: bool = False):
    """DVS128 Gesture event frames (default T=16, equal-count binning). A sample is the
    events ``start <= t < end`` of one row of a recording's ``_labels.csv``; the recordings
    of a split are listed in ``trials_to_train.txt`` / ``trials_to_test.txt``.
    ``skip_bad=True`` drops the gestures of bad recordings (reported)."""
    require_direct("dvs128-gesture", encoding)
    root = _gesture_root(root)
    T = resolve_T(T, 16)
    listing = require_file(root / f"trials_to_{split}.txt", "dvs128-gesture",
                           f"the list of {split} recordings")
    samples, labels = [], []
    for line in listing.read_text().splitlines():
        fname = line.strip()
        if not fname:
            continue
        aedat = require_file(root / fname, "dvs128-gesture", f"listed in {listing.name}")
        for c, t0, t1 in read_gesture_labels(root / (Path(fname).stem + "_labels.csv")):
            samples.append((aedat, t0, t1))
            labels.append(c)
    if not samples:
        raise FileNotFoundError(f"dvs128-gesture: {str(listing)!r} lists no recordings")

    info = DatasetInfo("dvs128-gesture", frame_shape(T, (128, 128), binning, size), 11, T)
    return lazy_dataset("dvs128-gesture", samples, labels,
                        FrameLoader(_read_gesture, T, (128, 128), binning, size), info, skip_bad)
