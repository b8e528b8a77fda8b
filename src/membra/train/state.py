"""What a run knows about itself while it trains: :class:`RunStatus` (how it ended) and
:class:`RunState` (where it is, and the running sums of the current epoch).

The sums of an epoch stay on the training device (``loss * B``, correct predictions,
samples of this process) so that a step needs no host synchronisation to update them; a
checkpoint stores them as the list ``[loss_sum, correct, samples]`` under ``epoch_sums``,
the format every earlier run folder used, so old checkpoints still resume.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

__all__ = ["RunStatus", "RunState"]


class RunStatus(str, enum.Enum):
    """How a run ended. The value is the string written to ``summary.json`` and returned by
    :func:`membra.train.fit` under ``status``; being a ``str`` it compares equal to it
    (``RunStatus.COMPLETED == "completed"``)."""

    COMPLETED = "completed"      # every epoch trained
    INTERRUPTED = "interrupted"  # Ctrl-C or a callback asked to stop; checkpoint written
    NAN_LOSS = "nan_loss"        # loss, weights or buffers not finite; nothing written
    MAX_STEPS = "max_steps"      # train.max_steps reached

    def __str__(self) -> str:
        return self.value


@dataclass
class RunState:
    """Position of a run and the running sums of its current epoch.

    ``epoch`` counts finished epochs, ``step`` optimizer steps, ``batch_in_epoch`` the
    batches of the current epoch already trained; ``sums`` is a float64 tensor
    ``[sum of loss * B, correct, samples]`` over this process's batches of the epoch, on the
    training device; ``logged`` the same sums as host floats, copied once per step with the
    step's one synchronisation (what progress bars and callbacks read); ``seen_time`` the
    seconds spent training in this epoch; ``history`` one metrics dict per finished epoch.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    sums: torch.Tensor | None = None
    seen_time: float = 0.0
    history: list[dict] = field(default_factory=list)
    logged: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def __post_init__(self):
        if self.sums is None:
            self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)

    def with_batch(self, loss: torch.Tensor, correct: torch.Tensor, batch: int) -> torch.Tensor:
        """``sums + [loss * B, correct, B]``, computed on the device (no host sync)."""
        return self.sums + torch.stack([loss.detach().double() * batch, correct.double(),
                                        torch.full((), float(batch), dtype=torch.float64,
                                                   device=self.sums.device)])

    def start_epoch(self) -> None:
        """Forget the sums of the epoch just finished and count it."""
        self.epoch += 1
        self.batch_in_epoch, self.seen_time = 0, 0.0
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.sums.device)
        self.logged = [0.0, 0.0, 0.0]

    # ---- checkpoint metadata (the keys every run folder has used) ---------------------------
    def to_meta(self) -> dict:
        """The JSON fields of a checkpoint that hold this state."""
        return {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                "epoch_sums": self.sums.tolist(), "epoch_time": self.seen_time,
                "history": self.history}

    def load_meta(self, meta: dict) -> None:
        """Take the position, sums and history of a checkpoint's metadata."""
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.batch_in_epoch = meta["batch_in_epoch"]
        self.logged = [float(v) for v in meta["epoch_sums"]]
        self.sums = torch.tensor(self.logged, dtype=torch.float64, device=self.sums.device)
        self.seen_time = meta.get("epoch_time", 0.0)
        self.history = list(meta["history"])
