"""Readers: tiny files written in each real on-disk format, read back exactly."""

import pickle
import struct

import numpy as np
import pytest
import torch

from membra.data import events_to_frames, get_dataset
from membra.data.base import item_generator
from membra.data.events import make_events
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
    tr = get_dataset("cifar10", split="train", root=tmp_path, T=2, normalize=False)
    te = get_dataset("cifar10", split="test", root=root, T=3)
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
    a = get_dataset("cifar10", root=tmp_path, augment=True, seed=0)
    b = get_dataset("cifar10", root=tmp_path, augment=True, seed=0)
    assert torch.equal(a[2][0], b[2][0])
    views = {tuple(get_dataset("cifar10", root=tmp_path, augment=True, seed=s)[2][0][0]
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
