"""Training: TOML run configs, the training engine, callbacks, checkpoints and distributed
runs.

Example::

    from membra.train import fit, load_config
    metrics = fit(load_config("configs/digits_imp_lts.toml", ["train.epochs=3"]))
    run = load_run(metrics["run_dir"])          # run.model, run.config, run.meta
"""

from . import callbacks
from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig, dump_config, load_config
from .engine import evaluate_run, fit
from .runs import Run, load_run
from .state import RunState, RunStatus

__all__ = ["RunConfig", "load_config", "dump_config", "fit", "evaluate_run", "load_run", "Run",
           "save_checkpoint", "load_checkpoint", "Callback", "callbacks", "RunState",
           "RunStatus"]
