"""Readers: tiny files written in each real on-disk format, read back exactly."""

import pickle
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from membra.data import events_to_frames, get_dataset
from membra.data.base import item_generator
from membra.data.events import make_events
from membra.data.readers import BadFileError
from membra.data.readers.aedat import encode_aedat2, encode_aedat31, read_aedat
from membra.data.readers.atis import encode_atis_bin, read_atis_bin
from membra.data.readers.cifar10 import encode_cifar10_bin, read_cifar10_bin
from membra.data.transforms import EventAugment


def _events(n, H, W, seed, t_max=100_000):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, W, n),
                       rng.integers(0, H, n), rng.integers(0, 2, n))


def _same(a, b):
    return all(np.array_equal(a[f].astype(np.int64), b[f].astype(np.int64)) for f in "txyp")


# ---- ATIS .bin (N-MNIST, N-Caltech101) ---------------------------------------------------
def test_atis_hand_encoded_bytes_and_overflow(tmp_path):
    raw = bytes([3, 5, 0x80 | 0x01, 0x23, 0x45,   # x=3 y=5 ON t=0x012345
                 0, 240, 0, 0, 0,                 # timestamp overflow marker
                 1, 2, 0x00, 0x00, 10])           # x=1 y=2 OFF t=10 (+2**13)
    f = tmp_path / "00001.bin"
    f.write_bytes(raw)
    ev = read_atis_bin(f)
    assert ev["x"].tolist() == [3, 1] and ev["y"].tolist() == [5, 2]
    assert ev["p"].tolist() == [1, 0] and ev["t"].tolist() == [0x012345, 10 + 8192]


def test_atis_roundtrip_and_truncated(tmp_path):
    ev = _events(300, 34, 34, 0)
    f = tmp_path / "a.bin"
    f.write_bytes(encode_atis_bin(ev))
    assert _same(read_atis_bin(f), ev)
    f.write_bytes(encode_atis_bin(ev)[:-2])
    with pytest.raises(ValueError, match=r"a\.bin.*5-byte"):
        read_atis_bin(f)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        read_atis_bin(tmp_path / "missing.bin")


def _nmnist_tree(root, per_class=2):
    events = {}
    for split in ("Train", "Test"):
        for digit in range(3):
            d = root / split / str(digit)
            d.mkdir(parents=True)
            for i in range(per_class):
                ev = _events(50 + i, 34, 34, 100 * (split == "Test") + 10 * digit + i)
                (d / f"{i:05d}.bin").write_bytes(encode_atis_bin(ev))
                events[(split, digit, i)] = ev
    return events


def test_nmnist_frames_exact(tmp_path):
    events = _nmnist_tree(tmp_path)
    ds = get_dataset("nmnist", split="test", root=tmp_path, T=5)
    assert len(ds) == 6 and ds.info.in_shape == (2, 34, 34) and ds.info.num_classes == 3
    x, y = ds[3]
    assert y == 1
    ref = events_to_frames(events[("Test", 1, 1)], 5, (34, 34), split="count")
    assert torch.equal(x, ref) and x.sum() == 51
    # DataLoader workers started with "spawn" pickle the dataset (a test, not user data)
    assert torch.equal(pickle.loads(pickle.dumps(ds))[3][0], x)
    small = get_dataset("nmnist", root=tmp_path, T=2, binning="time", size=17)
    assert small.info.in_shape == (2, 17, 17) and small[0][0].shape == (2, 2, 17, 17)


def test_nmnist_errors(tmp_path):
    (tmp_path / "Train").mkdir()
    with pytest.raises(FileNotFoundError, match="Test"):
        get_dataset("nmnist", split="test", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        get_dataset("nmnist", split="train", root=tmp_path)
    d = tmp_path / "Train" / "0"
    d.mkdir()
    (d / "1.bin").write_bytes(bytes([40, 1, 0, 0, 1]))  # x = 40 outside 34x34
    ds = get_dataset("nmnist", split="train", root=tmp_path)
    with pytest.raises(ValueError, match=r"1\.bin.*outside the sensor"):
        ds[0]


def test_ncaltech101_split_per_class(tmp_path):
    for c in ("airplanes", "ant"):
        d = tmp_path / "Caltech101" / c
        d.mkdir(parents=True)
        for i in range(1, 11):
            (d / f"image_{i:04d}.bin").write_bytes(encode_atis_bin(_events(20, 180, 240, i)))
    tr = get_dataset("ncaltech101", split="train", root=tmp_path, T=4)
    te = get_dataset("ncaltech101", split="test", root=tmp_path, T=4)
    assert (len(tr), len(te)) == (18, 2)
    assert [p.name for p in te.samples] == ["image_0001.bin"] * 2 and te.labels == [0, 1]
    assert tr.info.in_shape == (2, 180, 240) and tr.info.num_classes == 2
    assert torch.equal(te[1][0], events_to_frames(_events(20, 180, 240, 1), 4, (180, 240)))


# ---- AEDAT 2.0 (CIFAR10-DVS) -------------------------------------------------------------
def test_aedat2_hand_encoded(tmp_path):
    f = tmp_path / "x.aedat"
    body = struct.pack(">II", (20 << 8) | (10 << 1) | 0, 1000)   # x=10 y=20 ON
    body += struct.pack(">II", (3 << 8) | (127 << 1) | 1, 1001)  # x=127 y=3 OFF
    f.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n" + body)
    ev = read_aedat(f)
    assert ev["x"].tolist() == [10, 127] and ev["y"].tolist() == [20, 3]
    assert ev["p"].tolist() == [1, 0] and ev["t"].tolist() == [1000, 1001]
    f.write_bytes(b"#!AER-DAT2.0\r\n" + body[:-3])
    with pytest.raises(ValueError, match=r"x\.aedat.*8-byte"):
        read_aedat(f)
    f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="AEDAT"):
        read_aedat(f)


def _cifar10_dvs_tree(root, per_class=10):
    from membra.data.readers.aedat import CIFAR10_DVS_CLASSES

    events = {}
    for c, name in enumerate(CIFAR10_DVS_CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            ev = _events(40, 128, 128, 100 * c + i)
            (root / name / f"cifar10_{name}_{i}.aedat").write_bytes(encode_aedat2(ev))
            events[(c, i)] = ev
    return events


def test_cifar10_dvs_frames_orientation_and_split(tmp_path):
    events = _cifar10_dvs_tree(tmp_path)
    te = get_dataset("cifar10-dvs", split="test", root=tmp_path)
    tr = get_dataset("cifar10-dvs", split="train", root=tmp_path, T=4, size=48)
    assert (len(tr), len(te)) == (90, 10) and te.info == te.info.__class__(
        "cifar10-dvs", (2, 128, 128), 10, 16)
    assert [p.name for p in te.samples[:1]] == ["cifar10_airplane_0.aedat"]
    ev = events[(3, 0)]
    turned = make_events(ev["t"], 127 - ev["y"], 127 - ev["x"], ev["p"])
    assert torch.equal(te[3][0], events_to_frames(turned, 16, (128, 128), split="count"))
    assert te[3][1] == 3
    assert torch.equal(pickle.loads(pickle.dumps(te))[3][0], te[3][0])
    aug = get_dataset("cifar10-dvs", split="test", root=tmp_path, augment=True, seed=7)
    aug.set_epoch(2)
    assert torch.equal(aug[3][0], EventAugment()(te[3][0], item_generator(7, 3, 2)))
    x, y = tr[9 * 2]   # class 2, file index 1
    assert y == 2 and x.shape == (4, 2, 48, 48) and x.sum() == 40


def test_cifar10_dvs_missing_class(tmp_path):
    (tmp_path / "airplane").mkdir()
    with pytest.raises(FileNotFoundError, match="automobile"):
        get_dataset("cifar10-dvs", root=tmp_path)


# ---- AEDAT 3.1 (DVS128 Gesture) ----------------------------------------------------------
def test_aedat31_hand_encoded_packets(tmp_path):
    def word(x, y, p, valid=1):
        return (x << 17) | (y << 2) | (p << 1) | valid

    head = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    pol1 = struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 3, 3, 2) + struct.pack(
        "<IiIiIi", word(5, 6, 1), 100, word(7, 8, 0, valid=0), 101, word(127, 0, 0), 102)
    other = struct.pack("<hhiiiiii", 2, 1, 8, 4, 0, 1, 1, 1) + b"\x01" * 8  # skipped type
    pol2 = struct.pack("<hhiiiiii", 1, 1, 8, 4, 1, 2, 1, 1) + struct.pack(
        "<IiIi", word(1, 2, 1), 7, 0, 0)                                    # 1 of 2 slots used
    f = tmp_path / "user01_lab.aedat"
    f.write_bytes(head + pol1 + other + pol2)
    ev = read_aedat(f)
    assert ev["x"].tolist() == [5, 127, 1] and ev["y"].tolist() == [6, 0, 2]
    assert ev["p"].tolist() == [1, 0, 1] and ev["t"].tolist() == [100, 102, (1 << 31) | 7]
    f.write_bytes(head + pol1[:-4])
    with pytest.raises(ValueError, match=r"user01_lab\.aedat.*announces"):
        read_aedat(f)
    f.write_bytes(head + pol1[:20])
    with pytest.raises(ValueError, match="packet header cut"):
        read_aedat(f)


def test_aedat31_roundtrip_with_invalid_events(tmp_path):
    ev = _events(2500, 128, 128, 5)
    f = tmp_path / "r.aedat"
    f.write_bytes(encode_aedat31(ev, packet_size=1000, invalid_every=7))
    assert _same(read_aedat(f), ev)


def _gesture_tree(root):
    ev = _events(3000, 128, 128, 9, t_max=1000)
    for user in ("user01_lab", "user24_led"):
        (root / f"{user}.aedat").write_bytes(encode_aedat31(ev, packet_size=700))
        (root / f"{user}_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n3,100,200\n11,200,450\n\n")
    (root / "trials_to_train.txt").write_text("user01_lab.aedat\n")
    (root / "trials_to_test.txt").write_text("user24_led.aedat\n\n")
    return ev


def test_dvs128_gesture_samples_exact(tmp_path):
    (tmp_path / "DvsGesture").mkdir()
    ev = _gesture_tree(tmp_path / "DvsGesture")   # the archive's folder is found under root
    ds = get_dataset("dvs128-gesture", split="test", root=tmp_path, T=4)
    assert len(ds) == 2 and ds.labels == [2, 10] and ds.info.num_classes == 11
    for k, (t0, t1) in enumerate([(100, 200), (200, 450)]):
        part = ev[(ev["t"] >= t0) & (ev["t"] < t1)]
        x, _ = ds[k]
        assert torch.equal(x, events_to_frames(part, 4, (128, 128), split="count"))
        assert x.sum() == len(part) > 0
    assert torch.equal(pickle.loads(pickle.dumps(ds))[1][0], ds[1][0])


def test_dvs128_gesture_errors(tmp_path):
    _gesture_tree(tmp_path)
    (tmp_path / "user24_led_labels.csv").write_text("class,start,end\n3,abc,200\n")
    with pytest.raises(ValueError, match=r"user24_led_labels\.csv.*line 2"):
        get_dataset("dvs128-gesture", split="test", root=tmp_path)
    (tmp_path / "user24_led_labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match="user24_led_labels.csv"):
        get_dataset("dvs128-gesture", split="test", root=tmp_path)
    (tmp_path / "trials_to_train.txt").write_text("user02_lab.aedat\n")
    with pytest.raises(FileNotFoundError, match="user02_lab.aedat"):
        get_dataset("dvs128-gesture", split="train", root=tmp_path)


# ---- CIFAR-10 binary ---------------------------------------------------------------------
def _cifar_tree(root, n=3):
    rng = np.random.default_rng(0)
    data = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        imgs = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        rec = b"".join(bytes([labels[k]]) + imgs[k].tobytes() for k in range(n))  # by hand
        assert rec == encode_cifar10_bin(imgs, labels)
        (root / name).write_bytes(rec)
        data[name] = (imgs, labels)
    return data


def test_cifar10_binary_exact(tmp_path):
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    data = _cifar_tree(root)
    tr = get_dataset("cifar10", split="train", root=tmp_path, T=2, normalize=False,
                     records_per_file=3)
    te = get_dataset("cifar10", split="test", root=root, T=3, records_per_file=3)
    assert (len(tr), len(te)) == (15, 3) and tr.info.in_shape == (3, 32, 32)
    imgs, labels = data["data_batch_2.bin"]
    x, y = tr[4]
    assert y == labels[1] and torch.equal(x[0], torch.from_numpy(imgs[1]).float() / 255)
    assert torch.equal(x[0], x[1])
    x, y = te[0]
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    ref = (torch.from_numpy(data["test_batch.bin"][0][0]).float() / 255 - mean) / std
    assert torch.allclose(x[2], ref)


def test_cifar10_augment_seeded(tmp_path):
    _cifar_tree(tmp_path)
    a = get_dataset("cifar10", root=tmp_path, augment=True, seed=0, records_per_file=3)
    b = get_dataset("cifar10", root=tmp_path, augment=True, seed=0, records_per_file=3)
    assert torch.equal(a[2][0], b[2][0])
    views = {tuple(get_dataset("cifar10", root=tmp_path, augment=True, seed=s,
                               records_per_file=3)[2][0][0]
                   .flatten()[:50].tolist()) for s in range(6)}
    assert len(views) > 1


def test_cifar10_errors(tmp_path):
    data = _cifar_tree(tmp_path)
    (tmp_path / "data_batch_4.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4.bin"):
        get_dataset("cifar10", root=tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match=r"test_batch\.bin.*3073-byte"):
        get_dataset("cifar10", split="test", root=tmp_path)
    imgs, _ = data["test_batch.bin"]
    (tmp_path / "test_batch.bin").write_bytes(encode_cifar10_bin(imgs, np.array([1, 12, 3])))
    with pytest.raises(ValueError, match="label byte 12"):
        read_cifar10_bin(tmp_path / "test_batch.bin")
    with pytest.raises(ValueError, match="normalize=False"):
        get_dataset("cifar10", root=tmp_path, encoding="rate")


# ---- image folder ------------------------------------------------------------------------
def test_image_folder_exact_and_errors(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(2):
                a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(a).save(d / f"img{i}.png")
                arrays[(split, c, i)] = a
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    te = get_dataset("image-folder", split="test", root=tmp_path, size=8, resize_ratio=1.0, T=2)
    assert len(te) == 4 and te.info.in_shape == (3, 8, 8) and te.info.num_classes == 2
    x, y = te[2]
    assert y == 1
    ref = torch.from_numpy(arrays[("val", "dog", 0)]).permute(2, 0, 1).float() / 255
    assert torch.equal(x[0], ref) and torch.equal(x[1], ref)
    big = get_dataset("image-folder", root=tmp_path, size=4)
    assert big[0][0].shape == (4, 3, 4, 4)
    (tmp_path / "train" / "cat" / "img0.png").write_bytes(b"\x89PNG broken")
    ds = get_dataset("image-folder", root=tmp_path, size=8)
    with pytest.raises(ValueError, match=r"img0\.png.*Pillow cannot decode"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="'test' or 'val'"):
        get_dataset("image-folder", split="test", root=tmp_path / "train")


# ==== trust: labels from class-folder names, bad files named, every pixel mode decoded ====
# ---- class folders: the label is the index of the folder's NAME in one shared class list --
@dataclass(frozen=True)
class _Fmt:
    """One reader's on-disk sample: ``write(path, code)`` stores a sample whose item ``x``
    gives ``code`` back through ``read(x)`` (codes >= 1 tell every file apart)."""

    ext: str
    write: Callable
    read: Callable


def _event_fmt(ext, encode, H, W):
    return _Fmt(ext, lambda p, c: p.write_bytes(encode(_events(c, H, W, c))),
                lambda x: int(x.sum()))   # count binning keeps every event: sum = code


def _write_png(p, c):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), c, dtype=np.uint8)).save(p, format="PNG")


_IMG = _Fmt(".png", _write_png, lambda x: round(float(x[0, 0, 0, 0]) * 255))
# reader -> (sample format, split folders (None: one folder, per-class split), options)
_FOLDER_READERS = {
    "nmnist": (_event_fmt(".bin", encode_atis_bin, 34, 34), ("Train", "Test"), {}),
    "image-folder": (_IMG, ("train", "test"), {"size": 8, "resize_ratio": 1.0}),
    "ncaltech101": (_event_fmt(".bin", encode_atis_bin, 180, 240), None,
                    {"test_fraction": 0.5}),
    "cifar10-dvs": (_event_fmt(".aedat", encode_aedat2, 128, 128), None,
                    {"test_fraction": 0.5}),
}
_NAMES = ["0", "1", "2", "9", "10", "11", "ant", "Bee", "bee", "zebra", "Zebra", "a9", "a10",
          "BACKGROUND_Google", "img_2", "img_10", "x-ray"]


def _hidden_entries(folder: Path, fmt: _Fmt, codes: list) -> None:
    """What Jupyter, macOS and zip tools leave in a folder: a checkpoint folder holding a
    valid sample, ``.DS_Store``, an AppleDouble ``._`` twin, ``__MACOSX/``."""
    (folder / ".ipynb_checkpoints").mkdir()
    fmt.write(folder / ".ipynb_checkpoints" / f"0-checkpoint{fmt.ext}", codes.pop())
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(range(256)) * 4)
    (folder / f"._0{fmt.ext}").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / f"._0{fmt.ext}").write_bytes(b"\x00\x05\x16\x07" + bytes(60))


def _class_tree(root: Path, fmt: _Fmt, folders: dict, per_class=2, hidden=False) -> dict:
    """``root/<folder>/<class>/<i><ext>`` for ``folders = {folder: [class names]}`` (folder
    ``""``: the root itself), one code per file; returns ``{code: (folder, class, i)}``.
    ``hidden``: hidden entries next to the classes and inside every class folder."""
    codes, spare = {}, list(range(200, 150, -1))   # spare codes: hidden copies, never read
    for folder, classes in folders.items():
        base = root / folder
        base.mkdir(parents=True, exist_ok=True)
        for name in classes:
            (base / name).mkdir()
            for i in range(per_class):
                codes[len(codes) + 1] = (folder, name, i)
                fmt.write(base / name / f"{i}{fmt.ext}", len(codes))
            if hidden:
                _hidden_entries(base / name, fmt, spare)
        if hidden:
            _hidden_entries(base, fmt, spare)
    return codes


def _check_labels(ds, fmt, codes, classes, want):
    """Every item's label is ``sorted(classes).index(its folder's name)`` and the items are
    exactly the files ``want(folder, i)`` selects (none lost, no hidden one read)."""
    by_name = {name: k for k, name in enumerate(sorted(classes))}
    seen = []
    for i in range(len(ds)):
        x, y = ds[i]
        code = fmt.read(x)
        assert code in codes, f"item {i} is not one of the class files (code {code})"
        folder, name, _ = codes[code]
        assert y == by_name[name], (name, y, by_name)
        seen.append(code)
    assert sorted(seen) == sorted(c for c, (f, _, i) in codes.items() if want(f, i))
    assert ds.info.num_classes == len(classes)


def _label_cases():
    """(reader, scenario, seed): hidden entries, a test class missing (the first in sorted
    order, so every later label would shift), a test class absent from train, names whose
    plain, natural and case-folded orders differ (test folders made in reverse order)."""
    cases = [(r, s, seed) for r in ("nmnist", "image-folder")
             for s in ("hidden", "missing", "extra", "order") for seed in range(3)]
    cases += [(r, "hidden", seed) for r in ("ncaltech101", "cifar10-dvs") for seed in range(3)]
    return cases + [("cifar10-dvs", "extra", seed) for seed in range(2)]


@pytest.mark.parametrize("reader, scenario, seed", _label_cases(),
                         ids=lambda v: str(v))
def test_labels_come_from_class_folder_names(tmp_path, reader, scenario, seed):
    import random

    from membra.data.readers.aedat import CIFAR10_DVS_CLASSES

    rng = random.Random(seed)
    fmt, splits, opts = _FOLDER_READERS[reader]
    if reader == "cifar10-dvs":
        train = list(CIFAR10_DVS_CLASSES)
    elif scenario == "order":
        train = rng.sample(["9", "10", "a9", "a10", "Bee", "ant", "bee", "Zebra"], 5)
    else:
        train = rng.sample(_NAMES, rng.randint(3, 5))
    extra = rng.choice([n for n in _NAMES + ["horses", "Airplane"] if n not in train])
    if splits is None:          # one folder of classes, split per class inside it
        classes = train + ([extra] if scenario == "extra" else [])
        if reader == "ncaltech101":
            (tmp_path / "empty_class").mkdir()   # a class with no files keeps its place
            train = train + ["empty_class"]
        codes = _class_tree(tmp_path, fmt, {"": classes}, hidden=scenario == "hidden")
        for split in ("train", "test"):
            if scenario == "extra":
                with pytest.raises(ValueError, match=re.escape(repr(extra))):
                    get_dataset(reader, split=split, root=tmp_path, **opts)
                continue
            ds = get_dataset(reader, split=split, root=tmp_path, **opts)
            _check_labels(ds, fmt, codes, train,
                          lambda f, i, s=split: (i == 0) == (s == "test"))
        return
    test = list(train)
    if scenario in ("missing", "order"):
        first = sorted(train)[0] if scenario == "missing" else rng.choice(train[1:])
        test = [n for n in train if n != first]
        test = test[::-1]
    if scenario == "extra":
        test.insert(rng.randint(0, len(test)), extra)
    codes = _class_tree(tmp_path, fmt, {splits[0]: train, splits[1]: test},
                        hidden=scenario == "hidden")
    _check_labels(get_dataset(reader, split="train", root=tmp_path, **opts), fmt, codes,
                  train, lambda f, i: f == splits[0])
    if scenario == "extra":
        with pytest.raises(ValueError, match=re.escape(repr(extra))):
            get_dataset(reader, split="test", root=tmp_path, **opts)
        return
    _check_labels(get_dataset(reader, split="test", root=tmp_path, **opts), fmt, codes,
                  train, lambda f, i: f == splits[1])


@pytest.mark.parametrize("reader", ["nmnist", "image-folder"])
def test_test_split_needs_the_training_class_list(tmp_path, reader):
    fmt, splits, opts = _FOLDER_READERS[reader]
    _class_tree(tmp_path, fmt, {splits[1]: ["1", "2"]})
    with pytest.raises(FileNotFoundError, match=re.escape(repr(str(tmp_path / splits[0])))):
        get_dataset(reader, split="test", root=tmp_path, **opts)


# ---- truncated / empty files: a BadFileError naming the file, or skip_bad counts it --------
def _cuts(size, header, record, seed, n=8, exact=False):
    """Offsets cutting a ``header`` + ``record``-byte-records file of ``size`` bytes: 0, some
    inside the header, the header alone, one byte short of a record boundary, and seeded
    mid-record offsets (``exact``: also record boundaries short of the end)."""
    rng = np.random.default_rng(seed)
    n_rec = (size - header) // record
    cuts = {0, header, header + (n_rec - 1) * record + record - 1}
    if header > 1:
        cuts |= {int(v) for v in rng.integers(1, header, 3)}
    k = rng.integers(0, n_rec, n)
    cuts |= {int(v) for v in header + k * record + rng.integers(1, record, n)}
    if exact:
        cuts |= {header + int(a) * record for a in k}
    return sorted(c for c in cuts if c < size)


def _bad_file_named(ds, path):
    """Exactly one item of ``ds`` fails, with a BadFileError naming ``path``."""
    failed = []
    for i in range(len(ds)):
        try:
            ds[i]
        except BadFileError as e:
            assert e.path == Path(path) and repr(str(path)) in str(e)
            again = pickle.loads(pickle.dumps(e))   # as a DataLoader worker passes it on
            assert (again.path, str(again)) == (e.path, str(e))
            failed.append(i)
    assert len(failed) == 1, failed


def test_bad_file_error_crosses_dataloader_workers(tmp_path):
    _nmnist_tree(tmp_path, per_class=1)
    f = tmp_path / "Train" / "0" / "00000.bin"
    f.write_bytes(b"")
    loader = torch.utils.data.DataLoader(get_dataset("nmnist", root=tmp_path), batch_size=3,
                                         num_workers=1)
    with pytest.raises(BadFileError, match=re.escape(repr(str(f)) + " is truncated")):
        next(iter(loader))


def _skipped_and_reported(recwarn, ds, paths, n_total, name):
    """``skip_bad=True`` left the other samples (they all load), listed ``paths`` in
    ``ds.skipped`` and warned once with the count and the first paths; returns the warning."""
    assert [p for p, _ in ds.skipped] == [str(p) for p in paths]
    assert all(reason for _, reason in ds.skipped)
    msgs = [str(w.message) for w in recwarn if f"{name}: skipped" in str(w.message)]
    assert len(msgs) == 1 and f"skipped {len(paths)} of {n_total}" in msgs[0]
    assert all(repr(str(p)) in msgs[0] for p in paths[:3])
    for i in range(len(ds)):
        ds[i]
    return msgs[0]


def _atis_cases():
    size = len(encode_atis_bin(_events(50, 34, 34, 0)))
    return _cuts(size, 0, 5, seed=1)


@pytest.mark.parametrize("cut", _atis_cases())
def test_nmnist_truncated_file_is_named(tmp_path, recwarn, cut):
    _nmnist_tree(tmp_path)
    f = tmp_path / "Train" / "1" / "00000.bin"
    f.write_bytes(f.read_bytes()[:cut])
    _bad_file_named(get_dataset("nmnist", root=tmp_path), f)
    ds = get_dataset("nmnist", root=tmp_path, skip_bad=True)
    assert len(ds) == 5
    _skipped_and_reported(recwarn, ds, [f], 6, "nmnist")


def _aedat2_cases():
    data = encode_aedat2(_events(40, 128, 128, 0))
    return _cuts(len(data), data.index(b"membra\r\n") + 8, 8, seed=2)


@pytest.mark.parametrize("cut", _aedat2_cases())
def test_cifar10_dvs_truncated_file_is_named(tmp_path, recwarn, cut):
    _cifar10_dvs_tree(tmp_path, per_class=10)
    f = tmp_path / "cat" / "cifar10_cat_0.aedat"
    f.write_bytes(f.read_bytes()[:cut])
    _bad_file_named(get_dataset("cifar10-dvs", split="test", root=tmp_path), f)
    ds = get_dataset("cifar10-dvs", split="test", root=tmp_path, skip_bad=True)
    assert len(ds) == 9 and [ds[i][1] for i in range(9)] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    _skipped_and_reported(recwarn, ds, [f], 10, "cifar10-dvs")


def _aedat31_cases():
    """Cuts inside the header, the header alone, and inside packets (28-byte header +
    700 * 8 bytes each); packet boundaries are valid shorter files and left out."""
    data = encode_aedat31(_events(3000, 128, 128, 9, t_max=1000), packet_size=700)
    head = data.index(b"#!END-HEADER\r\n") + 14
    packet = 28 + 700 * 8
    return [c for c in _cuts(len(data), head, 8, seed=3, n=10)
            if c <= head or (c - head) % packet]


@pytest.mark.parametrize("cut", _aedat31_cases())
def test_dvs128_gesture_truncated_recording_is_named(tmp_path, recwarn, cut):
    _gesture_tree(tmp_path)
    (tmp_path / "trials_to_train.txt").write_text("user01_lab.aedat\nuser24_led.aedat\n")
    f = tmp_path / "user01_lab.aedat"
    f.write_bytes(f.read_bytes()[:cut])
    ds = get_dataset("dvs128-gesture", root=tmp_path)
    for i in range(2):          # both gestures of the cut recording
        with pytest.raises(BadFileError, match=re.escape(repr(str(f)))):
            ds[i]
    ds[2], ds[3]
    ds = get_dataset("dvs128-gesture", root=tmp_path, skip_bad=True)
    assert len(ds) == 2 and ds.labels == [2, 10]
    _skipped_and_reported(recwarn, ds, [f, f], 4, "dvs128-gesture")


def test_dvs128_gesture_window_without_events_is_named(tmp_path):
    _gesture_tree(tmp_path)      # events lie in 0..999 us
    (tmp_path / "user24_led_labels.csv").write_text("class,start,end\n3,100,200\n4,5000,6000\n")
    ds = get_dataset("dvs128-gesture", split="test", root=tmp_path)
    assert ds[0][0].sum() > 0
    with pytest.raises(BadFileError, match=r"user24_led\.aedat.*no events.*5000"):
        ds[1]


@pytest.mark.parametrize("cut", _cuts(3 * 3073, 0, 3073, seed=4, exact=True))
def test_cifar10_truncated_batch_is_named(tmp_path, recwarn, cut):
    _cifar_tree(tmp_path, n=3)
    f = tmp_path / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:cut])
    with pytest.raises(BadFileError, match=re.escape(repr(str(f)))) as e:
        get_dataset("cifar10", root=tmp_path, records_per_file=3)
    assert e.value.path == f
    ds = get_dataset("cifar10", root=tmp_path, records_per_file=3, skip_bad=True)
    assert len(ds) == 12
    _skipped_and_reported(recwarn, ds, [f], 5, "cifar10")


def test_cifar10_official_size_catches_a_cut_at_a_record_boundary(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (10000, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 10000).astype(np.uint8)
    f = tmp_path / "test_batch.bin"
    f.write_bytes(encode_cifar10_bin(imgs, labels))
    ds = get_dataset("cifar10", split="test", root=tmp_path, normalize=False)
    assert len(ds) == 10000 and torch.equal(ds[9999][0][0], torch.from_numpy(imgs[-1]) / 255)
    f.write_bytes(encode_cifar10_bin(imgs[:9999], labels[:9999]))
    with pytest.raises(BadFileError, match=r"test_batch\.bin.* 9999 .*10000"):
        get_dataset("cifar10", split="test", root=tmp_path)
    for any_count in (None, 0):
        assert len(get_dataset("cifar10", split="test", root=tmp_path,
                               records_per_file=any_count)) == 9999
    with pytest.raises(ValueError, match="records_per_file"):
        get_dataset("cifar10", split="test", root=tmp_path, records_per_file=-1)


def test_skip_bad_reports_count_and_first_paths(tmp_path, recwarn):
    _nmnist_tree(tmp_path, per_class=3)
    bad = [tmp_path / "Train" / d / f"{i:05d}.bin" for d, i in
           [("0", 1), ("1", 0), ("1", 2), ("2", 1)]]
    for f in bad:
        f.write_bytes(b"")
    ds = get_dataset("nmnist", root=tmp_path, skip_bad=True)
    assert len(ds) == 5 and ds.labels == [0, 0, 1, 2, 2]
    msg = _skipped_and_reported(recwarn, ds, bad, 9, "nmnist")
    assert repr(str(bad[3])) not in msg   # the first few only
    assert get_dataset("nmnist", root=tmp_path).skipped == ()
    for f in tmp_path.glob("Train/*/*.bin"):
        f.write_bytes(b"")
    with pytest.raises(ValueError, match="all 9"):
        get_dataset("nmnist", root=tmp_path, skip_bad=True)
    _cifar_tree(tmp_path, n=3)
    (tmp_path / "data_batch_2.bin").unlink()      # missing is not bad: still an error
    with pytest.raises(FileNotFoundError, match=r"data_batch_2\.bin"):
        get_dataset("cifar10", root=tmp_path, records_per_file=3, skip_bad=True)


def test_skip_bad_from_the_run_config(tmp_path):
    from membra.train.config import config_from_dict
    from membra.train.engine import build_datasets

    _nmnist_tree(tmp_path)
    (tmp_path / "Test" / "2" / "00001.bin").write_bytes(b"\x01\x02")
    cfg = config_from_dict({"data": {"name": "nmnist", "root": str(tmp_path),
                                     "options": {"skip_bad": True}}})
    with pytest.warns(UserWarning, match=r"nmnist: skipped 1 of 6"):
        train, test = build_datasets(cfg)
    assert (len(train), len(test)) == (6, 5) and len(test.skipped) == 1


# ---- images: every pixel mode to [0, 1], oversized and truncated files named --------------
def _raw_image(mode, rng, H=5, W=7):
    """A Pillow image of ``mode`` and its raw pixel values (extremes included)."""
    from PIL import Image

    hi = {"1": 1, "I;16": 65535, "I": 65535}.get(mode, 255)
    shape = (H, W) + {"LA": (2,), "RGB": (3,), "RGBA": (4,)}.get(mode, ())
    raw = rng.integers(0, hi + 1, shape)
    raw.flat[0], raw.flat[-1] = 0, hi
    if mode == "F":
        raw = rng.random((H, W)).astype(np.float32)
        raw.flat[0], raw.flat[-1] = 0.0, 1.0
        return Image.fromarray(raw), raw, None
    dtype = {"1": bool, "I;16": np.uint16, "I": np.int32}.get(mode, np.uint8)
    im = Image.fromarray(raw.astype(dtype))
    palette = None
    if mode == "P":
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        im.putpalette(palette.tobytes())
    assert im.mode == mode
    return im, raw, palette


def _expected_pixels(mode, raw, palette, channels):
    """``[C, H, W]`` in [0, 1] from the raw values: 8-bit / 255, 16-bit and ``I`` / 65535,
    ``F`` as is, ``1`` as 0/1, palette looked up, alpha dropped; grey repeated to 3
    channels, colour to 1 channel by Pillow's luma (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    raw = raw.astype(np.float64)
    if mode == "P":
        raw = palette[raw.astype(int)].astype(np.float64)
    if mode in ("LA", "RGBA"):
        raw = raw[..., :-1]
    scale = {"1": 1, "F": 1, "I;16": 65535, "I": 65535}.get(mode, 255)
    if raw.ndim == 2 or raw.shape[-1] == 1:
        g = raw.reshape(raw.shape[:2] + (1,)) / scale
        out = np.repeat(g, channels, axis=-1)
    elif channels == 3:
        out = raw / scale
    else:
        r, gr, b = (raw[..., k].astype(np.int64) for k in range(3))
        out = (((r * 19595 + gr * 38470 + b * 7471 + 0x8000) >> 16) / 255.0)[..., None]
    return torch.from_numpy(out).permute(2, 0, 1).float()


_MODE_CASES = [(m, ext) for m in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")
               for ext in (".png", ".tif")] + [("I", ".tif"), ("F", ".tif")]


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("mode, ext", _MODE_CASES)
def test_image_modes_decode_to_unit_range(tmp_path, mode, ext, channels):
    rng = np.random.default_rng([ord(ch) for ch in mode + ext] + [channels])
    for split in ("train", "test"):
        (tmp_path / split / "c").mkdir(parents=True)
    im, raw, palette = _raw_image(mode, rng)
    im.save(tmp_path / "train" / "c" / f"a{ext}")
    ds = get_dataset("image-folder", root=tmp_path, size=5, resize_ratio=1.0, channels=channels,
                     T=1)
    x = ds[0][0][0]
    ref = _expected_pixels(mode, raw, palette, channels)[:, :, 1:6]   # centre crop 5 of 7
    assert x.shape == (channels, 5, 5) and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(x, ref, atol=1e-6, rtol=0), (x - ref).abs().max()


@pytest.mark.parametrize("mode, values, what", [
    ("I", [0, 70000], "0..65535"), ("I", [-5, 100], "0..65535"),
    ("F", [0.0, 255.0], r"\[0, 1\]"), ("F", [0.5, float("nan")], r"\[0, 1\]"),
    ("F", [-0.25, 0.5], r"\[0, 1\]")])
def test_image_values_outside_their_range_are_named(tmp_path, mode, values, what):
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / split / "c").mkdir(parents=True)
    a = np.resize(np.array(values, dtype=np.int32 if mode == "I" else np.float32), (4, 4))
    f = tmp_path / "train" / "c" / "a.tif"
    Image.fromarray(a).save(f)
    ds = get_dataset("image-folder", root=tmp_path, size=4, resize_ratio=1.0)
    with pytest.raises(BadFileError, match=re.escape(repr(str(f))) + ".*" + what):
        ds[0]


def test_oversized_image_is_named(tmp_path, monkeypatch, recwarn):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / split / "c").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8 + 8 * (i == 1), 3), dtype=np.uint8)).save(
            tmp_path / "train" / "c" / f"{i}.png")
    big = tmp_path / "train" / "c" / "1.png"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)   # 8x16 = 128 > 2 x 40: a bomb
    ds = get_dataset("image-folder", root=tmp_path, size=8)
    _bad_file_named(ds, big)
    with pytest.raises(BadFileError, match="MAX_IMAGE_PIXELS"):
        ds[1]
    ds = get_dataset("image-folder", root=tmp_path, size=8, skip_bad=True)
    assert len(ds) == 2
    _skipped_and_reported(recwarn, ds, [big], 3, "image-folder")


def _image_bytes(ext):
    import io

    from PIL import Image

    a = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)
    im = Image.fromarray(a).convert("P") if ext == ".gif" else Image.fromarray(a)
    b = io.BytesIO()
    im.save(b, format={".jpg": "JPEG", ".tif": "TIFF"}.get(ext, ext[1:].upper()))
    return b.getvalue()


def _image_cuts(ext, n=10):
    """0, inside the first 16 header bytes, one byte short, and seeded offsets."""
    size = len(_image_bytes(ext))
    rng = np.random.default_rng(len(ext) + size)
    return sorted({0, 1, 8, 15, size - 1} | {int(v) for v in rng.integers(16, size, n)})


_IMAGE_CUTS = [(ext, c) for ext in (".png", ".jpg", ".bmp", ".gif", ".tif", ".ppm", ".webp")
               for c in _image_cuts(ext)]


@pytest.mark.parametrize("ext, cut", _IMAGE_CUTS)
def test_truncated_image_is_named_or_exact(tmp_path, ext, cut):
    for split in ("train", "test"):
        (tmp_path / split / "c").mkdir(parents=True)
    f = tmp_path / "train" / "c" / f"a{ext}"
    f.write_bytes(_image_bytes(ext))
    ds = get_dataset("image-folder", root=tmp_path, size=11, resize_ratio=1.0, T=1)
    whole = ds[0][0]
    f.write_bytes(_image_bytes(ext)[:cut])
    try:
        x = ds[0][0]
    except BadFileError as e:
        assert e.path == f and repr(str(f)) in str(e)
    else:
        assert torch.equal(x, whole)   # e.g. a PNG missing only its end chunk
