"""Event-frame augmentation: each op against an index-level reference."""

import math

import pytest
import torch

from membra.data.base import item_generator
from membra.data.transforms import EventAugment


def _frames(seed=0):
    return torch.randint(0, 4, (3, 2, 12, 10), generator=torch.Generator().manual_seed(seed)
                         ).float()


@pytest.mark.parametrize("dx, dy", [(0, 0), (3, -2), (-5, 5), (12, 0)])
def test_shift_matches_index_loop(dx, dy):
    x = _frames()
    out = EventAugment.shift(x, dx, dy)
    ref = torch.zeros_like(x)
    for i in range(12):
        for j in range(10):
            if 0 <= i - dy < 12 and 0 <= j - dx < 10:
                ref[..., i, j] = x[..., i - dy, j - dx]
    assert torch.equal(out, ref)


def test_cut_zeroes_the_clipped_square():
    x = _frames() + 1
    out = EventAugment.cut(x, 1, 8, 5)   # rows -1..3 -> 0..3, cols 6..10 -> 6..9
    mask = torch.zeros(12, 10, dtype=torch.bool)
    mask[0:4, 6:10] = True
    assert torch.all(out[..., mask] == 0) and torch.equal(out[..., ~mask], x[..., ~mask])


def test_affine_identity_and_quarter_turn():
    x = torch.rand(2, 2, 8, 8)
    assert torch.equal(EventAugment.affine(x, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])), x)
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    turned = EventAugment.affine(x, torch.tensor([[c, -s, 0.0], [s, c, 0.0]]))
    # output (i, j) samples input at (x', y') = (-y, x): out[i, j] = x[j, 7 - i]
    assert torch.equal(turned, x.transpose(-1, -2).flip(-2))


def test_augment_seeded_shape_and_counts():
    aug = EventAugment()
    x = _frames()
    a = aug(x, item_generator(0, 5, 0))
    assert torch.equal(a, aug(x, item_generator(0, 5, 0))) and a.shape == x.shape
    outs = {tuple(aug(x, item_generator(0, 5, e)).flatten().tolist()) for e in range(12)}
    assert len(outs) > 3
    for e in range(12):  # nearest resampling and zero fill keep integer counts
        y = aug(x, item_generator(1, 2, e))
        assert torch.equal(y, y.round()) and y.min() >= 0
