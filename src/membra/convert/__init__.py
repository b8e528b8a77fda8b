"""ANN-to-SNN conversion: QCFS training, naive IF conversion, PASCAL spike accumulation (the
SNN equals the QCFS ANN exactly) and adaptive layer-wise levels (AL-QCFS).

Example::

    from membra.convert import replace_relu, to_snn, al_select, set_L
    model = replace_relu(ann, L=8, lam_init=2.0)          # train it (membra convert train)
    snn = to_snn(model.eval(), mode="pascal")             # BN folded inside
    logits = snn(x)                                       # == model(x)
    print(snn.report().to_markdown())                     # L, windows, spikes, SOPs, energy
    naive = to_snn(model, mode="naive", T=32)
    per_step = naive(x, return_all_steps=True)            # [T, B, K] running means

    qnet = quantize_relu(relu_net, calib_x, L=8)           # a trained ReLU net, calibrated
    snn = to_snn(qnet, mode="pascal")                     # == qnet(x)
"""

from .accounting import ConversionReport, StaticInput
from .al import al_select, distortion, pascal_hist_statistic
from .calibrate import quantize_relu, relu_sites
from .fold import check_values, fold_bn
from .graph import InvalidValueError, UnsupportedLayerError, capture
from .nets import NETS, build_net
from .neurons import NaiveIF, PascalNeuron, bias_shares, signed_counts, two_phase_counts
from .qcfs import (
    QCFS,
    Residual,
    get_L,
    qcfs,
    qcfs_count,
    qcfs_counts,
    qcfs_layers,
    qcfs_scale,
    replace_relu,
    set_L,
)
from .snn import ConvertedSNN, to_snn

__all__ = ["QCFS", "Residual", "replace_relu", "set_L", "get_L", "qcfs", "qcfs_count",
           "qcfs_scale", "qcfs_layers", "fold_bn", "check_values", "capture", "to_snn",
           "ConvertedSNN", "ConversionReport", "al_select", "distortion",
           "pascal_hist_statistic", "UnsupportedLayerError", "InvalidValueError",
           "two_phase_counts", "signed_counts", "bias_shares", "qcfs_counts", "NETS",
           "build_net", "quantize_relu", "relu_sites", "PascalNeuron", "NaiveIF",
           "StaticInput"]
