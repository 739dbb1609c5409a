import itertools

import numpy as np
import pytest
import torch

from textlstm.model.batching import bucketed_batches, collate, sorted_batches
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


def test_bucketed_batches_cover_each_row_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    batches = bucketed_batches(lengths, batch_size=16, bucket_size=10, rng=np.random.default_rng(1))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 40  # ~200 / 10 batches per bucket; random batches spread over ~180
    again = bucketed_batches(lengths, 16, 10, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other = bucketed_batches(lengths, 16, 10, np.random.default_rng(2))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_sorted_batches_and_collate():
    ids = [np.array([5, 6]), np.array([7]), np.array([8, 9, 10])]
    batches = sorted_batches(np.array([2, 1, 3]), batch_size=2)
    assert [b.tolist() for b in batches] == [[2, 0], [1]]
    tokens, lengths = collate(ids, batches[0])
    assert tokens.tolist() == [[8, 9, 10], [5, 6, 0]] and lengths.tolist() == [3, 2]


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


def test_wide_features_are_each_texts_unigrams_and_hashed_ngrams_once_without_padding():
    from textlstm.model.wide import PRIME, ngram_features

    tokens = torch.tensor([[5, 7, 5, 7, 0], [3, 4, 0, 0, 0]]).t()  # (seq_len, batch), 0 = padding
    lengths = torch.tensor([4, 2])
    got = ngram_features(tokens, lengths, vocab_size=40, order=3, buckets=1024)

    def gram(*ids):  # the hash written out for one n-gram
        h = ids[0] + len(ids)
        for i in ids[1:]:
            h = (h % 1024) * PRIME + i
        return 40 + h % 1024

    first = {5, 7, gram(5, 7), gram(7, 5), gram(5, 7, 5), gram(7, 5, 7)}  # (5, 7) counted once
    second = {3, 4, gram(3, 4)}  # two tokens: no trigram
    for row, expected in zip(got, (first, second)):
        kept = row[row != 0].tolist()
        assert sorted(kept) == sorted(expected) and len(kept) == len(set(kept))
    noisy = tokens.clone()
    noisy[4, 0], noisy[2:, 1] = 9, 11  # padding positions filled with other ids
    assert torch.equal(ngram_features(noisy, lengths, 40, 3, 1024), got)


def test_wide_scores_join_the_logits_only_outside_training_and_have_no_gradient():
    model = make("max", wide="nblr", wide_ngrams=2, wide_buckets=1024)
    assert model.wide is not None and not list(model.wide.parameters())
    tokens, lengths = torch.randint(2, 40, (3, 6)), torch.tensor([6, 3, 1])
    with torch.no_grad():
        model.wide.weight.normal_()
        network = model.eval()(tokens, lengths)  # scale 0: the network alone
        model.wide.scale.fill_(0.5)
        model.wide.network.fill_(0.8)
        joined = model(tokens, lengths)
        linear = model.wide.scores(tokens.t(), lengths)
    assert torch.allclose(joined, 0.8 * network + 0.5 * linear, atol=1e-5)
    model.train()
    torch.nn.functional.cross_entropy(model(tokens, lengths), torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_the_linear_model_fits_nb_lr_and_its_scale_follows_the_validation_loss():
    from sklearn.linear_model import LogisticRegression

    from textlstm.model.naive_bayes import nb_ratio
    from textlstm.model.wide import WideNgrams, feature_matrix, fit, fit_scale

    rng = np.random.default_rng(0)
    ids = [rng.integers(2, 12, rng.integers(3, 9)) for _ in range(60)]
    labels = np.array([int((x == 2).any()) for x in ids])  # class 1: the text has token 2
    wide = WideNgrams(vocab_size=12, order=2, buckets=1024, classes=2)
    done = fit(wide, ids, labels, ids[:20], labels[:20])
    x = feature_matrix(wide, ids)
    ratio = nb_ratio(x, labels == 1)
    reference = LogisticRegression(C=done.c, solver="liblinear").fit(x.multiply(ratio), labels)
    margin = reference.decision_function(x.multiply(ratio).tocsr())
    lengths = torch.tensor([len(t) for t in ids])
    tokens = torch.zeros(int(lengths.max()), len(ids), dtype=torch.int64)
    for i, t in enumerate(ids):
        tokens[: len(t), i] = torch.from_numpy(t)
    scores = wide.scores(tokens, lengths)
    assert np.allclose((scores[:, 1] - scores[:, 0]).numpy(), margin, atol=1e-4)
    assert done.validation_accuracy == 1.0 and float(wide.scale) == 0.0
    network = np.zeros((60, 2), dtype=np.float32)  # a network that knows nothing
    assert fit_scale(network, scores.numpy(), labels)[1] > 0
    confident = np.stack([-(2 * labels - 1) * 20.0, (2 * labels - 1) * 20.0], 1)
    confident[:10] *= -1  # sure of itself, and wrong on 10 texts of 60: tempered
    assert fit_scale(confident, -scores.numpy(), labels)[0] < 1.0
    # linear scores that only hurt stay out
    assert fit_scale(confident, -scores.numpy(), labels)[1] == 0.0


def test_the_linear_model_leaves_a_class_without_training_rows_to_the_network():
    from textlstm.model.wide import WideNgrams, fit

    rng = np.random.default_rng(1)
    ids = [rng.integers(2, 12, 6) for _ in range(30)]
    labels = np.array([int((x == 2).any()) for x in ids])  # class 2 never occurs
    wide = WideNgrams(vocab_size=12, order=2, buckets=1024, classes=3)
    fit(wide, ids, labels, ids[:10], labels[:10])
    assert wide.weight[:, 2].abs().sum() == 0 and float(wide.bias[2]) == 0.0
    assert wide.weight[:, :2].abs().sum() > 0
