"""The linear model beside the network (``model.wide``): its features, its NB-LR fit, how its
scores join the logits, and the naive-Bayes ratio it shares with the NBSVM baseline."""

import numpy as np
import torch
from test_model import make


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


def test_the_naive_bayes_ratio_is_the_smoothed_log_ratio_of_each_features_shares():
    from scipy import sparse

    from textlstm.model.naive_bayes import nb_ratio

    counts = sparse.csr_matrix(np.array([[2, 0, 1], [1, 0, 0], [0, 3, 1]]))
    positive = np.array([True, True, False])
    p, q = np.array([3, 0, 1]) + 1.0, np.array([0, 3, 1]) + 1.0  # column sums, plus one
    expected = np.log((p / p.sum()) / (q / q.sum()))
    np.testing.assert_allclose(nb_ratio(counts, positive), expected)
    np.testing.assert_allclose(nb_ratio(counts.toarray(), positive), expected)
