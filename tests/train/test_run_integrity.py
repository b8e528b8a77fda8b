"""Run folders and checkpoints cannot be tricked into damaging data.

Families of generated cases: a byte flipped at many offsets of a checkpoint, header edits that
keep the JSON valid, malformed metadata (written with a valid digest), malicious ``latest``
pointers and symlinks, loose checkpoint files, stale temporary files, runs that fail before
their first epoch and checkpoints holding NaN/inf. After each refused command, the files of
the run and of its sibling run are hashed and compared with before.
"""

import hashlib
import json
import math
import os
import random
import re
import shutil
from pathlib import Path

import _tiny
import pytest
import torch
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from membra.cli import app
from membra.train import checkpoint as ck
from membra.train import engine, evaluate_run, fit

DIGEST_KEY = "membra_file_sha256"  # documented in docs/training.md (Checkpoints)


pytestmark = pytest.mark.usefixtures("tiny")
cfg = _tiny.config


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """``run``: 2-epoch config stopped after epoch 1; ``other``: a sibling run (seed 1);
    ``straight``: the same 2 epochs without stopping (reference for exact resume)."""
    base = tmp_path_factory.mktemp("templates")
    with pytest.MonkeyPatch.context() as mp:
        _tiny.patch(mp)
        first = fit(cfg(), run_dir=base / "run",
                    callbacks=[lambda ev, info: ev == "epoch_end" and info["epoch"] == 1])
        assert first["status"] == "interrupted"
        fit(cfg("train.epochs=1", "run.seed=1"), run_dir=base / "other")
        fit(cfg(), run_dir=base / "straight")
    return base


@pytest.fixture
def work(templates, tmp_path):
    """A private copy of the template runs."""
    return Path(shutil.copytree(templates, tmp_path / "w", symlinks=True))


# ---- helpers -------------------------------------------------------------------------------
def tree(d: Path) -> dict:
    """Every entry under ``d`` -> sha256 of its bytes (files), its target (links) or 'dir'."""
    out = {}
    for p in sorted(Path(d).rglob("*")):
        key = str(p.relative_to(d))
        if p.is_symlink():
            out[key] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[key] = "dir"
        else:
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res, *words) -> str:
    """The command failed with exit 2 and exactly one ``error:`` line holding ``words``."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    text = re.sub(r"'[^']*/[^']*'", "'<path>'", errors[0])  # words must not come from paths
    for w in words:
        assert w in text, errors[0]
    return errors[0]


def split_file(path: Path) -> tuple[dict, bytes]:
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join_file(header: dict, data: bytes) -> bytes:
    """A safetensors file from its header dict and data (header padded with spaces to 8)."""
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + data


def forge(path: Path, template: Path, meta_text: str) -> Path:
    """Write ``path``: the tensors of ``template`` with raw metadata ``meta_text`` and a VALID
    digest, computed here independently of membra as documented: the SHA-256 of the whole
    file with the 64 digest digits replaced by '0'."""
    header, data = split_file(template)
    header["__metadata__"] = {"membra": meta_text, DIGEST_KEY: "0" * 64}
    raw = join_file(header, data)
    digest = hashlib.sha256(raw).hexdigest()
    marker = f'"{DIGEST_KEY}":"{"0" * 64}"'.encode()
    assert raw.count(marker) == 1
    Path(path).write_bytes(raw.replace(marker, f'"{DIGEST_KEY}":"{digest}"'.encode()))
    return Path(path)


def latest_of(run: Path) -> Path:
    return run / "checkpoints" / "epoch_0001.safetensors"


def meta_of(path: Path) -> dict:
    header, _ = split_file(path)
    return json.loads(header["__metadata__"]["membra"])


# ---- 1. every altered byte is refused ------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_a_byte_flipped_anywhere_is_refused(work, tmp_path, seed):
    """Offsets over the length prefix, the JSON header (tensor table, metadata, digest) and
    the tensor data, plus truncations and appended bytes; each is refused by
    load_checkpoint and by read_meta with an error naming the file."""
    src = latest_of(work / "run")
    raw = src.read_bytes()
    n = 8 + int.from_bytes(raw[:8], "little")
    rnd = random.Random(seed)
    offsets = sorted(set(range(8)) | set(rnd.sample(range(8, n), 150))
                     | set(rnd.sample(range(n, len(raw)), 60)) | {n, len(raw) - 1})
    variants = []
    for off in offsets:
        data = bytearray(raw)
        data[off] ^= rnd.randrange(1, 256)
        variants.append(bytes(data))
    variants += [raw[:rnd.randrange(len(raw))] for _ in range(10)]  # truncated
    variants += [raw + bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 99)))]
    bad = tmp_path / "bad.safetensors"
    for data in variants:
        bad.write_bytes(data)
        for reader in (ck.load_checkpoint, ck.read_meta):
            with pytest.raises(ValueError) as e:
                reader(bad)
            assert "bad.safetensors" in str(e.value), str(e.value)


@pytest.mark.parametrize("seed", range(2))
def test_every_single_byte_of_a_small_checkpoint_is_covered(tmp_path, seed):
    """Literally every offset of a small checkpoint (prefix, header, metadata, digest,
    padding, data of a float, an int and an empty tensor), each with a random non-zero XOR."""
    rnd = random.Random(seed)
    path = ck.save_checkpoint(tmp_path / "small.safetensors",
                              {"w": torch.randn(5), "i": torch.arange(3), "e": torch.zeros(0)},
                              {"epoch": 1, "history": [{"acc": 0.5}], "note": "x" * seed})
    raw = path.read_bytes()
    for off in range(len(raw)):
        data = bytearray(raw)
        data[off] ^= rnd.randrange(1, 256)
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="small.safetensors"):
            ck.load_checkpoint(path)
    path.write_bytes(raw)
    assert ck.load_checkpoint(path)[1]["epoch"] == 1


def test_whitespace_and_padding_bytes_are_covered(work, tmp_path):
    """Bytes whose change keeps valid JSON (spaces <-> tabs/newlines in the padding and
    between tokens) are refused too: the digest covers the file, not a re-parse of it."""
    raw = latest_of(work / "run").read_bytes()
    n = 8 + int.from_bytes(raw[:8], "little")
    spaces = [i for i in range(8, n) if raw[i] == 0x20]
    bad = tmp_path / "ws.safetensors"
    for off in spaces[-8:]:
        for ch in b"\t\n\r":
            data = bytearray(raw)
            data[off] = ch
            bad.write_bytes(bytes(data))
            with pytest.raises(ValueError, match="altered"):
                ck.load_checkpoint(bad)


def _put(path, value):
    """A metadata edit: ``meta[path[0]][path[1]]... = value``."""
    def fn(m):
        node = m
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return fn


def _edits():
    """Header edits that keep a well-formed safetensors file (old digest: tensors only)."""
    def meta_edit(fn):
        def apply(header):
            m = json.loads(header["__metadata__"]["membra"])
            fn(m)
            header["__metadata__"]["membra"] = json.dumps(m)
        return apply

    yield "T=9", meta_edit(_put(["config", "data", "T"], 9))
    yield "readout", meta_edit(_put(["config", "eval", "readout"], "mean"))
    yield "epoch=-5", meta_edit(_put(["epoch"], -5))
    yield "step", meta_edit(_put(["step"], 1))
    yield "history", meta_edit(_put(["history"], []))
    yield "acc", meta_edit(lambda m: m["history"][0].update(test_acc=1.0))
    yield "rng", meta_edit(lambda m: m["rng"]["python"][1].__setitem__(3, 7))
    yield "lr", meta_edit(_put(["config", "train", "lr"], 0.5))
    yield "pretty", lambda header: header.update(
        __metadata__={**header["__metadata__"],
                      "membra": json.dumps(json.loads(header["__metadata__"]["membra"]),
                                           indent=1)})
    yield "extra-key", lambda header: header["__metadata__"].update(note="hello")


@pytest.mark.parametrize("label,edit", list(_edits()), ids=[e[0] for e in _edits()])
def test_valid_json_edits_of_the_metadata_are_refused(work, label, edit):
    run = work / "run"
    path = latest_of(run)
    header, data = split_file(path)
    edit(header)
    path.write_bytes(join_file(header, data))
    with pytest.raises(ValueError, match="altered"):
        ck.load_checkpoint(path)
    before = tree(work)
    one_line_error(cli("eval", run), "altered")
    one_line_error(cli("train", "--resume", run, "--set", "train.epochs=3"), "altered")
    assert tree(work) == before


# ---- 2. metadata schema --------------------------------------------------------------------
_WRONG = [None, "7", 1.5, True, [], {}]
_TYPES = {"config": dict, "epoch": int, "step": int, "batch_in_epoch": int,
          "epoch_sums": list, "epoch_time": (int, float), "optimizer": dict,
          "scheduler": dict, "rng": dict, "history": list, "world_size": int}


def _variants():
    """``(id, mutate(meta), expected words, train_only)``."""
    def delete(key):
        return lambda m: m.pop(key)

    for key, kind in _TYPES.items():
        yield f"missing-{key}", delete(key), [f"'{key}'", "missing"], False
        for v in _WRONG:
            ok = isinstance(v, kind) and not (isinstance(v, bool) and kind is int) and not \
                (isinstance(v, bool) and kind == (int, float))
            if not ok:
                yield f"{key}={v!r}", _put([key], v), [f"'{key}'"], False
    for key, v in [("epoch", -5), ("epoch", 10**30), ("epoch", 7), ("step", -1),
                   ("step", 2**70), ("batch_in_epoch", -1), ("world_size", 0),
                   ("world_size", -2), ("epoch_time", -1.0), ("epoch_time", math.inf),
                   ("epoch_sums", [1.0, 2.0]), ("epoch_sums", ["a", 0, 0]),
                   ("epoch_sums", [math.nan, 0.0, 0.0]), ("epoch_sums", [0.0, 0.0, -16.0]),
                   ("epoch_sums", [0.5, 3.0, 16.0]),  # counts an epoch that has no batches
                   ("history", [5]), ("history", [{"epoch": 2}]),
                   ("scaler", "x"), ("torch", 5)]:
        yield f"{key}={v!r}", _put([key], v), [f"'{key}'"], False
    yield "batch_in_epoch=huge", lambda m: m.update(batch_in_epoch=10**9, step=10**9 + 6,
                                                     epoch_sums=[1.0, 1.0, 16.0]), \
        ["'batch_in_epoch'"], True
    yield "history-epoch-number", lambda m: m["history"][0].update(epoch=3), ["'history'"], False
    yield "history-no-per-step", lambda m: m["history"][0].pop("test_acc_per_step"), \
        ["'history'", "test_acc_per_step"], False
    yield "history-9-steps", lambda m: m["history"][0].update(test_acc_per_step=[0.5] * 9), \
        ["'history'", "test_acc_per_step"], False
    yield "history-acc-str", lambda m: m["history"][0].update(test_acc="high"), \
        ["'history'", "test_acc"], False
    yield "config-T=0", _put(["config", "data", "T"], 0), ["'config'", "data.T"], False
    yield "config-readout", _put(["config", "eval", "readout"], "best"), \
        ["'config'", "eval.readout"], False
    yield "config-unknown", _put(["config", "train", "lrr"], 1), ["'config'", "lrr"], False
    yield "rng-numpy", _put(["rng", "numpy"], "x"), ["'rng'"], False
    yield "rng-no-python", lambda m: m["rng"].pop("python"), ["'rng'", "python"], False
    yield "rng-python-short", lambda m: m["rng"]["python"].__setitem__(1, [1, 2]), \
        ["'rng'"], False
    yield "optimizer-dict-5", _put(["optimizer"], {"__dict__": 5}), ["'optimizer'"], False
    yield "optimizer-tensor", _put(["optimizer", "__dict__", 0, 1], {"__tensor__": "nope"}), \
        ["'optimizer'", "nope"], False
    yield "optimizer-pair", _put(["optimizer", "__dict__", 0], ["bad"]), ["'optimizer'"], False
    yield "format", _put(["format"], 2), ["format"], False


VARIANTS = list(_variants())


@pytest.mark.parametrize("vid,mutate,words,train_only", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_malformed_metadata_is_a_named_error(work, vid, mutate, words, train_only):
    """Each variant is written with a valid digest (_tiny.reseal); train
    --resume and eval stop with one named error line and write nothing."""
    run = work / "run"
    path = latest_of(run)
    _tiny.reseal(path, mutate)
    before = tree(work)
    one_line_error(cli("train", "--resume", run, "--set", "train.epochs=3"),
                   "metadata", *words)
    assert tree(work) == before
    if not train_only:
        one_line_error(cli("eval", run), "metadata", *words)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("where,depth", [("top", 10**5), ("history", 10**5),
                                         ("options", 10**5), ("history", 200),
                                         ("top-dict", 10**5)])
def test_deeply_nested_metadata_is_a_named_error(work, where, depth):
    run = work / "run"
    path = latest_of(run)
    text = json.dumps(meta_of(path))
    if where == "top":
        text = _deep(depth)
    elif where == "top-dict":
        text = '{"a":' * depth + "1" + "}" * depth
    elif where == "history":
        text = text.replace('"history": [', f'"history": [{_deep(depth)}, ', 1)
    else:
        text = text.replace('"options": {}', f'"options": {{"x": {_deep(depth)}}}', 1)
    forge(path, path, text)
    before = tree(work)
    one_line_error(cli("eval", run), "metadata", "nested")
    one_line_error(cli("train", "--resume", run), "metadata", "nested")
    assert tree(work) == before
    with pytest.raises(ValueError, match="nested"):
        ck.load_checkpoint(path)


@pytest.mark.parametrize("meta", ["[]", "5", '"x"', "null", "{", ""])
def test_metadata_that_is_not_an_object_is_refused(work, meta):
    path = latest_of(work / "run")
    forge(path, path, meta)
    with pytest.raises(ValueError, match="metadata"):
        ck.load_checkpoint(path)


def test_a_forged_deep_header_is_refused(work, tmp_path):
    """The safetensors header itself nested 10^5 levels (not the membra metadata)."""
    path = latest_of(work / "run")
    header, data = split_file(path)
    raw = join_file(header, data)
    n = int.from_bytes(raw[:8], "little")
    deep = raw[8:8 + n].rstrip()[:-1] + b',"z":' + _deep(10**5).encode() + b"}"
    deep += b" " * (-len(deep) % 8)
    bad = tmp_path / "deep.safetensors"
    bad.write_bytes(len(deep).to_bytes(8, "little") + deep + data)
    with pytest.raises(ValueError, match="deep.safetensors"):
        ck.load_checkpoint(bad)


# ---- 3. latest and symlinks never lead out of the run's checkpoints/ -------------------------
LATEST_CONTENTS = {
    "dotdot": b"../../other/checkpoints/epoch_0001.safetensors\n",
    "dotdot-own": b"../checkpoints/epoch_0001.safetensors",
    "absolute": None,  # filled with the sibling's absolute path
    "etc": b"/etc/hostname",
    "empty": b"",
    "newlines": b"\n\n",
    "spaces": b"   ",
    "nul": b"\x00",
    "nul-suffix": b"epoch_0001.safetensors\x00../../x",
    "long": b"a" * 5000,
    "long-name": b"x" * 300 + b".safetensors",
    "subdir": b"sub/epoch_0001.safetensors",
    "dot": b".",
    "dotdot-bare": b"..",
    "backslash": b"..\\..\\other\\checkpoints\\epoch_0001.safetensors",
    "binary": b"\xff\xfe\x00\x01",
    "two-lines": b"epoch_0001.safetensors\nepoch_0002.safetensors",
    "hidden-tmp": b".epoch_0001.safetensors.abcd1234.tmp",
    "not-safetensors": b"config.toml",
}


def _symlink_setups():
    def link_latest_to_file(run, other):
        (run / "checkpoints" / "latest").unlink()
        (run / "checkpoints" / "latest").symlink_to(other / "checkpoints" / "latest")

    def link_latest_to_dir(run, other):
        (run / "checkpoints" / "latest").unlink()
        (run / "checkpoints" / "latest").symlink_to(other / "checkpoints")

    def named_link_out(run, other):
        (run / "checkpoints" / "evil.safetensors").symlink_to(
            Path("../../other/checkpoints/epoch_0001.safetensors"))
        (run / "checkpoints" / "latest").write_text("evil.safetensors\n")

    def checkpoints_dir_link(run, other):
        shutil.rmtree(run / "checkpoints")
        (run / "checkpoints").symlink_to(other / "checkpoints")

    def latest_is_dir(run, other):
        (run / "checkpoints" / "latest").unlink()
        (run / "checkpoints" / "latest").mkdir()

    def latest_loop(run, other):
        (run / "checkpoints" / "latest").unlink()
        (run / "checkpoints" / "latest").symlink_to("latest")

    def latest_dangling(run, other):
        (run / "checkpoints" / "latest").unlink()
        (run / "checkpoints" / "latest").symlink_to(other / "nothing")

    def checkpoints_loop(run, other):
        shutil.rmtree(run / "checkpoints")
        (run / "checkpoints").symlink_to("checkpoints")

    return [link_latest_to_file, link_latest_to_dir, named_link_out, checkpoints_dir_link,
            latest_is_dir, latest_loop, latest_dangling, checkpoints_loop]


def _latest_cases():
    for name, content in LATEST_CONTENTS.items():
        yield pytest.param(name, content, None, id=name)
    for setup in _symlink_setups():
        yield pytest.param(setup.__name__, None, setup, id=setup.__name__)


@pytest.mark.parametrize("name,content,setup", list(_latest_cases()))
def test_latest_never_leads_outside_the_run(work, name, content, setup):
    run, other = work / "run", work / "other"
    if setup is not None:
        setup(run, other)
    else:
        if content is None:
            content = str(latest_of(other)).encode()
        (run / "checkpoints" / "latest").write_bytes(content)
    before_other, before_run = tree(other), tree(run)
    one_line_error(cli("train", "--resume", run, "--set", "train.epochs=2"), "checkpoints")
    one_line_error(cli("eval", run), "checkpoints")
    assert tree(other) == before_other
    assert tree(run) == before_run
    from membra.cli._runs import load_run_model

    with pytest.raises((ValueError, FileNotFoundError), match="checkpoints"):
        load_run_model(run)


@pytest.mark.parametrize("entry", ["config.toml", "metrics.jsonl", "summary.json", "tb",
                                   "plots"])
def test_run_files_that_are_symlinks_out_are_refused(work, entry):
    """Resuming writes config.toml, metrics.jsonl, summary.json, tb/ and plots/: none of them
    may be a link that would make it write into another folder."""
    run, other = work / "run", work / "other"
    target = other / entry
    if not target.exists():
        target.mkdir()
    if (run / entry).is_dir():
        shutil.rmtree(run / entry)
    else:
        (run / entry).unlink(missing_ok=True)
    (run / entry).symlink_to(target)
    before = tree(other)
    one_line_error(cli("train", "--resume", run, "--set", "train.epochs=2"), entry,
                   "symbolic link")
    assert tree(other) == before


# ---- 4. a loose checkpoint file starts a new run folder -------------------------------------
def _loose_places(base: Path):
    yield "plain-folder", base / "downloads"
    yield "out-dir", base / "runs"
    yield "run-root", base / "runs" / "tiny"  # where the new run would go by its name
    yield "checkpoints-without-run", base / "copy" / "checkpoints"


@pytest.mark.parametrize("place", [p for p, _ in _loose_places(Path("."))])
def test_resume_from_a_loose_file_writes_a_new_run_folder(work, tmp_path, monkeypatch, place):
    monkeypatch.chdir(tmp_path)
    folder = dict(_loose_places(tmp_path))[place]
    folder.mkdir(parents=True)
    for name, text in (("config.toml", "# someone else's\n"), ("metrics.jsonl", "{}\n"),
                       ("summary.json", "{}\n")):
        (folder / name).write_text(text)
    loose = folder / "epoch_0001.safetensors"
    shutil.copy(latest_of(work / "run"), loose)
    before = tree(folder)
    res = cli("train", "--resume", loose)
    assert res.exit_code == 0, res.output
    new = tmp_path / "runs" / ("tiny-1" if place == "run-root" else "tiny")
    shown = json.loads((new / "summary.json").read_text())["run_dir"]  # relative to cwd
    assert Path(shown).resolve() == new and f"new run folder {shown}" in res.output
    after = {k: v for k, v in tree(folder).items()  # the new run may be a subfolder (out-dir)
             if not (folder / k).is_relative_to(new)}
    assert after == before
    assert len((new / "metrics.jsonl").read_text().splitlines()) == 2
    a, _ = ck.load_checkpoint(work / "straight")
    b, meta = ck.load_checkpoint(new)
    assert meta["epoch"] == 2 and set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)  # exact resume


# ---- 5. temporary files --------------------------------------------------------------------
TMP_NAMES = [".epoch_0001.safetensors.abc12_xy.tmp", ".latest.q1w2e3r4.tmp",
             ".interrupt_step_00000008.safetensors.zzzzzzzz.tmp", ".epoch_0003.safetensors..tmp"]


@pytest.mark.parametrize("name", TMP_NAMES)
@pytest.mark.parametrize("size", [0, 1, 70_000])
def test_stale_temp_files_are_cleaned_and_never_count(tmp_path, name, size):
    ckdir = tmp_path / "r" / "checkpoints"
    ckdir.mkdir(parents=True)
    (ckdir / name).write_bytes(b"\x01" * size)
    out = fit(cfg("train.epochs=1"), run_dir=tmp_path / "r")
    assert out["run_dir"] == str(tmp_path / "r")  # the name is still free
    assert sorted(p.name for p in ckdir.iterdir()) == ["epoch_0001.safetensors", "latest"]


@pytest.mark.parametrize("name", TMP_NAMES)
def test_resume_cleans_stale_temp_files(work, name):
    run = work / "run"
    (run / "checkpoints" / name).write_bytes(b"\x02" * 1000)
    res = cli("train", "--resume", run)
    assert res.exit_code == 0, res.output
    assert not (run / "checkpoints" / name).exists()
    assert ck.resolve_checkpoint(run).name == "epoch_0002.safetensors"


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt, MemoryError, OSError])
def test_an_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch, where, exc):
    path = tmp_path / "c.safetensors"
    ck.save_checkpoint(path, {"w": torch.ones(3)}, {"epoch": 1})

    def boom(*a, **k):
        raise exc("interrupted")

    if where == "write":
        real = os.fdopen

        def fdopen(fd, *a, **k):
            fh = real(fd, *a, **k)

            class F:
                def __enter__(self):
                    return self

                def __exit__(self, *e):
                    fh.close()

                write = staticmethod(boom)
                flush = fh.flush
                fileno = fh.fileno
            return F()
        monkeypatch.setattr(os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(os, where, boom)
    with pytest.raises(exc):
        ck.save_checkpoint(path, {"w": torch.zeros(3)}, {"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
    assert ck.load_checkpoint(path)[1]["epoch"] == 1


def test_writes_are_temp_fsync_replace(tmp_path, monkeypatch):
    """The order of an atomic write: temp file in the target's folder, fsync of the file,
    os.replace onto the target, fsync of the folder."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}")
                       if os.path.exists("/proc/self/fd") else None))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", Path(a).parent == Path(b).parent, Path(a).name[0] == "."))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ck.save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(3)}, {"epoch": 1})
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[1][1:] == (True, True)
    if events[0][1] is not None:
        assert (events[0][1], events[2][1]) == (False, True)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, mask):
    """A checkpoint (or config/summary) written atomically is as readable as a file written
    with open(): mode 0o666 minus the umask, not mkstemp's owner-only 0o600."""
    old = os.umask(mask)
    try:
        ck.atomic_write_bytes(tmp_path / "f.json", b"{}")
        ck.save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(2)}, {"epoch": 1})
    finally:
        os.umask(old)
    for name in ("f.json", "c.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


# ---- 6. a run that fails before its first epoch leaves nothing behind -----------------------
def _failures():
    def data_missing(mp):
        def raise_(cfg):
            raise FileNotFoundError("dataset files not found under data.root")
        mp.setattr(engine, "build_datasets", raise_)
        return {}, FileNotFoundError

    def model_mismatch(mp):
        return {"model": torch.nn.Sequential(torch.nn.Linear(10, 3))}, ValueError

    def nan_first_step(mp):
        return {"loss_fn": lambda out, y: out.sum() * float("nan")}, "nan_loss"

    def callback_error(mp):
        def cb(event, info):
            if event == "batch_end" and info["step"] == 2:
                raise RuntimeError("callback failed")
        return {"callbacks": [cb]}, RuntimeError

    def abort(mp):
        def cb(event, info):
            if event == "batch_end" and info["step"] == 1:
                raise KeyboardInterrupt
        return {"callbacks": [cb]}, KeyboardInterrupt

    return [data_missing, model_mismatch, nan_first_step, callback_error, abort]


@pytest.mark.parametrize("fail", _failures(), ids=lambda f: f.__name__)
@pytest.mark.parametrize("nested", [False, True])
def test_a_run_failing_before_its_first_epoch_leaves_no_folder(tmp_path, monkeypatch, fail,
                                                              nested):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    run_dir = out_dir / "a" / "b" / "r" if nested else out_dir / "r"
    kwargs, expected = fail(monkeypatch)
    if isinstance(expected, str):
        assert fit(cfg(), run_dir=run_dir, **kwargs)["status"] == expected
    else:
        with pytest.raises(expected):
            fit(cfg(), run_dir=run_dir, **kwargs)
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.txt"]


def test_a_failing_resume_keeps_its_run_folder(work):
    run = work / "run"
    before = tree(run / "checkpoints")
    out = fit(cfg(), resume=run, loss_fn=lambda out, y: out.sum() * float("nan"))
    assert out["status"] == "nan_loss"
    assert tree(run / "checkpoints") == before and (run / "config.toml").is_file()


# ---- 7. NaN/inf in an evaluated checkpoint -------------------------------------------------
def _poisons():
    rnd = random.Random(0)
    for value in (math.nan, math.inf, -math.inf):
        for key in ("model.0.weight", "model.0.bias", "model.2.init_potential",
                    "model.1.module.running_var"):
            yield key, value, rnd.random()


@pytest.mark.parametrize("key,value,where", list(_poisons()))
def test_eval_warns_loudly_about_non_finite_tensors(work, key, value, where):
    run = work / "run"
    path = latest_of(run)
    tensors, _ = ck.load_checkpoint(path)
    t = tensors[key].clone()
    t.view(-1)[int(where * t.numel())] = value
    tensors[key] = t
    ck.save_checkpoint(path, tensors, meta_of(path))
    with pytest.warns(RuntimeWarning, match=key.replace(".", r"\.")):
        evaluate_run(run, show=False)
    res = cli("eval", run)
    assert res.exit_code == 0, res.output
    warn = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warn) == 1 and key in warn[0] and "not finite" in warn[0], res.output


def test_eval_of_a_finite_checkpoint_does_not_warn(work, recwarn):
    evaluate_run(work / "run", show=False)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ---- 8. older checkpoints ------------------------------------------------------------------
def _write_format_1(path: Path, tensors: dict, meta: dict) -> None:
    """A checkpoint as membra wrote it before its digest covered the metadata."""
    meta = {**meta, "format": "membra.checkpoint/1"}
    path.write_bytes(st_save(tensors, metadata={"membra": json.dumps(meta),
                                                "membra_sha256": ck.tensor_digest(tensors)}))


def test_format_1_checkpoints_are_refused_until_upgraded(work, tmp_path):
    run = work / "run"
    path = latest_of(run)
    tensors, meta = ck.load_checkpoint(path)
    meta.pop("format")
    _write_format_1(path, tensors, meta)
    with pytest.raises(ValueError, match="membra.checkpoint/1.*upgrade_checkpoint"):
        ck.load_checkpoint(path)
    one_line_error(cli("eval", run), "upgrade_checkpoint")
    ck.upgrade_checkpoint(path)
    back, meta2 = ck.load_checkpoint(path)
    assert meta2["format"] == ck.FORMAT and meta2["history"] == meta["history"]
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    # a format-1 file with altered tensor bytes is not upgraded
    _write_format_1(path, tensors, meta)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="altered"):
        ck.upgrade_checkpoint(path)
