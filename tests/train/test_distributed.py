"""DDP: 2 CPU processes (gloo) take the same step as 1 process with the same global batch."""

import socket
from pathlib import Path

import _tiny
import pytest
import torch
import torch.multiprocessing as mp

from membra.train import checkpoint as ck
from membra.train import fit
from membra.train.config import parse_config
from membra.train.distributed import resolve_device

ROOT = Path(__file__).resolve().parents[2]

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


# ---- no hang: a process-group timeout, and the silent rank named ---------------------------
def _stop_at_init(monkeypatch):
    """Make ``init_process_group`` record its keyword arguments and stop the run there."""
    seen = {}

    class Reached(Exception):
        pass

    def fake_init(*args, **kwargs):
        seen.update(kwargs)
        raise Reached

    monkeypatch.setattr(torch.distributed, "init_process_group", fake_init)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    for k, v in dict(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(k, v)
    return seen, Reached


@pytest.mark.parametrize("timeout", [None, 1, 7.5, 600, 86400])
def test_ddp_timeout_reaches_the_process_group(tmp_path, monkeypatch, timeout):
    import datetime

    _tiny.patch(monkeypatch)
    seen, reached = _stop_at_init(monkeypatch)
    sets = [] if timeout is None else [f"run.ddp_timeout_s={timeout}"]
    cfg = parse_config(_tiny.TINY_TOML, sets)
    assert cfg.run.ddp_timeout_s == (600 if timeout is None else timeout)
    with pytest.raises(reached):
        fit(cfg, run_dir=tmp_path / "r", device="cpu")
    assert seen["timeout"] == datetime.timedelta(seconds=cfg.run.ddp_timeout_s)


@pytest.mark.parametrize("value", ["0", "-1", "0.5", "86401", "nan", "inf", "true", "1e20"])
def test_ddp_timeout_range(value):
    with pytest.raises(ValueError, match=r"run\.ddp_timeout_s.*\[1, 86400\]"):
        parse_config("", [f"run.ddp_timeout_s={value}"])


@pytest.mark.parametrize("seed", range(6))
def test_silent_ranks_are_the_ones_whose_heartbeat_stopped(seed):
    """World sizes 2-5, random silent subsets (including none, and ranks that never joined):
    the diagnosis names exactly the silent ranks, and its error names them."""
    import random

    from membra.train.distributed import DistContext, Heartbeat, peer_failure

    r = random.Random(seed)
    world = r.randint(2, 5)
    me = r.randrange(world)
    others = [k for k in range(world) if k != me]
    silent = set(r.sample(others, r.randint(0 if seed else 1, len(others))))
    never = {k for k in silent if r.random() < 0.3}
    store = torch.distributed.HashStore()
    now, interval = [0.0], 0.01
    beats = {k: Heartbeat(store, k, interval, world, clock=lambda: now[0])
             for k in range(world) if k not in never}
    for hb in beats.values():
        hb.beat()
    beats[me].watch()
    for _ in range(10):  # ten beat intervals on a fake clock: the silent ranks beat no more
        now[0] += interval
        for k, hb in beats.items():
            if k not in silent:
                hb.beat()
        beats[me].watch()
    assert set(beats[me].silent_ranks()) == silent
    ctx = DistContext(rank=me, world_size=world, heartbeat=beats[me], timeout_s=3.0)
    err = peer_failure(ctx, RuntimeError("[gloo] Timed out waiting 3000ms for recv "
                                         "operation to complete"))
    msg = str(err)
    assert isinstance(err, TimeoutError) and "run.ddp_timeout_s=3" in msg
    for k in range(world):
        assert (f"rank {k} is silent" in msg) == (k in silent), msg
    if not silent:
        assert "no rank is silent" in msg


def test_non_distributed_errors_are_not_peer_failures():
    from membra.train.distributed import DistContext, peer_failure

    assert peer_failure(DistContext(), RuntimeError("Timed out")) is None
    assert peer_failure(DistContext(rank=0, world_size=2), ValueError("x")) is None


@pytest.mark.slow
@pytest.mark.parametrize("stop_rank", [1, 0])
@pytest.mark.parametrize("sig", ["SIGSTOP", "SIGKILL"])
def test_a_stopped_rank_is_named_and_the_other_exits(tmp_path, stop_rank, sig):
    """One rank stops (or dies) after its first step; with run.ddp_timeout_s=3 the other exits
    with an error naming it (not after gloo's default 30 minutes)."""
    import os
    import signal
    from pathlib import Path

    import _ddp

    timeout = 3
    ctx = mp.get_context("spawn")
    out = str(tmp_path / "err")
    sets = ["train.epochs=2", "data.batch_size=16", f"run.ddp_timeout_s={timeout}"]
    port = _free_port()
    procs = [ctx.Process(target=_ddp.stop_worker,
                         args=(r, 2, port, str(tmp_path / "run"), sets, stop_rank,
                               getattr(signal, sig), out)) for r in range(2)]
    for p in procs:
        p.start()
    survivor = 1 - stop_rank
    try:
        procs[survivor].join(timeout=timeout + 120)  # a bound, not a timing measurement
        assert procs[survivor].exitcode == 1, "the surviving rank did not stop"
        first = Path(f"{out}.{survivor}").read_text().splitlines()[0]
        assert first.startswith(("TimeoutError: ", "ConnectionError: ")), first
        assert f"rank {stop_rank} is silent" in first, first
        assert f"rank {survivor} is silent" not in first, first
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join()


# ---- errors found before torchrun starts, printed once -------------------------------------
def _needs_root():
    from membra.data import dataset_entries

    return [e.name for e in dataset_entries() if not e.builtin]


def _prelaunch_cases():
    cases = []
    for nproc in (2, 3, 4, 5):
        for bs in (nproc + 1, 2 * nproc - 1, 64 * nproc + 1, 7 * nproc + nproc // 2):
            if bs % nproc:
                cases.append(([f"data.batch_size={bs}"], nproc, f"data.batch_size={bs}"))
                cases.append(([f"data.batch_size={8 * nproc}", f"data.eval_batch_size={bs}"],
                              nproc, f"data.eval_batch_size={bs}"))
    for name in _needs_root():
        cases.append(([f"data.name='{name}'"], 2, "data.root"))
        cases.append(([f"data.name='{name}'", "data.root='/nonexistent/membra-x'"], 2,
                      "/nonexistent/membra-x"))
        cases.append(([f"data.name='{name}'", "data.root='@FILE'"], 2, "data.root"))
    return cases


def _invoke_train(monkeypatch, tmp_path, sets, nproc):
    from typer.testing import CliRunner

    from membra.cli import app
    from membra.train import distributed

    calls = []
    monkeypatch.setattr(distributed, "launch", lambda args, n: calls.append((args, n)) or 0)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    sets = [s.replace("@FILE", str(afile)) for s in sets]
    args = ["train", str(ROOT / "configs" / "digits_imp_lts.toml"), "--nproc", str(nproc)]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(app, args), calls


@pytest.mark.parametrize("sets, nproc, word", _prelaunch_cases())
def test_prelaunch_errors_before_torchrun_printed_once(tmp_path, monkeypatch, sets, nproc,
                                                      word):
    res, calls = _invoke_train(monkeypatch, tmp_path, sets, nproc)
    assert calls == [], "torchrun was started"
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and word in errors[0], res.output


@pytest.mark.parametrize("nproc", [2, 3, 4])
def test_prelaunch_accepts_a_valid_run(tmp_path, monkeypatch, nproc):
    sets = [f"data.batch_size={12 * nproc}", f"data.eval_batch_size={5 * nproc}"]
    res, calls = _invoke_train(monkeypatch, tmp_path, sets, nproc)
    assert res.exit_code == 0, res.output
    assert len(calls) == 1 and calls[0][1] == nproc
    names = _needs_root()
    (tmp_path / "data").mkdir()
    res, calls = _invoke_train(monkeypatch, tmp_path,
                               [f"data.name='{names[0]}'", f"data.root='{tmp_path / 'data'}'"],
                               2)
    assert res.exit_code == 0 and len(calls) == 1, res.output
