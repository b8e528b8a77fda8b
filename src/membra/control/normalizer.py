r"""Running observation normaliser: ``z = clip((o - mean) / sqrt(var + eps), -clip, clip)``.

Mean and variance are merged batch-wise (Chan et al.) while :attr:`frozen` is False; they are
buffers, so they are saved in the actor's state dict (safetensors) with the weights.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ObsNormalizer"]


class ObsNormalizer(nn.Module):
    def __init__(self, dim: int, clip: float = 3.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = float(clip), float(eps)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(0.0))
        self.frozen = True

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Merge a batch ``[B, dim]`` of raw observations into the running statistics."""
        obs = torch.as_tensor(obs, dtype=self.mean.dtype).reshape(-1, self.mean.numel())
        n = float(obs.shape[0])
        if n == 0:
            return
        b_mean, b_var = obs.mean(0), obs.var(0, unbiased=False)
        tot = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta ** 2 * self.count * n / tot
        self.mean += delta * n / tot
        self.var.copy_(m2 / tot)
        self.count.fill_(tot)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = (obs - self.mean) / torch.sqrt(self.var + self.eps)
        return z.clamp(-self.clip, self.clip)
