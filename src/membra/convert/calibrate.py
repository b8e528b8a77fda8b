r"""Post-training conversion of a plain ReLU network: every ReLU call becomes a calibrated QCFS.

:func:`quantize_relu` traces the model with torch.fx, finds every ReLU *call site*
(``nn.ReLU`` modules, a module called twice counting twice, ``F.relu``, ``torch.relu``,
``x.relu()``), runs the user's data through the model recording each site's ReLU outputs
``a = max(z, 0)``, and replaces the site by a :class:`~membra.convert.QCFS` with level ``L`` and
clip value

.. math:: \lambda = \max a \quad (\texttt{scale="max"}), \qquad
          \lambda = P_p(a) \quad (\texttt{scale="percentile"}),

where :math:`P_p` is the ``p``-th percentile with linear interpolation between order
statistics (``torch.quantile``'s rule), over every recorded output of the site (zeros
included), or per channel (dimension 1) with ``channelwise=True``. A site (or channel) whose
outputs are all zero gets ``lambda = 1``. This is the weight/threshold normalisation of
SpikingJelly's ``ann2snn.Converter`` and Sinabs' ``normalize_weights``, expressed as QCFS clip
values; nothing is fine-tuned.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.fx as fx
from torch import nn

from .graph import RELU_FUNCTIONS, call_site_names, trace, unshare
from .qcfs import QCFS, _check_L

__all__ = ["quantize_relu", "relu_sites", "percentile"]

_SCALES = ("max", "percentile")


def percentile(values: torch.Tensor, p: float) -> torch.Tensor:
    """``p``-th percentile (0..100) along the last dimension, interpolating linearly between
    the order statistics at ``pos = p/100 (n - 1)`` (``torch.quantile``'s default; this one
    has no input-size limit)."""
    v = values.sort(-1).values
    pos = p / 100 * (v.shape[-1] - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[..., lo] + (v[..., hi] - v[..., lo]) * (pos - lo)


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in RELU_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def relu_sites(model: nn.Module) -> list[str]:
    """Names of the ReLU call sites of ``model`` in call order: a module's path (``path@k`` for
    the k-th call of a module called several times), or the fx node name of a function."""
    gm = trace(copy.deepcopy(model))
    names = call_site_names(gm)
    return [names.get(n, n.name) for n in gm.graph.nodes if _is_relu(gm, n)]


class _Recorder(nn.Module):
    """ReLU that records, per call, its outputs (``keep``: all of them, else the running max),
    over the whole tensor or per channel (dimension 1)."""

    def __init__(self, channelwise: bool, keep: bool):
        super().__init__()
        self.channelwise, self.keep = channelwise, keep
        self.values: list[torch.Tensor] = []
        self.max: torch.Tensor | None = None
        self.shape: tuple[int, ...] = ()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = torch.relu(z)
        self.shape = tuple(a.shape[1:])
        flat = a.detach().transpose(0, 1).reshape(a.shape[1], -1) if self.channelwise \
            else a.detach().reshape(1, -1)
        if self.keep:
            self.values.append(flat)
        m = flat.amax(-1)
        self.max = m if self.max is None else torch.maximum(self.max, m)
        return a

    def lam(self, scale: str, p: float) -> torch.Tensor:
        """Clip value per site ``[]`` or per channel ``[C, 1, ...]`` (broadcasts over
        ``[B, C, ...]``); 1 where every output was 0."""
        v = percentile(torch.cat(self.values, -1), p) if scale == "percentile" else self.max
        v = torch.where(v > 0, v, torch.ones_like(v))
        if not self.channelwise:
            return v.reshape(())
        return v.reshape(-1, *[1] * (len(self.shape) - 1))


def _batches(data, batch_size: int = 256):
    """The input tensors of ``data``: a tensor (split into batches) or an iterable of tensors
    or of ``(x, ...)`` tuples (a DataLoader)."""
    if isinstance(data, torch.Tensor):
        if data.dim() < 1 or len(data) == 0:
            raise ValueError(f"data: a tensor of inputs [N, ...] with N >= 1, got shape "
                             f"{tuple(data.shape)}")
        yield from data.split(batch_size)
        return
    try:
        items = iter(data)
    except TypeError:
        raise TypeError(f"data must be a tensor [N, ...] or an iterable of batches (a "
                        f"DataLoader), got {type(data).__name__}") from None
    for item in items:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"data: each batch must be a tensor or an (x, ...) tuple whose x "
                            f"is a tensor, got {type(x).__name__}")
        yield x


def _check_args(L, scale, percentile_, channelwise) -> None:
    _check_L(L)
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    if isinstance(percentile_, bool) or not isinstance(percentile_, (int, float)) or \
            not 0 < percentile_ <= 100:
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile_!r}")
    if not isinstance(channelwise, bool):
        raise TypeError(f"channelwise must be True or False, got {channelwise!r}")


def quantize_relu(model: nn.Module, data, L: int = 8, scale: str = "max",
                  percentile: float = 99.9, channelwise: bool = False) -> fx.GraphModule:
    """A copy of ``model`` (traced, eval mode) in which every ReLU call site is a QCFS with
    level ``L`` and a clip value calibrated on ``data`` (module doc); ``to_snn`` takes it.

    Args:
        model: a trained network with ReLU activations (``nn.ReLU`` modules, also shared, or
            ``F.relu`` / ``torch.relu`` / ``x.relu()``); it is not modified.
        data: calibration inputs: a tensor ``[N, ...]`` or an iterable of batches (a
            DataLoader yielding tensors or ``(x, y)``).
        L: quantization level of every QCFS, int >= 1.
        scale: ``"max"`` or ``"percentile"`` of the recorded ReLU outputs.
        percentile: the percentile in ``(0, 100]`` for ``scale="percentile"``.
        channelwise: one clip value per channel (dimension 1) instead of one per site.

    The QCFS modules are named after their call site (:func:`relu_sites`; a module called
    twice gives ``path@1`` and ``path@2``); ``qcfs_layers(result)`` lists them.
    """
    _check_args(L, scale, percentile, channelwise)
    gm = unshare(trace(copy.deepcopy(model)).eval())
    recorders: dict[str, _Recorder] = {}
    for node in list(gm.graph.nodes):
        if not _is_relu(gm, node):
            continue
        rec = _Recorder(channelwise, keep=scale == "percentile")
        name = str(node.target) if node.op == "call_module" else node.name
        while node.op != "call_module" and hasattr(gm, name):
            name += "_"
        gm.add_submodule(name, rec)
        recorders[name] = rec
        if node.op != "call_module":
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
    if not recorders:
        raise ValueError(f"quantize_relu: {type(model).__name__} has no ReLU (nn.ReLU, F.relu, "
                         "torch.relu, x.relu()) to replace")
    gm.recompile()
    param = next(iter(gm.parameters()), None)
    n = 0
    with torch.no_grad():
        for x in _batches(data):
            gm(x.to(param.dtype) if param is not None and x.is_floating_point() else x)
            n += len(x)
    if n == 0:
        raise ValueError("quantize_relu: data holds no batch to calibrate on")
    for name, rec in recorders.items():
        q = QCFS(L)
        q.lam = nn.Parameter(rec.lam(scale, percentile).to(q.lam.dtype if param is None
                                                              else param.dtype))
        gm.add_submodule(name, q)
    return gm.eval()
