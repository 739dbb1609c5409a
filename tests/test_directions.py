"""The two directions of a bidirectional layer side by side, each on its own thread (inside
``threads.two_lanes``): the same logits and gradients as one after the other, on the threads the
policy gives each lane."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from textlstm import threads
from textlstm.model.classifier import LSTMClassifier, logits_for
from textlstm.recipe import ModelConfig
from textlstm.runtime import bf16_support


@pytest.fixture
def policy(monkeypatch):
    """A policy of two threads, as `--threads 2` sets it; torch's count is put back after."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_policy", threads.Policy(2, 2, "--threads"))
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def make(cell="lstm", num_layers=2, **extra):
    torch.manual_seed(0)
    cfg = ModelConfig(
        cell=cell, num_layers=num_layers, embedding_dim=8, hidden_size=6, dropout=0.0, **extra
    )
    return LSTMClassifier(cfg, vocab_size=40, num_classes=3)


def batch():
    torch.manual_seed(1)
    return torch.randint(2, 40, (4, 9)), torch.tensor([9, 3, 6, 1])


def logits_and_grads(model, tokens, lengths, precision="fp32", lanes=True):
    model.zero_grad()
    with (
        threads.two_lanes(lanes),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"),
    ):
        logits = model(tokens, lengths)
    (logits.float() * torch.arange(1.0, 4.0)).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach().float(), grads


def threads_seen(model):
    """Which threads ran each direction of the first layer, forward and backward, and on how
    many torch threads each forward ran."""
    seen: dict[str, set] = {}

    def note(name):
        def hook(*_):
            seen.setdefault(name, set()).add(threading.get_ident())
            seen.setdefault(name + " count", set()).add(torch.get_num_threads())

        return hook

    for name, layer in (
        ("forward", model.forward_layers[0]),
        ("backward", model.backward_layers[0]),
    ):
        layer.register_forward_pre_hook(note(name))
        for p in layer.parameters():
            p.register_hook(lambda grad, name=name: note(name + " grad")() or grad)
    return seen


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("pooling", ["concat", "attention"])
def test_side_by_side_gives_the_logits_and_gradients_of_one_after_the_other(
    policy, cell, precision, pooling
):
    if precision == "bf16" and bf16_support(torch.device("cpu")) == "none":
        pytest.skip("this CPU has no bfloat16 LSTM/GRU kernels (AVX2 only); runs train in fp32")
    tokens, lengths = batch()
    model = make(cell, pooling=pooling).train()
    side = logits_and_grads(model, tokens, lengths, precision)
    plain = logits_and_grads(model, tokens, lengths, precision, lanes=False)
    # one thread per direction sums in another order than two: bf16 rounds that apart
    close = {"rtol": 1e-5, "atol": 1e-6} if precision == "fp32" else {"rtol": 2e-2, "atol": 4e-3}
    torch.testing.assert_close(side[0], plain[0], **close)
    assert side[1].keys() == plain[1].keys()
    assert any(name.startswith("backward_layers.1") for name in side[1])
    assert "embedding.weight" in side[1]  # the gradient reaches the input through both lanes
    for name in plain[1]:
        torch.testing.assert_close(side[1][name], plain[1][name], **close)


def test_each_lane_runs_on_half_the_threads_and_the_count_comes_back(policy):
    model = make(num_layers=1)
    seen = threads_seen(model)
    logits_and_grads(model, *batch())
    here = threading.get_ident()
    assert seen["backward"] == {here}  # the longer lane, with the reversal, runs here
    (worker,) = seen["forward"]
    assert worker != here
    assert worker in seen["forward grad"]  # its gradients too are taken in the worker
    assert worker not in seen["backward grad"]
    assert seen["forward count"] == seen["backward count"] == {1}
    assert torch.get_num_threads() == 2  # outside two_lanes this thread has the whole count


def test_outside_two_lanes_or_on_one_thread_the_directions_run_one_after_the_other(
    policy, monkeypatch
):
    model = make(num_layers=1)
    seen = threads_seen(model)
    logits_and_grads(model, *batch(), lanes=False)
    assert seen["forward"] == seen["backward"] == {threading.get_ident()}
    monkeypatch.setattr(threads, "_policy", threads.Policy(2, 1, "--threads"))
    with threads.two_lanes():
        assert threads.lanes() is None  # the user's one thread is kept
    seen.clear()
    logits_and_grads(model, *batch())
    assert seen["forward"] == seen["backward"] == {threading.get_ident()}


def test_two_lanes_halves_this_threads_count_nests_and_gives_it_back(policy):
    with threads.two_lanes():
        assert torch.get_num_threads() == 1 and threads.lanes() == (1, 1)
        with threads.two_lanes():
            assert threads.lanes() == (1, 1)
        assert torch.get_num_threads() == 1  # still inside the outer block
        threads._apply(2)  # what follow() does when the load changes
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2 and threads.lanes() is None
    with threads.two_lanes(False):
        assert torch.get_num_threads() == 2 and threads.lanes() is None


def test_lanes_from_the_policys_count(policy, monkeypatch):
    def split(cores, count, chosen_by):
        monkeypatch.setattr(threads, "_policy", threads.Policy(cores, count, chosen_by))
        with threads.two_lanes():
            return threads.lanes()

    assert split(2, 2, "load") == (1, 1)
    assert split(8, 5, "--threads") == (3, 2)
    # beside other work the load chose one thread: two lanes of one share no barrier
    assert split(2, 1, "load") == (1, 1)
    assert split(1, 1, "load") is None
    assert split(2, 1, "TEXTLSTM_THREADS") is None
    assert split(2, 1, "torchrun") is None  # each process keeps its launcher's share
    monkeypatch.setattr(threads, "_policy", None)
    with threads.two_lanes():
        assert threads.lanes() is None  # no policy: a library caller's own threads


def test_another_thread_is_not_in_this_threads_lanes(policy):
    found = []
    with threads.two_lanes():
        other = threading.Thread(target=lambda: found.append(threads.lanes()))
        other.start()
        other.join()
        assert threads.lanes() == (1, 1)
    assert found == [None]


def test_inference_side_by_side_gives_the_same_logits(policy):
    model = make().eval()
    ids = [np.array(row[:n]) for row, n in zip(batch()[0].tolist(), [9, 3, 6, 1])]
    side = logits_for(model, ids, 2, torch.device("cpu"))
    threads._policy.threads = 1  # one thread: one direction after the other
    plain = logits_for(model, ids, 2, torch.device("cpu"))
    np.testing.assert_allclose(side, plain, rtol=1e-5, atol=1e-6)


def test_a_second_backward_through_the_same_step(policy):
    """Adversarial training takes the gradient of the embeddings' perturbation first, then
    back-propagates the same graph again."""

    def twice(model, lanes):
        tokens, lengths = batch()
        probe = torch.zeros(tokens.shape[1], tokens.shape[0], 8, requires_grad=True)
        with threads.two_lanes(lanes):
            loss = model(tokens, lengths, probe).sum()
        (grad,) = torch.autograd.grad(loss, probe, retain_graph=True)
        model.zero_grad()
        (loss + (grad * grad).sum().detach()).backward()
        return grad, model.forward_layers[0].weight_hh_l0.grad.clone()

    side = twice(make(), True)
    plain = twice(make(), False)
    torch.testing.assert_close(side[0], plain[0])
    torch.testing.assert_close(side[1], plain[1])


def test_a_frozen_direction_gets_no_gradient(policy):
    model = make(num_layers=1)
    for p in model.forward_layers[0].parameters():
        p.requires_grad_(False)
    _, grads = logits_and_grads(model, *batch())
    assert not any(name.startswith("forward_layers") for name in grads)
    assert "backward_layers.0.weight_hh_l0" in grads and "embedding.weight" in grads


def test_an_error_in_the_worker_reaches_the_caller(policy):
    model = make(num_layers=1)
    model.forward_layers[0].register_forward_pre_hook(
        lambda *_: (_ for _ in ()).throw(RuntimeError("from the forward direction"))
    )
    with pytest.raises(RuntimeError, match="from the forward direction"), threads.two_lanes():
        model(*batch())
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("pooling", ["max", "attention"])
def test_two_stacks_from_a_language_model_side_by_side(policy, pooling):
    """A classifier on a pretrained encoder reads each direction through a stack of its own."""
    model = make(num_layers=2, pooling=pooling)
    model.separate = True  # as model.encoder sets it (the upper layers then read hidden_size)
    model.forward_layers[1] = torch.nn.LSTM(6, 6)
    model.backward_layers[1] = torch.nn.LSTM(6, 6)
    tokens, lengths = batch()
    side = logits_and_grads(model, tokens, lengths)
    plain = logits_and_grads(model, tokens, lengths, lanes=False)
    torch.testing.assert_close(side[0], plain[0])
    for name in plain[1]:
        torch.testing.assert_close(side[1][name], plain[1][name])


def test_the_linear_model_beside_the_network_scores_each_half_of_the_batch_in_a_lane(policy):
    model = make(num_layers=1, wide="nblr", wide_buckets=1024).eval()
    torch.manual_seed(2)
    model.wide.weight.normal_()
    model.wide.scale.fill_(0.7)
    ids = [np.array(row[:n]) for row, n in zip(batch()[0].tolist(), [9, 3, 6, 1])]
    seen = []
    model.wide.register_forward_pre_hook(lambda *_: seen.append(threads.lanes()))
    side = logits_for(model, ids, 4, torch.device("cpu"))
    threads._policy.threads = 1  # one thread: the whole batch in this thread
    plain = logits_for(model, ids, 4, torch.device("cpu"))
    np.testing.assert_allclose(side, plain, rtol=1e-5, atol=1e-6)
    assert seen == [(1, 1), None]  # in lanes, then one thread: not
    tokens = torch.from_numpy(np.stack([np.pad(i, (0, 9 - len(i))) for i in ids])).t()
    lengths = torch.tensor([len(i) for i in ids])
    threads._policy.threads = 2
    with threads.two_lanes():
        halves = model.wide.scores(tokens, lengths)
    torch.testing.assert_close(halves, model.wide.scores(tokens, lengths))


def test_the_embedding_dropout_in_the_lanes_drops_what_it_drops_before_them(policy):
    """With embedding dropout, each lane looks its embeddings up and applies the one mask drawn
    before the lanes (the backward lane reversed): the values of dropping the embeddings first
    and reversing them after."""
    model = make(num_layers=2, embedding_dropout=0.3).train()
    tokens, lengths = batch()
    torch.manual_seed(5)
    side = logits_and_grads(model, tokens, lengths)
    model.reembed = False  # as explanations set it: the embeddings dropped before the lanes
    torch.manual_seed(5)
    plain = logits_and_grads(model, tokens, lengths, lanes=False)
    torch.testing.assert_close(side[0], plain[0])
    for name in plain[1]:
        torch.testing.assert_close(side[1][name], plain[1][name])
    torch.manual_seed(6)
    assert not torch.equal(logits_and_grads(model, tokens, lengths)[0], side[0])  # other masks
