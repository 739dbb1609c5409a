"""Embedding -> (bidirectional, stacked) LSTM or GRU -> masked pooling -> dropout -> linear head.

Batches stay padded (length-bucketed), which lets PyTorch use its fused CPU (oneDNN) and cuDNN
recurrent kernels; packed sequences measured about 10x slower for the same accuracy. Padding is
kept out of the result instead: pooling is masked, and the backward direction reads each text
reversed *within its own length*, so it starts at the text's last real token, never at padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from textlstm.model.batching import iterate, lengths_of, sorted_batches, to_device
from textlstm.model.directions import Lane, run_both, two_lanes_for
from textlstm.model.dropout import FastDropout, drop_mask
from textlstm.model.wide import WideNgrams, bag_sum
from textlstm.recipe import ModelConfig
from textlstm.runtime import autocast
from textlstm.text.vocab import PAD_ID

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def reversal_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(seq_len, batch) positions that reverse each column's first ``length`` steps and leave its
    padding in place. Reversing twice gives back the input."""
    positions = torch.arange(steps, device=lengths.device).unsqueeze(1)  # (seq_len, 1)
    last = (lengths - 1).unsqueeze(0)  # (1, batch)
    return torch.where(positions <= last, last - positions, positions)  # (seq_len, batch)


def reverse_within_length(
    x: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor | None = None
) -> torch.Tensor:
    """Reverse each sequence of ``x`` (seq_len, batch, ...) within its length, padding in place."""
    if index is None:
        index = reversal_index(lengths, x.shape[0])
    if x.dim() == 2:
        return x.gather(0, index)
    # -1 keeps the two leading sizes symbolic in an exported graph (expand_as fixed them)
    index = index.unsqueeze(-1).expand(-1, -1, x.shape[-1])  # (seq_len, batch, features)
    return x.gather(0, index)


class NgramBag(nn.Module):
    """fastText-style features: the mean embedding of a text's unigram ids and (``order`` 2) its
    hashed bigrams, or with ``combiner="sqrtn"`` their sum over the square root of their count,
    with its own dropout. It sees what a bag-of-n-grams model sees, and is joined
    to the LSTM's pooled features before the head."""

    PRIME = 1_000_003  # bigram (a, b) -> (a * PRIME + b) mod buckets

    def __init__(
        self,
        vocab_size: int,
        order: int,
        buckets: int,
        dim: int,
        dropout: float,
        combiner: str = "mean",
    ) -> None:
        super().__init__()
        self.vocab_size, self.order, self.buckets = vocab_size, order, buckets
        self.combiner = combiner
        self.embedding = nn.Embedding(vocab_size + (buckets if order > 1 else 0), dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)  # fastText's start
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (seq_len, batch), lengths (batch,) -> (batch, dim), padding left out."""
        bag = self.rows(tokens, lengths)  # (batch, seq_len or 2 seq_len - 1)
        weight = self.embedding.weight
        if self.combiner == "mean" and not torch.compiler.is_exporting():
            mean = nn.functional.embedding_bag(bag, weight, mode="mean", padding_idx=PAD_ID)
            return self.dropout(mean)  # (batch, dim)
        # "sqrtn": the sum over sqrt(count), as a linear model's L2-normalised counts weigh them
        count = (bag != PAD_ID).sum(dim=1, keepdim=True).clamp(min=1).to(weight.dtype)
        scale = count.reciprocal() if self.combiner == "mean" else count.rsqrt()  # (batch, 1)
        return self.dropout(bag_sum(bag, weight, scale.expand(bag.shape)))  # (batch, dim)

    def rows(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The embedding rows of each text's bag: (batch, seq_len) unigram ids, then for
        order 2 the (seq_len - 1) bigrams of positions (i, i + 1); PAD_ID past the text."""
        ids = tokens.t()  # (batch, seq_len)
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)  # (1, seq_len)
        # PAD_ID rows are left out of each bag (and out of its count) by embedding_bag itself
        bag = ids.masked_fill(positions >= lengths.unsqueeze(1), PAD_ID)  # (batch, seq_len)
        if self.order > 1 and ids.shape[1] > 1:
            pairs = self.vocab_size + (ids[:, :-1] * self.PRIME + ids[:, 1:]) % self.buckets
            both = positions[:, :-1] < (lengths - 1).unsqueeze(1)  # a pair needs both tokens
            bag = torch.cat(
                [bag, pairs.masked_fill(~both, PAD_ID)], dim=1
            )  # (batch, 2 seq_len - 1)
        return bag


def _cell(kind: type[nn.RNNBase], input_size: int, hidden_size: int) -> nn.Module:
    return kind(input_size, hidden_size)  # type: ignore[call-arg, arg-type]  # nn.LSTM's own signature


class LSTMClassifier(nn.Module):
    """Runs sequence-first (seq_len, batch, features), the layout of the fused recurrent kernels,
    so no transposed copies are made between the layers."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        cell = CELLS[cfg.cell]
        directions = 2 if cfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=PAD_ID)
        # in place: the embeddings' output is a fresh tensor that no backward pass reads
        self.embedding_dropout = FastDropout(cfg.embedding_dropout, inplace=True)
        # from a language model (model.encoder) each direction keeps its own stack, as the
        # forward and backward language models were trained; otherwise each layer reads both
        self.separate = cfg.encoder is not None and cfg.bidirectional
        upper = cfg.hidden_size * (1 if self.separate else directions)
        sizes = [cfg.embedding_dim] + [upper] * (cfg.num_layers - 1)
        self.forward_layers = nn.ModuleList(_cell(cell, size, cfg.hidden_size) for size in sizes)
        self.backward_layers = (
            nn.ModuleList(_cell(cell, size, cfg.hidden_size) for size in sizes)
            if cfg.bidirectional
            else nn.ModuleList()
        )
        self.output_size = cfg.hidden_size * directions
        self.attention = nn.Linear(self.output_size, 1) if cfg.pooling == "attention" else None
        # "concat" (ULMFiT's concat pooling) joins the last state, the max and the mean
        self.pooled_size = self.output_size * (3 if cfg.pooling == "concat" else 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ngram_bag = (
            NgramBag(
                vocab_size,
                cfg.ngrams,
                cfg.ngram_buckets,
                cfg.ngram_dim,
                cfg.ngram_dropout,
                cfg.ngram_combiner,
            )
            if cfg.ngrams
            else None
        )
        extra = cfg.ngram_dim if cfg.ngrams else 0
        self.head = nn.Linear(self.pooled_size + extra, num_classes)
        # the linear model beside the network: frozen buffers, its scores added to the logits
        self.wide = (
            WideNgrams(vocab_size, cfg.wide_ngrams, cfg.wide_buckets, num_classes)
            if cfg.wide != "none"
            else None
        )
        # the backward layer may look its reversed input up again rather than reverse the
        # embeddings (the same values, cheaper); explanations turn it off so that every layer
        # reads the one embedding output they interpolate
        self.reembed = True

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        perturbation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens (batch, seq_len) of ids, lengths (batch,) on the same device -> logits.
        ``perturbation`` (seq_len, batch, embedding_dim), added to the embeddings before their
        dropout, is adversarial training's (train.adversarial)."""
        tokens = tokens.t()  # (seq_len, batch)
        index = reversal_index(lengths, tokens.shape[0]) if self.cfg.bidirectional else None
        last_layer = len(self.forward_layers) - 1
        if self.separate and index is not None:
            return self._separate(self._embed(tokens, perturbation), tokens, lengths, index)
        lookup, mask = self._lookup_in_lanes(tokens, perturbation is None)
        x = tokens if lookup else self._embed(tokens, perturbation)  # (seq_len, batch[, dim])
        for i, forward_layer in enumerate(self.forward_layers):
            if i > 0:
                x = self.dropout(x)  # between stacked layers
            if not self.cfg.bidirectional:
                x, _ = forward_layer(x)  # (seq_len, batch, hidden_size)
                continue
            # each direction is pooled in its own reading order: padding sits at the same
            # positions in both, and both end at position length - 1
            pooled = i == last_layer and self.attention is None
            embed = lookup and i == 0
            dropped_mask = mask if embed else None
            forward_out, backward_out = run_both(
                self._lane(
                    forward_layer, lengths, index, pooled=pooled, embed=embed, mask=dropped_mask
                ),
                self._lane(
                    self.backward_layers[i],
                    lengths,
                    index,
                    pooled=pooled,
                    embed=embed,
                    back=True,
                    mask=dropped_mask,
                ),
                x,
                x,
            )  # (batch, pooled_size / 2) each, else (seq_len, batch, hidden_size) in text order
            if pooled:
                return self._classify(
                    torch.cat([forward_out, backward_out], dim=-1), tokens, lengths
                )
            x = torch.cat([forward_out, backward_out], dim=-1)  # (seq_len, batch, 2 * hidden_size)
        if self.attention is None:  # one direction: its outputs are in reading order
            return self._classify(self.pool_direction(x, lengths), tokens, lengths)
        return self._classify(self.attend(x, lengths), tokens, lengths)

    def _lookup_in_lanes(
        self, tokens: torch.Tensor, unperturbed: bool
    ) -> tuple[bool, torch.Tensor | None]:
        """Whether each direction looks its embeddings up in its own lane (the backward one from
        the reversed ids, with the dropout mask reversed: the values of the reversed
        embeddings, for the cost of reversing ids), and the embedding dropout's mask (seq_len,
        batch, embedding_dim), drawn here, when it drops values."""
        dropout = self.embedding_dropout
        dropped = self.training and dropout.p > 0
        lookup = (
            self.cfg.bidirectional
            and self.reembed
            and unperturbed
            and (not dropped or dropout.draws(tokens.device))
        )
        if not (lookup and dropped):
            return lookup, None
        return True, drop_mask((*tokens.shape, self.cfg.embedding_dim), dropout.p)

    def _embed(self, tokens: torch.Tensor, perturbation: torch.Tensor | None) -> torch.Tensor:
        """tokens (seq_len, batch) -> their embeddings, perturbed and dropped out."""
        x = self.embedding(tokens)  # (seq_len, batch, embedding_dim)
        if perturbation is not None:
            x = x + perturbation.to(x.dtype)
        return self.embedding_dropout(x)

    def _lane(
        self,
        layer: nn.Module,
        lengths: torch.Tensor,
        index: torch.Tensor | None,
        *,
        pooled: bool,
        embed: bool = False,
        back: bool = False,
        reverse_in: bool | None = None,
        mask: torch.Tensor | None = None,
    ) -> Lane:
        """One direction of a layer as a lane (``directions.run_both``): for the backward one
        (``back``) its input reversed within each text's length (unless ``reverse_in`` says
        otherwise); the ids looked up (``embed``), with the embedding dropout's ``mask`` (text
        order) applied; the layer; then its outputs pooled
        (``pooled``), or, for the backward one, put back in text order."""
        reverse = back if reverse_in is None else reverse_in

        def run(x: torch.Tensor) -> torch.Tensor:
            if reverse:
                x = reverse_within_length(x, lengths, index)
            if embed:
                x = self.embedding(x)  # (seq_len, batch, embedding_dim)
                if mask is not None:  # the embedding dropout's, in this lane's reading order
                    dropped = reverse_within_length(mask, lengths, index) if reverse else mask
                    x = self.embedding_dropout.drop_with(x, dropped)
            out, _ = layer(x)  # (seq_len, batch, hidden_size)
            if pooled:
                return self.pool_direction(out, lengths)  # (batch, pooled_size / 2)
            return reverse_within_length(out, lengths, index) if back else out

        params = [*layer.parameters(), *(self.embedding.parameters() if embed else ())]
        return Lane(run, params)

    def _separate(
        self, x: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """Two stacks, each read in its own order: x (seq_len, batch, embedding_dim) -> logits."""
        forward, backward = x, x
        last_layer = len(self.forward_layers) - 1
        for i, (forward_layer, backward_layer) in enumerate(
            zip(self.forward_layers, self.backward_layers)
        ):
            if i > 0:
                forward, backward = self.dropout(forward), self.dropout(backward)
            pooled = i == last_layer and self.attention is None
            # the backward stack reads the text reversed; its last layer's outputs are put back
            # in text order for attention
            forward, backward = run_both(
                self._lane(forward_layer, lengths, index, pooled=pooled),
                self._lane(
                    backward_layer,
                    lengths,
                    index,
                    pooled=pooled,
                    back=i == last_layer,
                    reverse_in=i == 0,
                ),
                forward,
                backward,
            )
        if self.attention is not None:
            both = torch.cat([forward, backward], dim=-1)  # (seq_len, batch, 2 * hidden_size)
            return self._classify(self.attend(both, lengths), tokens, lengths)
        pooled_both = torch.cat([forward, backward], dim=-1)  # (batch, pooled_size)
        return self._classify(pooled_both, tokens, lengths)

    def _classify(
        self, pooled: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """pooled (batch, output_size), tokens (seq_len, batch) -> logits (batch, num_classes)."""
        features = self.dropout(pooled)
        if self.ngram_bag is not None:
            bag = self.ngram_bag(tokens, lengths).to(features.dtype)  # (batch, ngram_dim)
            features = torch.cat([features, bag], dim=-1)  # (batch, output_size + ngram_dim)
        logits = self.head(features)  # (batch, num_classes)
        if self.wide is not None and not self.training:  # its scale is 0 while training
            logits = self.wide(logits, tokens, lengths)  # (batch, num_classes)
        return logits

    def pool_direction(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One direction's outputs x (seq_len, batch, hidden) in its reading order -> (batch,
        hidden, or 3 * hidden for "concat"), ignoring the padding."""
        pooling = self.cfg.pooling
        if pooling == "concat":
            kinds = ("last", "max", "mean")
            return torch.cat([_pool(x, lengths, kind) for kind in kinds], dim=-1)
        return _pool(x, lengths, pooling)

    def attend(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Attention pooling over x (seq_len, batch, output_size) -> (batch, output_size)."""
        assert self.attention is not None
        mask = _mask(x, lengths)  # (seq_len, batch)
        scores = self.attention(torch.tanh(x)).squeeze(-1)  # (seq_len, batch)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=0)  # (seq_len, batch)
        return torch.einsum("sb,sbf->bf", weights.to(x.dtype), x)  # (batch, output_size)


def _mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(seq_len, batch): True at real tokens."""
    return torch.arange(x.shape[0], device=x.device).unsqueeze(1) < lengths.unsqueeze(0)


def _pool(x: torch.Tensor, lengths: torch.Tensor, kind: str) -> torch.Tensor:
    """x (seq_len, batch, features) in reading order -> (batch, features); padding ignored."""
    if kind == "last":  # the state after the last real token
        return x[lengths - 1, torch.arange(x.shape[1], device=x.device)]
    mask = _mask(x, lengths).unsqueeze(-1)  # (seq_len, batch, 1)
    if kind == "max":
        return x.masked_fill(~mask, float("-inf")).amax(dim=0)
    summed = (x * mask).sum(dim=0)  # (batch, features)
    return summed / lengths.unsqueeze(1).to(x.dtype)  # "mean"


def logits_for(
    model: nn.Module,
    ids: Sequence[np.ndarray],
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
) -> np.ndarray:
    """Logits (rows, num_classes) in input order. ``bf16`` runs the model under bfloat16
    autocast: about 2x the texts/s of fp32 on a CPU with avx512_bf16 (bench/README.md). ``int8``
    is for a model from ``quantize_int8``, whose activations stay fp32."""
    if precision not in ("fp32", "bf16", "fp16", "int8"):
        raise ValueError(f"precision {precision!r}: use fp32, bf16, fp16 or int8")
    was_training = model.training
    model.eval()
    classes = int(model.head.out_features)  # type: ignore[union-attr, arg-type]
    out = np.zeros((len(ids), classes), dtype=np.float32)
    with torch.inference_mode(), autocast(device, precision), two_lanes_for(model, device):
        for rows, tokens, lengths in iterate(ids, sorted_batches(lengths_of(ids), batch_size)):
            scores = model(to_device(tokens, device), to_device(lengths, device))
            out[rows] = scores.float().cpu().numpy()
    model.train(was_training)
    return out
