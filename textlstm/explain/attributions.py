"""Which tokens drove a decision: integrated gradients (Sundararajan et al. 2017) on the
embeddings, through Captum, and the attention weights of a model that pools with attention.

The attributions are taken at the output of the embedding layer, the one tensor every recurrent
layer reads: each token's embedding moves in a straight line from the baseline (the padding
token's embedding, at every position) to its own, and the gradients of the explained label's
logit along that path, times the distance moved, summed over the features, are the token's
score. By the completeness property the scores add up to ``logit - baseline_logit``: the logit
of the text minus that of the baseline, each computed here. ``delta`` is what they miss by,
from the integral's discretisation; it shrinks as ``steps`` grows.

A model with an n-gram bag (``model.ngrams``) or a linear model beside it (``model.wide``) reads
n-grams of the token ids too. Both are linear in their n-grams up to the logit (the head is
linear, the bag is a mean or scaled sum of rows, the linear model a sum of weights), so each
n-gram's exact share of the logit is computed and split evenly between its tokens (an n-gram met
k times in a text, which the binarized linear model counts once, splits its weight k ways). The
baseline has no n-grams: an empty bag and the linear model's bias alone. So the scores of every
part together add up to the logit's distance from the baseline, and ``parts`` says how much
each part gave.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm.errors import TextLSTMError
from textlstm.run.checkpoint import Loaded
from textlstm.text.vocab import PAD_ID

DEFAULT_STEPS = 64  # Gauss-Legendre points along the path: |delta| < 1 % of the logit gap here
MAX_STEPS = 1024


@dataclass
class Explanation:
    text: str
    tokens: list[str]  # as the model read them, after tokenizing and truncating
    scores: list[float]  # one per token: its share of logit - baseline_logit
    label: str  # the label explained
    probability: float  # the model's probability of that label
    predicted: str  # the likeliest label
    logit: float  # the explained label's logit for the text
    baseline_logit: float  # and for the baseline (padding embeddings at every position)
    delta: float  # sum(scores) - (logit - baseline_logit): the completeness error
    attention: list[float] | None = None  # attention pooling's weights per token, if it has one
    parts: dict[str, float] = field(default_factory=dict)  # each part's sum of scores

    def strongest(self, count: int = 10) -> list[tuple[str, float]]:
        """The ``count`` tokens with the largest |score|, largest first."""
        order = np.argsort(-np.abs(np.asarray(self.scores)), kind="stable")[:count]
        return [(self.tokens[i], self.scores[i]) for i in order]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Explainer:
    """``Explainer.load(run_dir).explain(["a text", ...])`` -> list of Explanation. Runs in fp32
    (gradients in bf16 are too coarse to add up) on the CPU unless told otherwise."""

    def __init__(self, loaded: Loaded, device: torch.device, steps: int = DEFAULT_STEPS) -> None:
        if not 1 <= steps <= MAX_STEPS:
            raise TextLSTMError(f"steps {steps}: give 1 to {MAX_STEPS} integration steps")
        self.loaded = loaded
        self.device = device
        self.steps = steps
        self.labels: list[str] = loaded.labels
        model = loaded.model.float().eval()
        model.reembed = False  # both directions read the one embedding output
        self.model = model

    @classmethod
    def load(
        cls, run_dir: str | Path, device: str = "cpu", steps: int = DEFAULT_STEPS
    ) -> Explainer:
        from textlstm.run.checkpoint import load
        from textlstm.runtime import pick_device

        target = pick_device(device)
        return cls(load(run_dir, target), target, steps)

    def explain(self, texts: Sequence[str], label: str | None = None) -> list[Explanation]:
        """Each text explained for ``label`` (a label name), else for its predicted label; for
        a multi-label run, for each label it is given (highest score first; the top label when
        no score reaches its threshold), an explanation each."""
        if label is not None and label not in self.labels:
            raise TextLSTMError(
                f"label '{label}': the model's labels are {', '.join(self.labels)}; "
                "give one of them"
            )
        encoder = self.loaded.encoder
        ids = encoder.encode(list(texts))
        words = encoder.tokens(list(texts))
        if label is None and self.loaded.decision.multi_label:
            return [e for t, i, w in zip(texts, ids, words) for e in self._each_given(t, i, w)]
        return [self._one(t, i, w, label) for t, i, w in zip(texts, ids, words)]

    def _each_given(self, text: str, ids: np.ndarray, words: list[str]) -> list[Explanation]:
        """A multi-label text explained for each label it is given."""
        tokens = torch.as_tensor(ids, dtype=torch.long, device=self.device).unsqueeze(0)
        lengths = torch.tensor([len(ids)], device=self.device)
        with torch.no_grad():
            logits = self.model(tokens, lengths).float().cpu().numpy()  # (1, classes)
        decision = self.loaded.decision
        probs = decision.probabilities(logits)[0]
        given = sorted(np.flatnonzero(decision.chosen(probs[None])[0]), key=lambda j: -probs[j])
        return [self._one(text, ids, words, self.labels[j]) for j in given or [probs.argmax()]]

    def _one(self, text: str, ids: np.ndarray, words: list[str], label: str | None) -> Explanation:
        from captum.attr import IntegratedGradients

        vocab = self.loaded.encoder.vocab.tokens
        if len(words) != len(ids):  # an empty text is one <unk>; subword pieces by their ids
            words = [vocab[i] for i in ids]
        tokens = torch.as_tensor(ids, dtype=torch.long, device=self.device).unsqueeze(0)
        lengths = torch.tensor([len(ids)], device=self.device)
        with torch.no_grad(), self._attention() as weights:
            logits = self.model(tokens, lengths)[0]  # (classes,)
            embedded = self.model.embedding(tokens)  # (1, seq_len, embedding_dim)
            baseline = self.model.embedding(torch.full_like(tokens, PAD_ID))
        # scored as prediction scores them: calibrated; a sigmoid per label for multi-label runs
        probs = self.loaded.decision.probabilities(logits.float().cpu().numpy()[None])[0]
        predicted = int(probs.argmax())
        target = self.labels.index(label) if label is not None else predicted
        integrated = IntegratedGradients(self._from_embeddings)
        attributions = integrated.attribute(
            embedded,
            baselines=baseline,
            target=target,
            additional_forward_args=(tokens, lengths),
            n_steps=self.steps,
            internal_batch_size=max(1, min(self.steps, 4_000_000 // max(1, embedded.numel()))),
        )  # (1, seq_len, embedding_dim)
        network = attributions.sum(-1)[0].detach().double().cpu().numpy()  # (seq_len,)
        parts = {"network": network}
        if self.model.ngram_bag is not None:
            parts["n-gram bag"] = self._bag_shares(tokens, lengths, target)
        if self.model.wide is not None:
            parts["linear model"] = self._wide_shares(tokens, lengths, target)
        scores = np.sum(list(parts.values()), axis=0)  # (seq_len,)
        with torch.no_grad(), self._baseline():
            base = float(self._from_embeddings(baseline, tokens, lengths)[0, target])
        logit = float(logits[target])
        return Explanation(
            text=text,
            tokens=list(words),
            scores=[float(s) for s in scores],
            label=self.labels[target],
            probability=float(probs[target]),
            predicted=self.labels[predicted],
            logit=logit,
            baseline_logit=base,
            delta=float(scores.sum()) - (logit - base),
            attention=weights[0] if weights else None,
            parts={name: float(v.sum()) for name, v in parts.items()} if len(parts) > 1 else {},
        )

    def _network_weight(self) -> float:
        wide = self.model.wide
        return float(wide.network) if wide is not None else 1.0

    def _bag_shares(self, tokens: torch.Tensor, lengths: torch.Tensor, target: int) -> np.ndarray:
        """Each token's share of the bag's term in the logit: head weight . row / count (or
        sqrt(count)) per n-gram, a bigram's split between its two tokens."""
        bag = self.model.ngram_bag
        assert bag is not None
        steps = tokens.shape[1]
        rows = bag.rows(tokens.t(), lengths)[0]  # (steps or 2 steps - 1,)
        real = rows != PAD_ID
        count = float(real.sum().clamp(min=1))
        norm = count if bag.combiner == "mean" else count**0.5
        head = self.model.head.weight[target, -bag.embedding.weight.shape[1] :]  # (dim,)
        with torch.no_grad():
            values = bag.embedding.weight[rows] @ head * real / norm * self._network_weight()
        each = values.double().cpu().numpy()  # (rows,)
        shares = each[:steps].copy()
        pairs = each[steps:]  # bigram (i, i + 1) at i
        shares[: len(pairs)] += pairs / 2
        shares[1 : len(pairs) + 1] += pairs / 2
        return shares

    def _wide_shares(self, tokens: torch.Tensor, lengths: torch.Tensor, target: int) -> np.ndarray:
        """Each token's share of the linear model's n-gram weights (times its scale): a
        feature's weight split between its occurrences and their n tokens."""
        from textlstm.model.wide import ngram_parts

        wide = self.model.wide
        assert wide is not None
        steps = tokens.shape[1]
        parts = ngram_parts(tokens.t(), lengths, wide.vocab_size, wide.order, wide.buckets)
        found = [p[0].cpu().numpy() for p in parts]  # per order: (steps - n + 1,)
        ids, seen = np.concatenate(found), dict[int, int]()
        for feature in ids[ids != PAD_ID]:
            seen[int(feature)] = seen.get(int(feature), 0) + 1
        weight = wide.weight[:, target].double().cpu().numpy() * float(wide.scale)
        shares = np.zeros(steps)
        for n, starts in enumerate(found, start=1):
            for i, feature in enumerate(starts):
                if feature != PAD_ID:
                    shares[i : i + n] += weight[feature] / seen[int(feature)] / n
        return shares

    @contextmanager
    def _baseline(self) -> Iterator[None]:
        """Run with no n-grams: the bag empty, the linear model at its bias."""
        handles = []
        bag, wide = self.model.ngram_bag, self.model.wide
        if bag is not None:
            handles.append(bag.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out)))
        if wide is not None:

            def bias_only(_m: Any, inputs: Any, _out: torch.Tensor) -> torch.Tensor:
                return wide.network * inputs[0].float() + wide.scale * wide.bias

            handles.append(wide.register_forward_hook(bias_only))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _from_embeddings(
        self, embedded: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """The logits with the embedding layer's output given: embedded (batch, seq_len,
        embedding_dim); the ids still feed the parts that read ids (bag, linear model)."""
        seq_first = embedded.transpose(0, 1)  # the model runs (seq_len, batch, features)
        layer = self.model.embedding_dropout  # its output is what every layer reads
        handle = layer.register_forward_hook(lambda _m, _i, _o: seq_first)
        try:
            return self.model(tokens, lengths)  # (batch, classes)
        finally:
            handle.remove()

    @contextmanager
    def _attention(self) -> Iterator[list[list[float]]]:
        """The attention pooling's weights of the forward pass run inside, per text."""
        found: list[list[float]] = []
        if self.model.attention is None:
            yield found
            return

        def keep(_module: Any, inputs: Any, scores: torch.Tensor) -> None:
            seq = scores.squeeze(-1)  # (seq_len, batch): a single text here, no padding
            found.append(seq.float().softmax(dim=0)[:, 0].tolist())

        handle = self.model.attention.register_forward_hook(keep)
        try:
            yield found
        finally:
            handle.remove()
