import itertools

import pytest
import torch

from textlstm.model.classifier import LSTMClassifier, reverse_within_length
from textlstm.recipe import ModelConfig


def make(pooling="max", cell="lstm", bidirectional=True, num_layers=2, **extra):
    torch.manual_seed(0)
    cfg = ModelConfig(
        pooling=pooling,
        cell=cell,
        bidirectional=bidirectional,
        num_layers=num_layers,
        embedding_dim=8,
        hidden_size=6,
        dropout=0.0,
        **extra,
    )
    return LSTMClassifier(cfg, vocab_size=40, num_classes=3)


def test_reverse_within_length_keeps_padding_in_place_and_is_its_own_inverse():
    x = torch.arange(10, dtype=torch.float32).view(2, 5, 1).transpose(0, 1)  # (seq_len, batch, 1)
    lengths = torch.tensor([3, 5])
    flipped = reverse_within_length(x, lengths)
    assert flipped.squeeze(-1).t().tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]
    assert torch.equal(reverse_within_length(flipped, lengths), x)
    ids = x.squeeze(-1).long()  # (seq_len, batch) token ids take the same path
    assert torch.equal(reverse_within_length(ids, lengths), flipped.squeeze(-1).long())


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention", "concat"])
def test_bidirectional_layer_matches_a_plain_per_text_computation(pooling):
    model = make(pooling, num_layers=1).eval()
    tokens = torch.randint(2, 40, (3, 7))
    lengths = torch.tensor([7, 2, 5])
    with torch.no_grad():
        batched = model(tokens, lengths)
        for row, length in enumerate(lengths.tolist()):
            x = model.embedding(tokens[row, :length]).unsqueeze(1)  # (length, 1, features)
            forward_out = model.forward_layers[0](x)[0]
            backward_out = model.backward_layers[0](x.flip(0))[0].flip(0)  # back in text order
            out = torch.cat([forward_out, backward_out], dim=-1).squeeze(1)  # (length, 12)
            if pooling == "max":
                pooled = out.max(dim=0).values
            elif pooling == "mean":
                pooled = out.mean(dim=0)
            elif pooling == "attention":
                weights = model.attention(torch.tanh(out)).squeeze(-1).softmax(dim=0)
                pooled = weights @ out
            elif pooling == "concat":  # per direction: its final state, max and mean
                f, b = forward_out.squeeze(1), backward_out.squeeze(1)
                ends = [f[-1], b[0]]  # the backward direction ends at the first token
                maxes, means = [f.max(dim=0).values, b.max(dim=0).values], [f.mean(0), b.mean(0)]
                pooled = torch.cat([ends[0], maxes[0], means[0], ends[1], maxes[1], means[1]])
            else:
                pooled = torch.cat([forward_out[-1, 0], backward_out[0, 0]])
            assert torch.allclose(model.head(pooled), batched[row], atol=1e-5), (pooling, row)


@pytest.mark.parametrize(
    "pooling, cell, bidirectional",
    list(
        itertools.product(
            ["last", "mean", "max", "attention", "concat"], ["lstm", "gru"], [True, False]
        )
    ),
)
def test_padding_never_changes_the_result(pooling, cell, bidirectional):
    model = make(pooling, cell, bidirectional).eval()
    tokens = torch.randint(2, 40, (3, 9))
    lengths = torch.tensor([4, 9, 1])
    with torch.no_grad():
        batched = model(tokens, lengths)
        noisy = tokens.clone()
        noisy[0, 4:] = torch.randint(2, 40, (5,))  # what sits in padding must not matter
        noisy[2, 1:] = torch.randint(2, 40, (8,))
        assert torch.allclose(model(noisy, lengths), batched, atol=1e-6)
        for row, length in enumerate(lengths.tolist()):  # same as the text alone, unpadded
            alone = model(tokens[row : row + 1, :length], lengths[row : row + 1])
            assert torch.allclose(alone[0], batched[row], atol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention", "concat"])
def test_every_parameter_gets_a_gradient(pooling):
    model = make(pooling, embedding_dropout=0.1)
    tokens = torch.randint(2, 40, (4, 7))
    lengths = torch.tensor([7, 3, 5, 2])
    logits = model(tokens, lengths)
    assert logits.shape == (4, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        if name != "embedding.weight":
            assert parameter.grad.abs().sum() > 0, name


# --- the n-gram branch ----------------------------------------------------------------------


def test_the_ngram_bag_is_the_mean_of_unigram_and_hashed_bigram_rows_of_real_tokens_only():
    from textlstm.model.classifier import NgramBag

    torch.manual_seed(0)
    bag = NgramBag(vocab_size=40, order=2, buckets=1024, dim=4, dropout=0.0).eval()
    tokens = torch.tensor([[5, 7, 9, 0], [3, 0, 0, 0]]).t()  # (seq_len, batch), 0 = padding
    lengths = torch.tensor([3, 1])
    table = bag.embedding.weight
    pair = [40 + (a * NgramBag.PRIME + b) % 1024 for a, b in ((5, 7), (7, 9))]
    expected = torch.stack(
        [
            (table[5] + table[7] + table[9] + table[pair[0]] + table[pair[1]]) / 5,
            table[3],  # one token: no bigram
        ]
    )
    assert torch.allclose(bag(tokens, lengths), expected, atol=1e-6)
    sqrtn = NgramBag(40, 2, 1024, 4, 0.0, combiner="sqrtn").eval()
    sqrtn.embedding.weight.data.copy_(table)
    counts = torch.tensor([[5.0], [1.0]])  # the sum over sqrt(count), not over count
    assert torch.allclose(sqrtn(tokens, lengths), expected * counts / counts.sqrt(), atol=1e-6)
    unigrams = NgramBag(vocab_size=40, order=1, buckets=1024, dim=4, dropout=0.0).eval()
    assert unigrams.embedding.num_embeddings == 40  # no bigram rows when order is 1


@pytest.mark.parametrize(
    ("pooling", "combiner"), [("max", "mean"), ("attention", "mean"), ("max", "sqrtn")]
)
def test_with_ngrams_padding_does_not_matter_and_every_parameter_learns(pooling, combiner):
    model = make(
        pooling,
        ngrams=2,
        ngram_dim=5,
        ngram_buckets=1024,
        ngram_dropout=0.0,
        ngram_combiner=combiner,
    ).eval()
    assert model.head.in_features == 12 + 5
    tokens = torch.randint(2, 40, (3, 9))
    lengths = torch.tensor([4, 9, 1])
    with torch.no_grad():
        batched = model(tokens, lengths)
        noisy = tokens.clone()
        noisy[0, 4:] = torch.randint(2, 40, (5,))
        assert torch.allclose(model(noisy, lengths), batched, atol=1e-6)
    model.train()
    torch.nn.functional.cross_entropy(model(tokens, lengths), torch.tensor([0, 1, 2])).backward()
    assert model.ngram_bag.embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_ngram_settings_without_the_branch_are_a_recipe_error():
    from textlstm.errors import RecipeError
    from textlstm.recipe import recipe_from_dict

    raw = {"name": "r", "data": {"dataset": "d"}, "model": {"ngram_dim": 32}}
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(raw, "r.toml")
    assert info.value.lines == [
        "r.toml: model.ngram_dim: needs model.ngrams = 1 or 2 (the n-gram branch is off)"
    ]
    raw["model"]["ngrams"] = 2
    assert recipe_from_dict(raw, "r.toml").model.ngram_dim == 32


# --- the linear model beside the network (model.wide) -------------------------------------
