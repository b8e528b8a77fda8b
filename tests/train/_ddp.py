"""Workers of the multi-process DDP tests (spawned, so they live in an importable module)."""

from __future__ import annotations

import os
import traceback

import _tiny
import torch


def stop_worker(rank: int, world: int, port: int, run_dir: str, overrides: list[str],
                stop_rank: int, sig: int, out: str) -> None:
    """One rank of a tiny DDP run; ``stop_rank`` sends itself ``sig`` after its first
    optimizer step. The others write ``TypeName: message`` of the error :func:`fit` raised
    to ``out.<rank>`` and exit with status 1 (0 if ``fit`` returned)."""
    from membra.train import fit
    from membra.train.config import parse_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    _tiny.patch()

    def halt(event, info):
        if event == "batch_end" and info["step"] == 1 and rank == stop_rank:
            os.kill(os.getpid(), sig)

    try:
        fit(parse_config(_tiny.TINY_TOML, overrides), run_dir=run_dir, device="cpu",
            model=_tiny.tiny_model(bn=False), callbacks=[halt])
    except BaseException as err:  # noqa: BLE001 -- reported to the parent test
        with open(f"{out}.{rank}", "w") as f:
            f.write(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
        os._exit(1)
    os._exit(0)
