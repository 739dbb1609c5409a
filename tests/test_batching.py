"""Batches: length-bucketed, each row once, padded to the longest in the batch."""

import numpy as np

from textlstm.model.batching import bucketed_batches, collate, sorted_batches


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


def test_a_balanced_sampler_draws_every_class_alike():
    from textlstm.model.batching import balanced_weights

    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    weights = balanced_weights(labels)
    assert abs(weights.sum() - 1) < 1e-12
    lengths = np.random.default_rng(0).integers(1, 50, size=len(labels))
    batches = bucketed_batches(lengths, 16, 10, np.random.default_rng(3), weights)
    drawn = labels[np.concatenate(batches)]
    assert len(drawn) == len(labels)  # an epoch keeps its number of rows
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.all(np.abs(shares - 1 / 3) < 0.05), shares  # 90 %, 9 % and 1 % of the rows
