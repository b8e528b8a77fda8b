"""DDP: 2 CPU processes (gloo) take the same step as 1 process with the same global batch."""

import socket

import _tiny
import pytest
import torch
import torch.multiprocessing as mp

from membra.train import checkpoint as ck
from membra.train import fit
from membra.train.config import parse_config
from membra.train.distributed import resolve_device

# one epoch = one optimizer step: 16 training samples, global batch 16 (8 per process)
OVERRIDES = ["train.epochs=1", "data.options={n=16}", "data.batch_size=16",
             "data.eval_batch_size=16", "train.warmup_epochs=0", "train.grad_clip=1.0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, monkeypatch):
    mp.spawn(_tiny.ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), OVERRIDES),
             nprocs=2, join=True)
    _tiny.patch(monkeypatch)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    single = fit(parse_config(_tiny.TINY_TOML, OVERRIDES), run_dir=tmp_path / "one",
                 device="cpu", model=_tiny.tiny_model(bn=False))
    assert single["steps_done"] == 1
    t2, m2 = ck.load_checkpoint(tmp_path / "ddp")
    t1, m1 = ck.load_checkpoint(tmp_path / "one")
    assert m2["world_size"] == 2 and m2["step"] == 1
    start = _tiny.tiny_model(bn=False)
    params = dict(start.named_parameters())
    assert "1.init_potential" in params
    for k, v in start.state_dict().items():
        a, b = t1[f"model.{k}"], t2[f"model.{k}"]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        if k in params:
            assert not torch.equal(a, v), f"{k} did not move"
    h1, h2 = m1["history"][0], m2["history"][0]
    # metrics are reduced over ranks: the whole test set, the whole training batch
    assert h2["test_samples"] == h1["test_samples"] == 48
    assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-5)
    assert h2["test_acc_per_step"] == h1["test_acc_per_step"]
    assert h2["firing_rate"]["1"] == pytest.approx(h1["firing_rate"]["1"], rel=1e-5)


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device='tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
