"""Embedding -> (bidirectional, stacked) LSTM or GRU -> masked pooling -> dropout -> linear head.

Batches stay padded (length-bucketed), which lets PyTorch use its fused CPU (oneDNN) and cuDNN
recurrent kernels; packed sequences measured about 2x slower for the same accuracy. Padding is kept
out of the result instead: pooling is masked, and the backward direction reads each text reversed
*within its own length*, so it starts at the text's last real token, never at padding.
"""
from __future__ import annotations

import torch
from torch import nn

from textlstm.recipe import ModelConfig
from textlstm.vocab import PAD_ID

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first ``length`` steps, leaving its padding in place.

    It is its own inverse, so the same call maps backward outputs back to text order."""
    steps = x.shape[1]
    positions = torch.arange(steps, device=x.device).unsqueeze(0)  # (1, seq_len)
    last = (lengths - 1).unsqueeze(1)  # (batch, 1)
    index = torch.where(positions <= last, last - positions, positions)  # (batch, seq_len)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))  # (batch, seq_len, features)


class LSTMClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        cell = CELLS[cfg.cell]
        directions = 2 if cfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=PAD_ID)
        self.embedding_dropout = nn.Dropout(cfg.embedding_dropout)
        sizes = [cfg.embedding_dim] + [cfg.hidden_size * directions] * (cfg.num_layers - 1)
        self.forward_layers = nn.ModuleList(
            cell(size, cfg.hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(
            cell(size, cfg.hidden_size, batch_first=True) for size in sizes
        ) if cfg.bidirectional else nn.ModuleList()
        self.output_size = cfg.hidden_size * directions
        self.attention = nn.Linear(self.output_size, 1) if cfg.pooling == "attention" else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.output_size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (batch, seq_len) of ids, lengths (batch,) on the same device -> logits."""
        x = self.embedding_dropout(self.embedding(tokens))  # (batch, seq_len, embedding_dim)
        for i, forward_layer in enumerate(self.forward_layers):
            if i > 0:
                x = self.dropout(x)  # between stacked layers
            forward_out, _ = forward_layer(x)  # (batch, seq_len, hidden_size)
            if not self.cfg.bidirectional:
                x = forward_out
                continue
            reversed_in = reverse_within_length(x, lengths)  # (batch, seq_len, features)
            backward_out, _ = self.backward_layers[i](reversed_in)  # (batch, seq_len, hidden_size)
            backward_out = reverse_within_length(backward_out, lengths)
            x = torch.cat([forward_out, backward_out], dim=-1)  # (batch, seq_len, 2 * hidden_size)
        pooled = self.pool(x, lengths)  # (batch, output_size)
        return self.head(self.dropout(pooled))  # (batch, num_classes)

    def pool(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        mask = torch.arange(steps, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (batch, seq_len)
        pooling = self.cfg.pooling
        if pooling == "max":
            return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)  # (batch, out)
        if pooling == "mean":
            summed = (x * mask.unsqueeze(-1)).sum(dim=1)  # (batch, output_size)
            return summed / lengths.unsqueeze(1).to(x.dtype)
        if pooling == "attention":
            assert self.attention is not None
            scores = self.attention(torch.tanh(x)).squeeze(-1)  # (batch, seq_len)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=1)  # (batch, seq_len)
            return torch.bmm(weights.unsqueeze(1), x).squeeze(1)  # (batch, output_size)
        # "last": the forward direction ends at the last real token, the backward one at the first
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.shape[-1])  # (batch, 1, output_size)
        final = x.gather(1, last).squeeze(1)  # (batch, output_size)
        if not self.cfg.bidirectional:
            return final
        half = self.cfg.hidden_size
        return torch.cat([final[:, :half], x[:, 0, half:]], dim=-1)  # (batch, 2 * hidden_size)
