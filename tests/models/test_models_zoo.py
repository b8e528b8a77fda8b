"""Model zoo: every registered model on a small configuration."""

import pytest
import torch
from torch import nn

from membra.models import create_model, list_models, model_entries
from membra.nn import IF, LIF, SpikingNeuron, param_groups

# Small configurations (same code paths as the full-size ones, a fraction of the cost).
SMALL = {
    "mlp": dict(in_shape=(64,), kw=dict(hidden=(16, 12))),
    "cnn": dict(in_shape=(1, 8, 8), kw=dict(channels=(4, 8), hidden=16)),
    "vgg11": dict(in_shape=(2, 16, 16), kw=dict(widths=(4, 4, 8, 8))),
    "sew_resnet18": dict(in_shape=(3, 16, 16), kw=dict(widths=(4, 4, 8, 8))),
    "sew_resnet34": dict(in_shape=(2, 12, 12), kw=dict(widths=(4, 4, 8, 8))),
}
T, B, K = 3, 4, 5


def _build(name, neuron="lif", **neuron_kwargs):
    cfg = SMALL[name]
    return create_model(name, in_shape=cfg["in_shape"], num_classes=K, neuron=neuron,
                        neuron_kwargs=neuron_kwargs, **cfg["kw"])


def _x(name, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, *SMALL[name]["in_shape"], generator=g) * 2


def test_registry_lists_required_models_with_descriptions():
    assert {"mlp", "cnn", "vgg11", "sew_resnet18", "sew_resnet34"} <= set(list_models())
    assert all(e.description for e in model_entries())
    assert set(list_models()) <= set(SMALL), "add a small configuration for new models"


@pytest.mark.parametrize("neuron", ["lif", "if"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_shape(name, neuron):
    torch.manual_seed(0)
    model = _build(name, neuron)
    out = model(_x(name))
    assert out.shape == (T, B, K) and torch.isfinite(out).all()
    kind = LIF if neuron == "lif" else IF
    neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
    assert neurons and all(type(m) is kind for m in neurons)
    assert model.predict(_x(name)).shape == (B, K)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_learnable_potentials_exist_before_forward_and_get_gradients(name):
    torch.manual_seed(0)
    model = _build(name, init_potential="learnable")
    neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
    imp = [p for n, p in model.named_parameters() if n.endswith("init_potential")]
    assert len(imp) == len(neurons) > 0
    for m in neurons:
        assert m.shape is not None and m.init_potential.shape == (1, *m.shape)
        assert 0.4 <= m.init_potential.min() and m.init_potential.max() <= 0.6
    no_decay = {id(p) for p in param_groups(model, 0.01)[1]["params"]}
    assert all(id(p) in no_decay for p in imp)
    keys = [k for k in model.state_dict() if k.endswith("init_potential")]
    assert len(keys) == len(imp)
    out = model(_x(name))
    loss = nn.functional.cross_entropy(out.mean(0), torch.arange(B) % K)
    loss.backward()
    for p in imp:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_wrong_input_shape_names_layer_and_shapes(name):
    model = _build(name)
    shape = SMALL[name]["in_shape"]
    bad = (shape[0] + 1, *shape[1:])
    with pytest.raises(ValueError) as err:
        model(torch.zeros(T, B, *bad))
    msg = str(err.value)
    assert name in msg and str(shape) in msg and str(bad) in msg and "body." in msg
    with pytest.raises(ValueError, match="in_shape"):
        model(torch.zeros(B, *shape))  # time axis missing


def test_construction_leaves_batchnorm_statistics_untouched():
    model = _build("cnn")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_batches_tracked == 0 and torch.all(m.running_mean == 0)
    assert model.training


def test_neuron_kwargs_reach_every_neuron():
    model = _build("sew_resnet18", "if", reset="soft", v_th=0.5, surrogate="sigmoid")
    neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
    assert all(m.reset == "soft" and m.v_th == 0.5 and m.surrogate == "sigmoid"
               for m in neurons)
    # stem + 2 per block + 3 downsampling shortcuts
    assert len(neurons) == 1 + 2 * 8 + 3


def test_digits_mlp_matches_the_spec_network():
    model = create_model("mlp", in_shape=(64,), num_classes=10)
    linear = [m.module for m in model.modules()
              if hasattr(m, "module") and isinstance(m.module, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(64, 128), (128, 128),
                                                                  (128, 10)]
    assert [m.shape for m in model.modules() if isinstance(m, LIF)] == [(128,), (128,)]


def test_vgg11_layout():
    model = create_model("vgg11", in_shape=(2, 48, 48), num_classes=10,
                         neuron_kwargs={"init_potential": "learnable"})
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    shapes = [m.shape for m in model.modules() if isinstance(m, LIF)]
    assert shapes == [(64, 48, 48), (128, 24, 24), (256, 12, 12), (256, 12, 12)] + \
        [(512, 6, 6)] * 4
    # any size works: tiny inputs skip pooling once the map is 1x1
    tiny = create_model("vgg11", in_shape=(2, 4, 4), num_classes=3, widths=(2, 2, 2, 2))
    assert tiny(torch.rand(2, 1, 2, 4, 4)).shape == (2, 1, 3)


@pytest.mark.parametrize("name, ann_params", [
    ("sew_resnet18", 11_689_512),   # torchvision resnet18, 1000 classes
    ("sew_resnet34", 21_797_672),   # torchvision resnet34
])
def test_sew_resnet_imagenet_parameter_count_equals_resnet(name, ann_params):
    """Neurons without learnable state add no parameters: the SEW net has exactly the
    parameters of the ANN ResNet it mirrors (stem 7x7/2 + avg-pool, chosen for inputs >= 64)."""
    model = create_model(name, in_shape=(3, 64, 64), num_classes=1000, neuron="if")
    assert sum(p.numel() for p in model.parameters()) == ann_params
    pools = [m for m in model.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 1 and pools[0].kernel_size == 3 and pools[0].stride == 2


@pytest.mark.parametrize("call, msg", [
    (lambda: create_model("vgg", in_shape=(2, 8, 8), num_classes=3), "did you mean 'vgg11'"),
    (lambda: create_model("mlp", in_shape=(64,), num_classes=0), "num_classes"),
    (lambda: create_model("mlp", in_shape=(), num_classes=3), "in_shape"),
    (lambda: create_model("mlp", in_shape=(64,), num_classes=3, neuron="lfi"), "neuron="),
    (lambda: create_model("mlp", in_shape=(64,), num_classes=3, widths=3), r"no option.*hidden"),
    (lambda: create_model("mlp", in_shape=(64,), num_classes=3,
                          neuron_kwargs={"shape": (64,)}), "must not contain 'shape'"),
    (lambda: create_model("mlp", in_shape=(64,), num_classes=3,
                          neuron_kwargs={"taux": 2.0}), "neuron_kwargs"),
    (lambda: create_model("cnn", in_shape=(64,), num_classes=3), r"in_shape=\(C, H, W\)"),
    (lambda: create_model("mlp", in_shape=(64,), num_classes=3, readout="first"), "readout"),
    (lambda: create_model("sew_resnet18", in_shape=(3, 8, 8), num_classes=3, stem="big"),
     "stem="),
])
def test_bad_arguments(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_dry_run_reports_the_layer_that_cannot_take_the_shape():
    from membra.models import Stack

    s = Stack((10,), "lif", {})
    with pytest.raises(ValueError, match=r"Linear\(in_features=12.*per-sample shape \(10,\)"):
        s.add(nn.Linear(12, 4))


@pytest.mark.parametrize("train_mode", [False, True])
def test_sew_static_stem_equals_per_step_stem_on_direct_input(train_mode):
    torch.manual_seed(0)
    kw = dict(in_shape=(3, 16, 16), num_classes=K, neuron="if", widths=(4, 4, 8, 8))
    ref = create_model("sew_resnet18", **kw)
    fast = create_model("sew_resnet18", static_stem=True, **kw)
    fast.load_state_dict(ref.state_dict())
    ref.train(train_mode)
    fast.train(train_mode)
    x = torch.rand(1, B, 3, 16, 16).expand(T, B, 3, 16, 16) * 3
    assert torch.allclose(fast(x), ref(x), atol=1e-5)
    with pytest.raises(ValueError, match="same input at every step"):
        fast(torch.rand(T, B, 3, 16, 16))
