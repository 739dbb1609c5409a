"""A linear model beside the network: naive-Bayes-weighted logistic regression over each text's
binarized n-grams (NB-LR, the NBSVM of Wang & Manning 2012 in the form Mesnil et al. 2015 joined
to a recurrent model), on the same token ids the LSTM reads.

Bag-of-n-gram models and LSTMs err on different texts, so their scores add up well; trained
jointly, the bag fits the training set first and leaves the LSTM little to learn. So the linear
part is fitted on its own, convex and to convergence, by scikit-learn before the network trains
(``fit``), its weights are frozen buffers of the classifier, and after training two weights are
fitted on the validation split (``fit_scale``): ``network`` for the network's logits (it tempers
an overconfident network) and ``scale`` for the linear scores (0 leaves the network alone).
Until then ``scale`` is 0, so the network trains, validates and early-stops on its own.

Features: the unigram ids themselves, plus bigrams and trigrams hashed into ``buckets`` rows
after them; each counted once per text. One linear model per class against the rest (one in
all for two classes), each with its own naive Bayes log-count ratio folded into its weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from textlstm.model.batching import iterate, lengths_of, sorted_batches
from textlstm.model.directions import both, lanes_here
from textlstm.model.naive_bayes import nb_ratio
from textlstm.text.vocab import PAD_ID

# inverse L2 strengths tried, the validation split picking one: stronger than the baselines' grid,
# as these weights sit beside the network's logits over n-gram ids (liblinear on counts)
WIDE_C_GRID = (0.05, 0.15, 0.5, 1.5)
SCALES = np.linspace(0.0, 4.0, 81)  # weights for the linear scores that fit_scale tries
NETWORK_SCALES = np.linspace(0.05, 2.0, 40)  # and for the network's logits
PRIME = 1_000_003
CHUNK = 512  # texts per batch when features are extracted for the fit
# n-gram occurrences the fit reads at most (about 33,000 IMDB reviews, 1.5 million SST-2
# sentences): its memory (the sparse matrix and liblinear's copy) and time stay bounded
WIDE_MAX_NGRAMS = 20_000_000


def bag_sum(
    ids: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """The sum of the ``weight`` rows that ``ids`` (batch, n) name, each times ``scale`` (batch,
    n) when given, PAD_ID left out -> (batch, dim). PyTorch's fused ``embedding_bag``; under
    ``torch.export`` (ONNX export), which has no ONNX form of it, the same sum as a gather."""
    if not torch.compiler.is_exporting():
        return nn.functional.embedding_bag(
            ids, weight, mode="sum", per_sample_weights=scale, padding_idx=PAD_ID
        )
    keep = (ids != PAD_ID).to(weight.dtype)  # (batch, n)
    if scale is not None:
        keep = keep * scale
    rows = nn.functional.embedding(ids, weight)  # (batch, n, dim)
    return (rows * keep.unsqueeze(-1)).sum(dim=1)


def ngram_features(
    tokens: torch.Tensor, lengths: torch.Tensor, vocab_size: int, order: int, buckets: int
) -> torch.Tensor:
    """tokens (seq_len, batch), lengths (batch,) -> (batch, features) of feature ids: each
    text's unigram ids and hashed 2..order-grams, every id once, PAD_ID where there is none."""
    parts = ngram_parts(tokens, lengths, vocab_size, order, buckets)
    features, _ = torch.cat(parts, dim=1).sort(dim=1)  # (batch, features)
    repeated = features[:, 1:] == features[:, :-1]  # (batch, features - 1)
    features[:, 1:] = features[:, 1:].masked_fill(repeated, PAD_ID)  # binarized: once each
    return features


def ngram_parts(
    tokens: torch.Tensor, lengths: torch.Tensor, vocab_size: int, order: int, buckets: int
) -> list[torch.Tensor]:
    """Feature ids by order: element n - 1 is (batch, seq_len - n + 1), the n-gram starting at
    each position (PAD_ID where it runs past the text), repeats kept."""
    ids = tokens.t()  # (batch, seq_len)
    steps = ids.shape[1]
    positions = torch.arange(steps, device=ids.device).unsqueeze(0)  # (1, seq_len)
    parts = [ids.masked_fill(positions >= lengths.unsqueeze(1), PAD_ID)]  # (batch, seq_len)
    for n in range(2, order + 1):
        if steps < n:
            break
        width = steps - n + 1
        hashed = ids[:, :width] + n  # n in the hash keeps bigrams and trigrams apart
        for k in range(1, n):
            hashed = (hashed % buckets) * PRIME + ids[:, k : k + width]  # (batch, width)
        real = positions[:, :width] < (lengths - (n - 1)).unsqueeze(1)  # all n tokens real
        parts.append((vocab_size + hashed % buckets).masked_fill(~real, PAD_ID))
    return parts


class WideNgrams(nn.Module):
    """Linear scores (batch, classes) of a text's binarized n-grams, times ``scale``, and the
    weight ``network`` of the network's logits they are added to. All are buffers: fitted by
    ``fit`` and ``fit_scale``, never by the optimizer."""

    def __init__(self, vocab_size: int, order: int, buckets: int, classes: int) -> None:
        super().__init__()
        self.vocab_size, self.order, self.buckets = vocab_size, order, buckets
        rows = vocab_size + (buckets if order > 1 else 0)
        self.weight: torch.Tensor
        self.bias: torch.Tensor
        self.scale: torch.Tensor
        self.network: torch.Tensor
        self.register_buffer("weight", torch.zeros(rows, classes))
        self.register_buffer("bias", torch.zeros(classes))
        self.register_buffer("scale", torch.zeros(()))
        self.register_buffer("network", torch.ones(()))

    def scores(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The linear model's own scores (batch, classes), before ``scale``: where two lanes
        run (inference of a bidirectional model, ``directions``), each half of the batch in
        one, as the network's two directions are."""
        rows = tokens.shape[1]
        if rows < 2 or lanes_here(tokens.device) is None:
            return self._scores(tokens, lengths)
        half = (rows + 1) // 2
        top, bottom = both(
            lambda: self._scores(tokens[:, :half], lengths[:half]),
            lambda: self._scores(tokens[:, half:], lengths[half:]),
            tokens.device,
        )
        return torch.cat([top, bottom])  # (batch, classes)

    def _scores(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        features = ngram_features(tokens, lengths, self.vocab_size, self.order, self.buckets)
        return bag_sum(features, self.weight) + self.bias  # (batch, classes)

    def forward(
        self, logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """The network's logits (batch, classes) joined with the linear scores."""
        return self.network * logits.float() + self.scale * self.scores(tokens, lengths)


@dataclass
class WideFit:
    """What ``fit`` chose and measured."""

    c: float
    features: int  # distinct n-gram rows seen in training
    validation_accuracy: float  # the linear model alone (multi-label: subset accuracy at 0.5)
    seconds: float
    validation_loss: float = 0.0  # multi-label: its binary cross-entropy, which picked C
    rows: int = 0  # training texts fitted on (a sample of a large split)
    of_rows: int = 0  # training texts there were


def sample_rows(ids: Sequence[np.ndarray], order: int, limit: int) -> np.ndarray | None:
    """Rows drawn at random (a fixed seed), in their order, whose n-grams (about ``order`` per
    token) add up to ``limit`` at most; None when all of them fit. The fit's memory and time
    grow with the n-grams it reads: a large split is fitted on such a sample."""
    sizes = lengths_of(ids) * order
    if int(sizes.sum()) <= limit:
        return None
    pick = np.random.default_rng(0).permutation(len(ids))
    kept = int(np.searchsorted(np.cumsum(sizes[pick]), limit, side="right"))
    return np.sort(pick[: max(1, kept)])


def _sampled(
    ids: Sequence[np.ndarray], labels: np.ndarray, order: int, limit: int
) -> tuple[Sequence[np.ndarray], np.ndarray]:
    rows = sample_rows(ids, order, limit)
    if rows is None:
        return ids, labels
    return [ids[int(i)] for i in rows], labels[rows]


def feature_matrix(wide: WideNgrams, ids: Sequence[np.ndarray]) -> Any:
    """A scipy CSR matrix (texts, rows) of 0/1: which feature rows each text has."""
    from scipy import sparse

    counts: list[np.ndarray] = []
    parts: list[np.ndarray] = []  # each chunk's feature rows, text after text (int32)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        lengths = torch.tensor([len(x) for x in chunk])
        tokens = torch.zeros(int(lengths.max()), len(chunk), dtype=torch.int64)
        for column, x in enumerate(chunk):
            tokens[: len(x), column] = torch.from_numpy(np.asarray(x, dtype=np.int64))
        features = ngram_features(tokens, lengths, wide.vocab_size, wide.order, wide.buckets)
        kept = features != PAD_ID
        counts.append(kept.sum(dim=1).numpy())
        parts.append(features[kept].numpy().astype(np.int32))
    pointers = np.concatenate([[0], np.cumsum(np.concatenate(counts))]) if counts else [0]
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    shape = (len(ids), wide.weight.shape[0])
    return sparse.csr_matrix((np.ones(len(flat), np.float32), flat, pointers), shape=shape)


def _fit_one(x: Any, positive: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Weights per feature row (the NB ratio folded in) and the intercept of one class."""
    from sklearn.linear_model import LogisticRegression

    if positive.all() or not positive.any():  # a class without training rows, or the only one
        return np.zeros(x.shape[1], dtype=np.float32), 0.0  # its score is the network's alone
    ratio = nb_ratio(x, positive)
    scaled = x.multiply(ratio).tocsr()
    model = LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(scaled, positive)
    return model.coef_.ravel() * ratio, float(model.intercept_[0])


def _weights(x: Any, labels: np.ndarray, classes: int, c: float) -> tuple[np.ndarray, ...]:
    """(rows, classes) weights and (classes,) biases for one C; multi-label ``labels`` (texts,
    classes) get one model per label, whose scores are that label's logits."""
    weight = np.zeros((x.shape[1], classes), dtype=np.float32)
    bias = np.zeros(classes, dtype=np.float32)
    if labels.ndim == 1 and classes == 2:  # one model: its margin split between the two classes
        w, b = _fit_one(x, labels == 1, c)
        weight[:, 0], weight[:, 1], bias[0], bias[1] = -w / 2, w / 2, -b / 2, b / 2
        return weight, bias
    for k in range(classes):
        positive = labels[:, k] > 0 if labels.ndim == 2 else labels == k
        weight[:, k], bias[k] = _fit_one(x, positive, c)
    return weight, bias


def fit(
    wide: WideNgrams,
    train_ids: Sequence[np.ndarray],
    train_labels: np.ndarray,
    val_ids: Sequence[np.ndarray],
    val_labels: np.ndarray,
) -> WideFit:
    """Fit the linear model on the training texts; the validation texts pick C from WIDE_C_GRID
    (by accuracy; for multi-label labels (texts, classes), by binary cross-entropy)."""
    start = time.perf_counter()
    classes = wide.weight.shape[1]
    total = len(train_ids)
    train_ids, train_labels = _sampled(
        train_ids, np.asarray(train_labels), wide.order, WIDE_MAX_NGRAMS
    )
    val_ids, val_labels = _sampled(
        val_ids, np.asarray(val_labels), wide.order, WIDE_MAX_NGRAMS // 4
    )
    train, val = feature_matrix(wide, train_ids), feature_matrix(wide, val_ids)
    best: tuple[float, float, tuple[np.ndarray, ...]] | None = None
    multi = np.ndim(val_labels) == 2
    for c in WIDE_C_GRID:
        weight, bias = _weights(train, np.asarray(train_labels), classes, c)
        scores = np.asarray(val @ weight + bias)
        if multi:
            target = torch.from_numpy(np.asarray(val_labels, dtype=np.float64))
            value = -nn.functional.binary_cross_entropy_with_logits(
                torch.from_numpy(scores).double(), target
            ).item()
        else:
            value = float((scores.argmax(1) == val_labels).mean())
        if best is None or value > best[0]:
            best = (value, c, (weight, bias))
    assert best is not None
    value, c, (weight, bias) = best
    scores = np.asarray(val @ weight + bias)
    accuracy = (
        float(((scores > 0) == (np.asarray(val_labels) > 0)).all(axis=1).mean()) if multi else value
    )
    with torch.no_grad():
        wide.weight.copy_(torch.from_numpy(weight))
        wide.bias.copy_(torch.from_numpy(bias))
        wide.scale.zero_()
        wide.network.fill_(1.0)
    seen = int((np.asarray(train.sum(axis=0)).ravel() > 0).sum())
    seconds = time.perf_counter() - start
    return WideFit(c, seen, accuracy, seconds, -value if multi else 0.0, len(train_ids), total)


def fit_scale(network: np.ndarray, linear: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(network weight, linear weight): the pair from NETWORK_SCALES x SCALES that gives the
    lowest validation loss of softmax(network weight * network + linear weight * linear) (for
    multi-label labels (rows, classes), of a sigmoid per label). The network's weight tempers an
    overconfident network; (1, 0) leaves it alone."""
    multi = np.ndim(labels) == 2
    target = torch.from_numpy(np.asarray(labels, dtype=np.float64 if multi else np.int64))
    a, b = torch.from_numpy(network).double(), torch.from_numpy(linear).double()

    def loss(joined: torch.Tensor) -> torch.Tensor:
        """Each row's loss (rows,) of joined scores (rows, classes)."""
        if multi:
            return nn.functional.binary_cross_entropy_with_logits(
                joined, target, reduction="none"
            ).mean(dim=1)
        return nn.functional.cross_entropy(joined, target, reduction="none")

    best = (loss(a).mean().item(), 1.0, 0.0)
    for weight in NETWORK_SCALES:
        losses = torch.stack([loss(weight * a + float(s) * b).mean() for s in SCALES])
        i = int(losses.argmin())
        if losses[i].item() < best[0] - 1e-9:
            best = (losses[i].item(), float(weight), float(SCALES[i]))
    return best[1], best[2]


def linear_scores(
    wide: WideNgrams, ids: Sequence[np.ndarray], batch_size: int, device: torch.device
) -> np.ndarray:
    """The linear model's own scores (rows, classes) in input order: cheap beside the network."""
    out = np.zeros((len(ids), wide.weight.shape[1]), dtype=np.float32)
    with torch.inference_mode():
        for rows, tokens, lengths in iterate(ids, sorted_batches(lengths_of(ids), batch_size)):
            scores = wide.scores(tokens.t().to(device), lengths.to(device))  # (batch, classes)
            out[rows] = scores.float().cpu().numpy()
    return out


def network_alone(wide: WideNgrams) -> tuple[float, float]:
    """Turn the linear scores off (the network's logits as they are); returns the weights to put
    back with ``wide.network.fill_``, ``wide.scale.fill_``."""
    weights = float(wide.network), float(wide.scale)
    wide.network.fill_(1.0)
    wide.scale.fill_(0.0)
    return weights
