"""``mnist1d-static``: the MNIST-1D signals as static vectors, beside the sequential
``mnist1d``; an MLP learns them far above chance."""

import pytest
import torch

from membra.data import get_dataset


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("length, seed, num_samples", [(40, 0, 5000), (25, 1, 730),
                                                        (13, 3, 250)])
def test_static_items_are_the_sequence_at_every_step(split, length, seed, num_samples):
    seq = get_dataset("mnist1d", split=split, T=length, seed=seed, num_samples=num_samples)
    for T in (1, 3):
        st = get_dataset("mnist1d-static", split=split, T=T, seed=seed, length=length,
                         num_samples=num_samples)
        assert st.info.in_shape == (length,) and st.info.T == T and len(st) == len(seq)
        assert torch.equal(st.labels, seq.labels)
        for i in (0, len(st) // 2, len(st) - 1):
            x, y = st[i]
            assert x.shape == (T, length) and x.dtype == torch.float32 and y == seq[i][1]
            assert all(torch.equal(x[t], seq[i][0][:, 0]) for t in range(T))


def test_default_T_and_length():
    ds = get_dataset("mnist1d-static", split="test")
    assert ds.info.T == 4 and ds.info.in_shape == (40,) and len(ds) == 1000


@pytest.mark.parametrize("kw, msg", [
    ({"encoding": "rate"}, "encoding must be 'direct', got 'rate'"),
    ({"encoding": "latency"}, "encoding must be 'direct'"),
    ({"length": 1}, "length must be an int >= 2"),
    ({"length": 40.0}, "length must be an int >= 2"),
    ({"length": True}, "length must be an int >= 2"),
])
def test_bad_options(kw, msg):
    with pytest.raises(ValueError, match=msg):
        get_dataset("mnist1d-static", **kw)


def test_an_mlp_learns_the_static_vectors_far_above_chance():
    """A plain 40-64-10 ReLU MLP (100 full-batch Adam steps) on the 4000 training vectors:
    test accuracy far above the 10 % of chance (about 54 %); with one value per step the
    same information is a memory task."""
    tr, te = get_dataset("mnist1d-static", T=1), get_dataset("mnist1d-static", T=1,
                                                            split="test")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(tr.data), tr.labels).backward()
        opt.step()
    acc = (net(te.data).argmax(1) == te.labels).float().mean().item()
    print(f"40-64-10 ReLU MLP on mnist1d-static: {100 * acc:.1f} % test accuracy")  # docs/data.md
    assert acc > 0.4
