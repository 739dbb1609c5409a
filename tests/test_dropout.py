"""The embeddings' dropout: nn.Dropout's masks (each value dropped with probability p, the rest
scaled by 1 / (1 - p)), drawn from NumPy's PCG64 in two halves, the same whether or not the
halves run side by side, and repeated under torch.manual_seed."""

from __future__ import annotations

import pytest
import torch

from textlstm import threads
from textlstm.model.dropout import FastDropout, drop_mask


@pytest.fixture
def policy(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_policy", threads.Policy(2, 2, "--threads"))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_the_mask_drops_p_of_the_values_independently(p):
    torch.manual_seed(0)
    mask = drop_mask((101, 64, 32), p)
    assert mask.dtype == torch.bool and mask.shape == (101, 64, 32)
    assert abs(float(mask.float().mean()) - p) < 0.005  # 206,848 values: 5 sd is ~0.005
    # both halves drop at the rate, and differ (each half has its own seed)
    top, bottom = mask[:51].float(), mask[51:].float()
    assert abs(float(top.mean()) - p) < 0.01 and abs(float(bottom.mean()) - p) < 0.01
    assert not torch.equal(mask[:50], mask[51:101])
    # neighbouring values are independent: their agreement is p^2 + (1-p)^2
    agree = float((mask[:, :, 1:] == mask[:, :, :-1]).float().mean())
    assert abs(agree - (p * p + (1 - p) ** 2)) < 0.01


def test_the_mask_repeats_under_a_seed_side_by_side_or_not(policy):
    torch.manual_seed(7)
    plain = drop_mask((9, 4, 3), 0.3)
    torch.manual_seed(7)
    with threads.two_lanes():
        assert threads.lanes() == (1, 1)
        side = drop_mask((9, 4, 3), 0.3)
    assert torch.equal(plain, side)
    assert not torch.equal(drop_mask((9, 4, 3), 0.3), plain)  # the generator moved on


def test_training_zeroes_and_scales_and_the_gradient_follows_the_mask():
    x = torch.randn(40, 8, 16, requires_grad=True)
    layer = FastDropout(0.25).train()
    torch.manual_seed(3)
    out = layer(x)
    dropped = out == 0
    assert 0.15 < float(dropped.float().mean()) < 0.35
    torch.testing.assert_close(out[~dropped], x[~dropped] / 0.75)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (~dropped).float() / 0.75)
    torch.manual_seed(3)
    assert torch.equal(layer(x), out)  # the same draw again


def test_in_place_it_changes_its_input_and_keeps_the_graph():
    weight = torch.randn(30, 6, requires_grad=True)
    ids = torch.randint(0, 30, (12, 5))
    layer = FastDropout(0.5, inplace=True).train()
    x = torch.nn.functional.embedding(ids, weight)  # (12, 5, 6): no backward reads it
    torch.manual_seed(1)
    out = layer(x)
    assert out.data_ptr() == x.data_ptr()
    out.sum().backward()
    kept = out != 0
    expected = torch.zeros_like(weight).index_add_(
        0, ids.flatten(), (kept.float() / 0.5).reshape(-1, 6)
    )
    torch.testing.assert_close(weight.grad, expected)


def test_outside_training_or_at_zero_it_is_the_identity():
    x = torch.randn(5, 4, 3)
    assert torch.equal(FastDropout(0.4).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
