"""Run configs: validation errors name the key, overrides, TOML round trip, shipped files."""

from pathlib import Path

import pytest

from membra.train.config import (
    RunConfig,
    apply_overrides,
    dump_config,
    load_config,
    parse_config,
    parse_override,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_round_trip():
    cfg = RunConfig()
    assert parse_config(dump_config(cfg)) == cfg
    cfg = parse_config("", ["model.neuron_kwargs.init_potential='learnable'",
                            "data.options={ noise = 0.1 }", "data.root='/x y'"])
    assert parse_config(dump_config(cfg)) == cfg
    assert cfg.data.root == "/x y" and cfg.data.options == {"noise": 0.1}


@pytest.mark.parametrize("override, words", [
    ("train.lrr=1", ["'train.lrr'", "did you mean 'lr'", "weight_decay"]),
    ("trian.lr=1", ["'trian'", "did you mean 'train'"]),
    ("model.neuron_kwargs.taux=2", ["'model.neuron_kwargs.taux'", "did you mean 'tau'"]),
])
def test_unknown_key_names_it_with_did_you_mean(override, words):
    with pytest.raises(ValueError) as e:
        parse_config("", [override])
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("override, words", [
    ("train.lr='fast'", ["train.lr", "number"]),
    ("train.epochs=2.5", ["train.epochs", "integer"]),
    ("train.epochs=true", ["train.epochs", "integer"]),
    ("train.amp=1", ["train.amp", "true/false"]),
    ("data.options=3", ["data.options", "table"]),
    ("run.name=7", ["run.name", "string"]),
])
def test_wrong_type_names_key(override, words):
    with pytest.raises(ValueError) as e:
        parse_config("", [override])
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("override, words", [
    ("train.lr=-1", ["train.lr", "(0, 10]"]),
    ("train.lr=0", ["train.lr", "(0, 10]"]),
    ("train.loss='lts'", ["train.loss", "lts_ce", "did you mean 'lts_ce'"]),
    ("model.neuron='lifx'", ["model.neuron", "'lif'"]),
    ("eval.readout='first'", ["eval.readout", "'mean'", "'last'"]),
    ("data.T=0", ["data.T", "[1, 10000]"]),
    ("train.momentum=1.5", ["train.momentum", "[0, 1]"]),
    ("train.warmup_epochs=50", ["train.warmup_epochs", "train.epochs"]),
    ("train.betas=[0.9]", ["train.betas"]),
    ("model.neuron_kwargs.tau=-2.0", ["model.neuron_kwargs.tau", "positive"]),
    ("model.neuron_kwargs.reset='sofft'", ["model.neuron_kwargs.reset"]),
    ("run.name='a/b'", ["run.name"]),
])
def test_bad_value_names_key(override, words):
    with pytest.raises(ValueError) as e:
        parse_config("", [override])
    for w in words:
        assert w in str(e.value)


def test_overrides_use_toml_values():
    cfg = parse_config("[train]\nlr = 0.1\nepochs = 3\n",
                       ["train.lr=1e-3", "train.epochs=7", "run.name=quick", "train.amp=true",
                        "model.neuron_kwargs.tau=3", "train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 7 and cfg.run.name == "quick" and cfg.train.amp is True
    assert cfg.model.neuron_kwargs == {"tau": 3} and cfg.train.betas == [0.8, 0.9]
    assert parse_override("a.b = 'x=y'") == (["a", "b"], "x=y")
    # the input dict is not modified
    data = {"train": {"lr": 0.1}}
    assert apply_overrides(data, ["train.lr=0.2"])["train"]["lr"] == 0.2
    assert data == {"train": {"lr": 0.1}}


@pytest.mark.parametrize("bad", ["train.lr", "lr=3", "train.=3"])
def test_malformed_override(bad):
    with pytest.raises(ValueError, match="override"):
        parse_config("", [bad])


def test_config_is_frozen():
    cfg = RunConfig()
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


def test_every_shipped_config_loads():
    files = sorted(p for p in CONFIGS.glob("*.toml") if not p.name.startswith("convert_"))
    names = {f.name for f in files}
    for want in ("digits_imp_lts.toml", "digits_dvs_ls_tet.toml",
                 "cifar10dvs_vgg11_ls_tet.toml", "imagenet_sew34_imp_lts.toml"):
        assert want in names
    assert any(n.startswith("cifar10_") for n in names)
    for f in files:
        cfg = load_config(f)
        assert parse_config(dump_config(cfg)) == cfg, f.name
    main = load_config(CONFIGS / "digits_imp_lts.toml")
    assert main.data.name == "digits" and main.data.T == 4 and main.train.loss == "lts_ce"
    assert main.eval.readout == "last"
    assert main.model.neuron_kwargs.get("init_potential") == "learnable"
    dvs = load_config(CONFIGS / "cifar10dvs_vgg11_ls_tet.toml")
    assert dvs.data.T == 16 and dvs.train.loss == "ls_tet" and dvs.model.name == "vgg11"
    imnet = load_config(CONFIGS / "imagenet_sew34_imp_lts.toml")
    assert imnet.data.T == 4 and imnet.train.loss == "lts_ce"
    assert imnet.model.name == "sew_resnet34" and imnet.eval.readout == "last"


IN_SHAPES = {"digits": (64,), "digits-dvs": (2, 16, 16), "cifar10-dvs": (2, 128, 128),
             "cifar10": (3, 32, 32), "image-folder": (3, 224, 224),
             "mnist-5k": (1, 28, 28), "mnist1d-static": (40,)}


# convert_*.toml are conversion run files (an extra [convert] table): tests/convert checks them
@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.toml")
                                        if not p.name.startswith("convert_")),
                         ids=lambda p: p.name)
def test_shipped_config_builds_its_model(path):
    """Dataset name and model options of every shipped config are valid."""
    import inspect

    from membra.data import dataset_entries, list_datasets
    from membra.models import create_model

    cfg = load_config(path)
    assert cfg.data.name in list_datasets()
    builder = next(e.builder for e in dataset_entries() if e.name == cfg.data.name)
    assert set(cfg.data.options) <= set(inspect.signature(builder).parameters), cfg.data.options
    model = create_model(cfg.model.name, in_shape=IN_SHAPES[cfg.data.name], num_classes=10,
                         neuron=cfg.model.neuron, neuron_kwargs=dict(cfg.model.neuron_kwargs),
                         **cfg.model.options)
    assert any(n.endswith("init_potential") for n, _ in model.named_parameters())
