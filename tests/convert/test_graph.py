"""BN folding, torch.fx capture of torchvision-style nets, and the unsupported-layer errors."""

import copy

import pytest
import torch
from convert_cases import qcfs_counts, random_cnn, randomize_bn
from torch import nn

from membra.convert import (
    QCFS,
    Residual,
    UnsupportedLayerError,
    build_net,
    fold_bn,
    replace_relu,
    to_snn,
)


def test_fold_bn_matches_the_unfolded_net():
    model, x = random_cnn(5)
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # input untouched
    # without quantization (QCFS -> ReLU) the folded net equals the unfolded one to 1e-5
    plain = copy.deepcopy(model)
    for module in list(plain.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, QCFS):
                setattr(module, name, nn.ReLU())
    with torch.no_grad():
        ref = plain(x)
        torch.testing.assert_close(fold_bn(plain)(x), ref, rtol=1e-5, atol=1e-5)
    assert ref.abs().max() > 0.1  # a real comparison, not of zeros
    # with QCFS, in float64, folding changes no spike count and the logits to 1e-12
    out, counts = qcfs_counts(model.double(), x.double())
    out_f, counts_f = qcfs_counts(fold_bn(model), x.double())
    assert counts.keys() == counts_f.keys() and len(counts) == 6
    assert all(torch.equal(counts[p], counts_f[p]) for p in counts)
    torch.testing.assert_close(out_f, out, rtol=0, atol=1e-12)


def test_standalone_batchnorm_is_refused():
    net = nn.Sequential(nn.Linear(4, 4), QCFS(2), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    with pytest.raises(UnsupportedLayerError, match=r"'2' \(BatchNorm1d\).*directly follow"):
        fold_bn(net)


@pytest.mark.parametrize("bad,pattern", [
    (nn.ReLU(), r"\(ReLU\): replace it with membra.convert.replace_relu"),
    (nn.GELU(), r"\(GELU\): only QCFS"),
    (nn.LayerNorm(6), r"\(LayerNorm\): layer norm"),
    (nn.Softmax(-1), r"\(Softmax\): keep the softmax outside"),
])
def test_unsupported_layers_name_path_type_and_hint(bad, pattern):
    net = nn.Sequential(nn.Linear(4, 6), QCFS(2), nn.Sequential(bad), nn.Linear(6, 2)).eval()
    with pytest.raises(UnsupportedLayerError, match=r"'2\.0' " + pattern):
        to_snn(net)


def test_functional_relu_and_products_are_refused():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return torch.relu(self.fc(x))

    with pytest.raises(UnsupportedLayerError, match="function relu.*replace_relu"):
        to_snn(F())

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) * x

    with pytest.raises(UnsupportedLayerError, match="function mul"):
        to_snn(M())


@pytest.mark.parametrize("name,shape", [("mlp", (64,)), ("cnn", (1, 8, 8)),
                                        ("sew_resnet18", (2, 16, 16))])
def test_spiking_zoo_models_are_refused_with_a_pointer_to_the_convertible_nets(name, shape):
    from membra.models import create_model

    net = create_model(name, in_shape=shape, num_classes=3)
    with pytest.raises(UnsupportedLayerError, match=r"\((LIF|TimeDistributed)\): this is "
                       r"already a spiking.*membra.convert.NETS \(digits_net, resnet18"):
        to_snn(net)


def test_maxpool_rules():
    analog = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), QCFS(2),
                           nn.Flatten(), nn.Linear(32, 2)).eval()
    with pytest.raises(UnsupportedLayerError, match="directly on the spikes of a QCFS"):
        to_snn(analog)
    spiking = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), QCFS(2), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(32, 2)).eval()
    to_snn(spiking)  # pascal accepts it
    with pytest.raises(UnsupportedLayerError, match="use AvgPool2d before training"):
        to_snn(spiking, "naive", T=4)
    x = torch.rand(3, 1, 8, 8)
    approx = to_snn(spiking, "naive", T=4, allow_spike_maxpool=True)(x)
    assert approx.shape == (3, 2)


def test_residual_sum_must_feed_a_neuron():
    net = nn.Sequential(nn.Linear(4, 4), QCFS(2), Residual(nn.Linear(4, 4)),
                        nn.Linear(4, 2)).eval()
    with pytest.raises(UnsupportedLayerError, match="residual sum must feed a QCFS"):
        to_snn(net)


def test_bad_arguments():
    net = nn.Sequential(nn.Linear(4, 4), QCFS(2), nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match="mode must be one of"):
        to_snn(net, "fast")
    with pytest.raises(ValueError, match="naive conversion needs T"):
        to_snn(net, "naive")
    with pytest.raises(ValueError, match="T is for mode='naive'"):
        to_snn(net, "pascal", T=4)
    with pytest.raises(TypeError, match="floating-point input"):
        to_snn(net)(torch.ones(2, 4, dtype=torch.long))


@pytest.mark.parametrize("name,shape,kw", [
    ("resnet18", (3, 16, 16), {"width": 8}),
    ("resnet34", (3, 32, 32), {"width": 4, "stem": "imagenet"}),
    ("vgg16", (3, 32, 32), {"width": 16}),
])
def test_torchvision_style_nets_convert_exactly(name, shape, kw):
    torch.manual_seed(0)
    net = build_net(name, in_shape=shape, num_classes=5, **kw)
    if name == "vgg16":  # narrow the convolutions too
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data *= 1.5
    net = replace_relu(net, L=2, lam_init=1.0)
    randomize_bn(net, torch.Generator().manual_seed(1)).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        ref = fold_bn(net).double()(x.double())
    snn = to_snn(net, "pascal", dtype=torch.float64)
    out = snn(x.double())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    n_qcfs = sum(isinstance(m, QCFS) for m in net.modules())
    assert len(snn.counts) == n_qcfs  # every activation became a spiking layer
