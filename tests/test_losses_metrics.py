import math

import pytest
import torch
import torch.nn.functional as F

import membra
from membra.losses import get_loss, ls_tet, lts_ce, mean_ce, tet
from membra.metrics import firing_rate_stats, per_step_accuracy, readout_accuracy


def data(T=4, B=6, K=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, K, generator=g, dtype=torch.float64), \
        torch.randint(0, K, (B,), generator=g)


def test_loss_values_hand_computed():
    O = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])  # T=2, B=1, K=2
    y = torch.tensor([0])
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce1 = math.log(2)
    assert tet(O, y).item() == pytest.approx((ce0 + ce1) / 2)
    assert lts_ce(O, y).item() == pytest.approx(ce1)
    assert mean_ce(O, y).item() == pytest.approx(-math.log(math.e / (math.e + 1)))
    q = torch.tensor([0.9 + 0.05, 0.05])
    want = sum(-(q * F.log_softmax(O[t, 0], -1)).sum().item() for t in range(2)) / 2
    assert ls_tet(O, y, eps=0.1).item() == pytest.approx(want)
    lam, phi = 0.05, 1.0
    mse = ((O - phi) ** 2).mean().item()
    assert tet(O, y, lam=lam, phi=phi).item() == pytest.approx((1 - lam) * (ce0 + ce1) / 2
                                                               + lam * mse)


@pytest.mark.parametrize("soft", [False, True])
def test_loss_identities(soft):
    O, y = data()
    if soft:
        y = torch.softmax(torch.randn(6, 5, dtype=torch.float64), -1)
    torch.testing.assert_close(ls_tet(O, y, eps=0.0), tet(O, y, lam=0.0))
    per_step = torch.stack([F.cross_entropy(O[t], y) for t in range(O.shape[0])]).mean()
    torch.testing.assert_close(tet(O, y), per_step)
    torch.testing.assert_close(lts_ce(O, y), tet(O[-1:], y))
    torch.testing.assert_close(mean_ce(O, y), F.cross_entropy(O.mean(0), y))
    O1 = O[:1]
    vals = [mean_ce(O1, y), lts_ce(O1, y), tet(O1, y), ls_tet(O1, y, eps=0.0)]
    for v in vals[1:]:
        torch.testing.assert_close(v, vals[0])


def test_lts_gradient_only_last_step():
    O, y = data()
    O.requires_grad_()
    lts_ce(O, y).backward()
    assert torch.all(O.grad[:-1] == 0) and O.grad[-1].abs().sum() > 0


def test_label_smoothing_costs_on_confident_correct_logits():
    y = torch.tensor([0, 1, 2])
    O = (10 * F.one_hot(y, 4).double()).unsqueeze(0).expand(3, 3, 4)
    assert ls_tet(O, y, eps=0.01) > tet(O, y) + 1e-3


def test_loss_errors():
    O, y = data()
    with pytest.raises(ValueError, match=r"\[T, B, K\]"):
        tet(O[0], y)
    with pytest.raises(ValueError, match="labels for batch"):
        mean_ce(O, y[:3])
    with pytest.raises(ValueError, match="class indices"):
        mean_ce(O, torch.full((6,), 7))
    with pytest.raises(ValueError, match="eps"):
        ls_tet(O, y, eps=1.5)
    with pytest.raises(ValueError, match="loss='focal'"):
        get_loss("focal")
    with pytest.raises(TypeError, match="integer"):
        tet(O, y.double())


LOSS_FNS = [mean_ce, lts_ce, tet, ls_tet]
INT_DTYPES = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8]


def _bad_label_cases(n=40, seed=0):
    """Seeded (K, labels, lo, hi): labels of every integer dtype, odd batch sizes, one or more
    labels just outside [0, K) (-1, K) or far outside; ``lo``/``hi`` are their true range."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda n: int(torch.randint(n, (1,), generator=g))  # noqa: E731
    for i in range(n):
        K, B = (1, 2, 3, 7, 10, 100)[pick(6)], 1 + pick(13)
        dtype = INT_DTYPES[i % len(INT_DTYPES)]
        y = torch.randint(0, K, (B,), generator=g)
        lows = [] if dtype == torch.uint8 else [-1, -K, torch.iinfo(dtype).min]
        highs = [K, K + 1, min(2 * K + 3, torch.iinfo(dtype).max)]
        for j in torch.randperm(B, generator=g)[:1 + pick(B)]:
            vals = lows + highs
            y[j] = vals[pick(len(vals))]
        bad = (y < 0) | (y >= K)
        if not bool(bad.any()):
            y[0] = K
        if torch.iinfo(dtype).max < K:  # a label of this dtype cannot reach K
            continue
        yield K, y.to(dtype), int(y.min()), int(y.max())


@pytest.mark.parametrize("fn", LOSS_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("K,y,lo,hi", list(_bad_label_cases()))
def test_bad_labels_name_the_range(fn, K, y, lo, hi):
    O = torch.randn(3, len(y), K)
    with pytest.raises(ValueError, match=rf"^{fn.__name__}: class indices must lie in "
                                         rf"\[0, {K}\), got range \[{lo}, {hi}\]$"):
        fn(O, y)


@pytest.mark.parametrize("fn", LOSS_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
def test_labels_of_any_integer_dtype_give_the_int64_loss(fn, dtype):
    """Labels 0 and K-1 included (the edges of the range); K = 7, B = 5."""
    O, _ = data(T=3, B=5, K=7, seed=3)
    y = torch.tensor([0, 6, 3, 6, 0])
    assert torch.equal(fn(O, y.to(dtype)), fn(O, y))


@pytest.mark.parametrize("fn", LOSS_FNS, ids=lambda f: f.__name__)
def test_label_check_reads_the_device_once(fn, monkeypatch):
    """Each host read of a tensor (``bool``, ``item``) is a device sync on an accelerator;
    the label check of a valid call makes at most one (a single fused test)."""
    O, y = data(T=3, B=9, K=7, seed=1)
    reads = []
    for attr in ("__bool__", "item"):
        orig = getattr(torch.Tensor, attr)

        def counted(self, *a, _orig=orig, _attr=attr, **k):
            reads.append(_attr)
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, attr, counted)
    fn(O, y)
    assert len(reads) <= 1, reads


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fn", LOSS_FNS, ids=lambda f: f.__name__)
def test_cuda_loss_call_does_not_sync(fn):
    O, y = data(T=3, B=9, K=7, seed=1)
    O, y = O.cuda(), y.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn(O, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_readouts():
    O, _ = data()
    torch.testing.assert_close(membra.readout(O, "mean"), O.mean(0))
    assert torch.equal(membra.readout(O, "last"), O[-1])
    assert membra.readout(O, "per_step") is O
    assert torch.equal(membra.nn.Readout("last")(O), O[-1])
    with pytest.raises(ValueError, match="'mean', 'last', 'per_step'"):
        membra.readout(O, "max")


def test_per_step_accuracy_hand_made():
    # T=3, B=4, K=2: step 1 gets 1/4 right, step 2 all, step 3 half
    y = torch.tensor([0, 1, 0, 1])
    right = F.one_hot(y, 2).float()
    wrong = 1 - right
    O = torch.stack([
        torch.stack([right[0], wrong[1], wrong[2], wrong[3]]),
        right,
        torch.stack([right[0], right[1], wrong[2], wrong[3]]),
    ])
    assert per_step_accuracy(O, y).tolist() == [0.25, 1.0, 0.5]
    cum = per_step_accuracy(O, y, cumulative=True)
    want = [readout_accuracy(O[: t + 1], y, "mean") for t in range(3)]
    assert cum.tolist() == pytest.approx(want)
    assert readout_accuracy(O, y, "last") == 0.5
    assert per_step_accuracy(O, y, topk=2).tolist() == [1.0, 1.0, 1.0]


def test_firing_rate_stats():
    s = torch.zeros(4, 2, 3)
    s[:, :, 0] = 1
    s[:2, :, 1] = 1
    st = firing_rate_stats(s)
    assert st["rate"] == pytest.approx(0.5)
    assert st["silent"] == pytest.approx(1 / 3) and st["saturated"] == pytest.approx(1 / 3)
    assert st["spikes"] == 12.0
    assert st["rate_cv"] == pytest.approx(torch.tensor([1.0, 0.5, 0.0]).std(unbiased=False)
                                          .item() / 0.5)
