"""Multi-process training with ``torch.distributed`` (DDP).

``torchrun --nproc_per_node=N -m membra train CONFIG`` starts N processes; each reads its rank
from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``) and
:func:`setup` joins the process group (gloo on CPU, nccl on CUDA). ``membra train --nproc N``
is a shortcut that runs torchrun for you (:func:`launch`). A single process needs no
environment at all.

Rank 0 alone logs, writes checkpoints and plots; metrics are summed over ranks with
:func:`all_reduce_sum` so every rank reports the same global numbers.

No rank waits forever for a silent one: the process group times out after ``timeout_s``
(``run.ddp_timeout_s``), and every rank runs a :class:`Heartbeat` through the rendezvous store,
so the rank that sees the timeout can say which rank went silent (:func:`peer_failure`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = ["DistContext", "Heartbeat", "setup", "teardown", "resolve_device",
           "all_reduce_sum", "broadcast_object", "launch", "peer_failure", "heartbeat_interval"]


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size`` processes on ``device``; a
    collective waits at most ``timeout_s`` for the other ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    timeout_s: float = 600.0
    heartbeat: Heartbeat | None = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device=None, local_rank: int = 0) -> torch.device:
    """``None`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, str) and device not in ("cpu", "cuda") and \
            not device.startswith("cuda:"):
        raise ValueError(f"device={device!r} is not known; use 'cpu' or 'cuda'")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} was asked for but CUDA is not available "
                             "here; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def heartbeat_interval(timeout_s: float) -> float:
    """Seconds between heartbeats: ``timeout_s / 10`` clamped to [0.1, 5]."""
    return min(5.0, max(0.1, timeout_s / 10))


class Heartbeat:
    """A daemon thread that beats for ``rank`` through ``store`` every ``interval_s`` seconds
    and watches the other ranks' beats.

    Each beat sets the key ``str(rank)`` to JSON ``{"n", "pid", "host", "at"}`` (``n`` counts
    beats, ``at`` is where this rank's main thread is in membra's code), then reads every
    rank's beat and notes, on this process's clock, when each one last advanced. A rank whose
    beat has not advanced for :attr:`grace_s` is silent: its process is stopped, dead, or hung
    holding the interpreter. Nothing is read from the store when a failure is diagnosed, so the
    diagnosis cannot hang on a store that no longer answers."""

    def __init__(self, store, rank: int, interval_s: float, world_size: int | None = None,
                 clock=time.monotonic):
        self.store, self.rank, self.interval_s = store, rank, float(interval_s)
        self.clock = clock
        self.world_size = world_size
        self.grace_s = 3 * self.interval_s
        self._n = 0
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started = clock()
        self._last_ok = self._started  # last store round trip that answered
        self._beats: dict[int, dict] = {}  # rank -> last beat read
        self._advanced: dict[int, float] = {}  # rank -> when its beat last changed

    def _where(self) -> str:
        """``file:line in function`` of the innermost membra frame of the main thread."""
        frame = sys._current_frames().get(self._main)
        sep = os.sep
        while frame is not None:
            path = frame.f_code.co_filename
            if f"{sep}membra{sep}" in path and not path.endswith("distributed.py"):
                tail = path.split(f"{sep}membra{sep}", 1)[1]
                return f"membra/{tail}:{frame.f_lineno} in {frame.f_code.co_name}"
            frame = frame.f_back
        return "outside membra"

    def beat(self) -> None:
        """Write one beat of this rank."""
        self._n += 1
        info = {"n": self._n, "pid": os.getpid(), "host": socket.gethostname(),
                "at": self._where()}
        self.store.set(str(self.rank), json.dumps(info))

    def watch(self) -> None:
        """Read every rank's beat and note which ones advanced (one store round trip once
        every rank has beaten)."""
        world = self.world_size or 0
        keys = [str(r) for r in range(world)]
        present = [k for k in keys if int(k) in self._beats or self.store.check([k])]
        values = self.store.multi_get(present) if present else []
        now = self.clock()
        with self._lock:
            self._last_ok = now
            for k, raw in zip(present, values, strict=True):
                info = json.loads(raw)
                old = self._beats.get(int(k))
                if old is None or old["n"] != info["n"]:
                    self._advanced[int(k)] = now
                self._beats[int(k)] = info

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
                self.watch()
            except Exception:  # noqa: BLE001 -- a store that fails stays stale; diagnosed later
                return

    def start(self) -> Heartbeat:
        """Beat once now, then every ``interval_s`` in a daemon thread."""
        self.beat()
        self.watch()
        self._thread = threading.Thread(target=self._run, name=f"membra-heartbeat-{self.rank}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (waits at most one interval for the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1.0)

    def store_silent_s(self) -> float:
        """Seconds since the store last answered (0 while it answers)."""
        with self._lock:
            age = self.clock() - self._last_ok
        return age if age > self.grace_s else 0.0

    def silent_ranks(self) -> dict[int, dict]:
        """Other ranks whose beat has not advanced for :attr:`grace_s` (or never came since
        this heartbeat started ``grace_s`` ago), with their last beat (``{}`` if none)."""
        now = self.clock()
        with self._lock:
            out = {}
            for r in range(self.world_size or 0):
                last = self._advanced.get(r, self._started)
                if r != self.rank and now - last > self.grace_s:
                    out[r] = dict(self._beats.get(r, {}))
            return out

    def beats(self) -> dict[int, dict]:
        """The last beat read of every rank."""
        with self._lock:
            return {r: dict(b) for r, b in self._beats.items()}


def _store_client(timeout_s: float):
    """A client of the rendezvous store at ``MASTER_ADDR:MASTER_PORT`` (``None`` without
    one), prefixed so that restarts under torchrun do not see each other's beats."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        return None
    try:
        client = dist.TCPStore(addr, int(port), None, False,
                               datetime.timedelta(seconds=timeout_s), wait_for_workers=False)
    except (RuntimeError, ValueError):
        return None
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"membra-heartbeat-{restart}", client)


def setup(device=None, timeout_s: float = 600.0) -> DistContext:
    """Join the process group described by the torchrun environment (if any) and pick the
    device. Without ``WORLD_SIZE > 1`` this is a plain single-process context. A collective
    that waits longer than ``timeout_s`` seconds for another rank raises instead of hanging
    (gloo's default is 30 minutes); a :class:`Heartbeat` lets :func:`peer_failure` name the
    rank that went silent."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or \
            not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistContext(device=dev, timeout_s=float(timeout_s))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    interval = heartbeat_interval(timeout_s)
    store = _store_client(timeout_s)
    heartbeat = Heartbeat(store, rank, interval, world).start() if store is not None else None
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev,
                       owns_group=owns, timeout_s=float(timeout_s), heartbeat=heartbeat)


def teardown(ctx: DistContext) -> None:
    """Stop the heartbeat and leave the process group if :func:`setup` created it."""
    if ctx.heartbeat is not None:
        ctx.heartbeat.stop()
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


_PEER_ERROR = re.compile(r"timed out|timeout|connection (closed|reset|refused)|pair closure|"
                         r"broken pipe|gloo|nccl|peer", re.IGNORECASE)


def _who(rank: int, beat: dict) -> str:
    if not beat:
        return f"rank {rank} is silent (it never beat: it did not start or died at once)"
    return (f"rank {rank} is silent (pid {beat['pid']} on {beat['host']}, last beat while at "
            f"{beat['at']}): its heartbeat stopped, so the process is stopped, dead or hung")


def peer_failure(ctx: DistContext, err: BaseException) -> Exception | None:
    """The error to raise instead of ``err`` when ``err`` is a collective that timed out or
    lost a peer in a distributed run: a ``TimeoutError``/``ConnectionError`` naming the
    silent rank(s) from the heartbeats (``None`` when ``err`` is something else).

    A peer that just died is seen as silent only after the heartbeat's grace period, so this
    waits up to that long for the heartbeats to tell."""
    if not ctx.distributed or not isinstance(err, RuntimeError) or \
            not _PEER_ERROR.search(str(err)):
        return None
    text = str(err).strip()
    timed_out = re.search(r"timed out|timeout", text, re.IGNORECASE) is not None
    cause = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]) if text else type(err).__name__
    cause = re.split(r"(?<=[.!])\s+", cause)[0]  # gloo adds advice and emoji after the fact
    limit = f"run.ddp_timeout_s={ctx.timeout_s:g} s"
    head = (f"rank {ctx.rank}: no answer from another rank within {limit} ({cause})"
            if timed_out else f"rank {ctx.rank}: the connection to another rank broke "
            f"({cause}; {limit})")
    hb = ctx.heartbeat
    kind = TimeoutError if timed_out else ConnectionError
    if hb is None:
        return kind(f"{head}; no heartbeat tells which rank went silent")
    deadline = time.monotonic() + hb.grace_s + 2 * hb.interval_s
    while not hb.silent_ranks() and not hb.store_silent_s() and time.monotonic() < deadline:
        time.sleep(hb.interval_s / 2)
    if hb.store_silent_s():
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        if agent:
            return kind(f"{head}; the torchrun agent's store at {where} has not answered for "
                        f"{hb.store_silent_s():.0f} s, so the launcher itself is stopped or gone")
        return kind(f"{head}; rank 0 is silent: the rendezvous store it hosts at {where} has not "
                    f"answered for {hb.store_silent_s():.0f} s, so rank 0's process is stopped, "
                    "dead or hung")
    silent = hb.silent_ranks()
    if silent:
        return kind(f"{head}; " + "; ".join(_who(r, b) for r, b in sorted(silent.items())))
    where = ", ".join(f"rank {r} at {b.get('at', '?')}" for r, b in sorted(hb.beats().items()))
    return kind(f"{head}; no rank is silent: every process still beats, so one is stuck in "
                f"its own code (a deadlock) or waits in a different collective ({where})")


def all_reduce_sum(values, ctx: DistContext) -> torch.Tensor:
    """Sum a float64 vector of ``values`` over all ranks (identity for one process)."""
    t = torch.as_tensor(values, dtype=torch.float64)
    if ctx.distributed:
        dev = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
        t = t.to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t.cpu()
    return t


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launch(args: list[str], nproc: int) -> int:
    """Run ``torchrun --standalone --nproc_per_node=nproc -m membra <args>`` and return its
    exit code (``membra train --nproc N``)."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be a positive integer, got {nproc!r}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "membra", *args]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)
