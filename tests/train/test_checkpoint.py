"""Checkpoints: round trip, optimizer flattening, atomic writes, corruption refusal."""

import errno
import os

import pytest
import torch

from membra.train import checkpoint as ck


def _tensors():
    w = torch.randn(4, 3)
    return {"model.w": w, "model.tied": w, "model.view": w[1:3], "s": torch.tensor(2.5),
            "half": torch.randn(5).half(), "bf": torch.randn(2, 2).bfloat16(),
            "mask": torch.tensor([True, False]), "i": torch.arange(6).view(2, 3)}


def test_round_trip(tmp_path):
    t = _tensors()
    meta = {"epoch": 3, "history": [{"acc": 0.5, "per_step": [0.1, 0.2]}], "x": None}
    path = ck.save_checkpoint(tmp_path / "a.safetensors", t, meta)
    back, m = ck.load_checkpoint(path)
    assert set(back) == set(t)
    for k in t:
        assert back[k].dtype == t[k].dtype and torch.equal(back[k], t[k])
    assert m["epoch"] == 3 and m["history"] == meta["history"] and m["x"] is None
    assert ck.read_meta(path)["format"] == ck.FORMAT


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    def make():
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(5))
        return p, torch.optim.AdamW([p], lr=0.1, betas=(0.8, 0.95))

    def stepper(p, opt, n):
        for i in range(n):
            opt.zero_grad()
            ((p - i) ** 2).sum().backward()
            opt.step()

    p, opt = make()
    stepper(p, opt, 3)
    tensors, skel = ck.flatten_state(opt.state_dict(), "optim")
    ck.save_checkpoint(tmp_path / "o.safetensors",
                       {"p": p.detach(), **tensors}, {"optim": skel})
    stepper(p, opt, 2)
    p2, opt2 = make()
    back, meta = ck.load_checkpoint(tmp_path / "o.safetensors")
    with torch.no_grad():
        p2.copy_(back["p"])
    opt2.load_state_dict(ck.unflatten_state(meta["optim"], back))
    assert opt2.param_groups[0]["betas"] == (0.8, 0.95)
    stepper(p2, opt2, 2)
    assert torch.equal(p, p2)


def test_flatten_rejects_objects():
    with pytest.raises(TypeError, match="cannot store"):
        ck.flatten_state({"a": object()}, "x")


def test_corrupted_truncated_and_foreign_files_refused(tmp_path):
    path = ck.save_checkpoint(tmp_path / "a.safetensors", {"w": torch.randn(64)}, {"e": 1})
    data = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.safetensors"
    data[-5] ^= 0x10
    flipped.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        ck.load_checkpoint(flipped)
    short = tmp_path / "short.safetensors"
    short.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="corrupted|truncated"):
        ck.load_checkpoint(short)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(ValueError, match="truncated"):
        ck.load_checkpoint(tiny)
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ValueError, match="not a membra checkpoint"):
        ck.load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        ck.load_checkpoint(tmp_path / "missing.safetensors")


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    ck.save_checkpoint(path, {"w": torch.ones(3)}, {"epoch": 1})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="could not write .*intact"):
        ck.save_checkpoint(path, {"w": torch.zeros(3)}, {"epoch": 2})
    monkeypatch.undo()
    tensors, meta = ck.load_checkpoint(path)
    assert meta["epoch"] == 1 and torch.equal(tensors["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]  # no temp left


def test_latest_pointer(tmp_path):
    d = tmp_path / "run" / "checkpoints"
    d.mkdir(parents=True)
    for e in (1, 2):
        ck.save_checkpoint(d / f"epoch_{e}.safetensors", {"w": torch.full((2,), e)}, {"e": e})
    ck.write_latest(d, "epoch_1.safetensors")
    assert ck.resolve_checkpoint(tmp_path / "run").name == "epoch_1.safetensors"
    assert ck.load_checkpoint(tmp_path / "run")[1]["e"] == 1
    ck.write_latest(d, "gone.safetensors")
    with pytest.raises(FileNotFoundError, match="gone.safetensors"):
        ck.resolve_checkpoint(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.resolve_checkpoint(tmp_path)


def test_model_state_mismatch_is_explained():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"] = torch.zeros(5, 4)
    del state["1.bias"]
    state["2.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as e:
        ck.load_model_state(model, state)
    msg = str(e.value)
    assert "0.weight: model (3, 4) vs checkpoint (5, 4)" in msg
    assert "missing in checkpoint: 1.bias" in msg and "not in the model: 2.weight" in msg
