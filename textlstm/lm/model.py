"""An LSTM language model with AWD-LSTM's regularisation (Merity et al. 2017), shaped so that its
embedding and layers are a classifier's, weight for weight.

- The layers are the classifier's: ``forward_layers`` and ``backward_layers``, one ``nn.LSTM`` (or
  GRU) per layer with the recipe's [model] sizes, so ``model.encoder`` copies them by name.
- Input and output embeddings are tied: the softmax scores words with the embedding matrix, after
  a projection from ``hidden_size`` to ``embedding_dim`` when the two differ.
- DropConnect on the hidden-to-hidden weights runs through ``torch.func.functional_call``, so the
  fused recurrent kernels still serve the dropped weights.
- The softmax is sampled in training (a few hundred words drawn by unigram^0.75 frequency, scored
  against the true one, Jean et al. 2015) and full when measuring perplexity.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from textlstm.model.classifier import CELLS, _cell
from textlstm.recipe import ModelConfig, PretrainConfig
from textlstm.text.vocab import PAD_ID

State = list[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]  # one entry per layer


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout: one mask per sequence, the same at every step of x (seq, batch, f)."""
    if not training or p == 0:
        return x
    mask = x.new_empty(1, x.shape[1], x.shape[2]).bernoulli_(1 - p) / (1 - p)  # (1, batch, f)
    return x * mask


class LanguageModel(nn.Module):
    def __init__(self, model: ModelConfig, cfg: PretrainConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        cell = CELLS[model.cell]
        self.embedding = nn.Embedding(vocab_size, model.embedding_dim, padding_idx=PAD_ID)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        sizes = [model.embedding_dim] + [model.hidden_size] * (model.num_layers - 1)
        self.forward_layers = nn.ModuleList(_cell(cell, s, model.hidden_size) for s in sizes)
        both = cfg.directions == "both"
        self.backward_layers = nn.ModuleList(
            _cell(cell, s, model.hidden_size) for s in (sizes if both else [])
        )
        projected = model.hidden_size != model.embedding_dim
        self.projections = nn.ModuleList(
            nn.Linear(model.hidden_size, model.embedding_dim) if projected else nn.Identity()
            for _ in range(2 if both else 1)
        )
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))

    @property
    def directions(self) -> list[nn.ModuleList]:
        return [self.forward_layers] + ([self.backward_layers] if len(self.backward_layers) else [])

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (seq, batch) -> (seq, batch, embedding_dim), with whole words dropped."""
        weight = self.embedding.weight
        p = self.cfg.embedding_dropout
        if self.training and p > 0:
            keep = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)  # (vocab, 1)
            weight = weight * keep
        x = nn.functional.embedding(tokens, weight, PAD_ID)  # (seq, batch, embedding_dim)
        return locked_dropout(x, self.cfg.input_dropout, self.training)

    def run(
        self, direction: int, tokens: torch.Tensor, state: State | None
    ) -> tuple[torch.Tensor, State]:
        """One direction over tokens (seq, batch) in its own reading order, from ``state`` ->
        (outputs (seq, batch, embedding_dim), the state after the last step)."""
        layers = self.directions[direction]
        x = self.embed(tokens)
        new_state: State = []
        for i, layer in enumerate(layers):
            x, last = self._layer(layer, x, None if state is None else state[i])
            new_state.append(last)
            p = self.cfg.hidden_dropout if i < len(layers) - 1 else self.cfg.output_dropout
            x = locked_dropout(x, p, self.training)  # (seq, batch, hidden_size)
        return self.projections[direction](x), new_state  # (seq, batch, embedding_dim)

    def _layer(
        self,
        layer: nn.Module,
        x: torch.Tensor,
        state: torch.Tensor | tuple[torch.Tensor, ...] | None,
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        p = self.cfg.weight_dropout
        if not self.training or p == 0:
            return layer(x, state)
        params: dict[str, torch.Tensor] = dict(layer.named_parameters())
        params["weight_hh_l0"] = nn.functional.dropout(params["weight_hh_l0"], p)  # DropConnect
        return functional_call(layer, params, (x, state))

    def sampled_loss(
        self,
        outputs: torch.Tensor,
        targets: torch.Tensor,
        samples: torch.Tensor,
        log_q: torch.Tensor,
    ) -> torch.Tensor:
        """Mean loss of the sampled softmax: outputs (seq, batch, embedding_dim), targets (seq,
        batch), ``samples`` (S,) drawn with replacement from ``exp(log_q)`` (vocab,)."""
        h = outputs.reshape(-1, outputs.shape[-1])  # (tokens, embedding_dim)
        flat = targets.reshape(-1)  # (tokens,)
        weight, bias = self.embedding.weight, self.decoder_bias
        correction = math.log(samples.numel())
        true = (h * weight[flat]).sum(-1) + bias[flat] - log_q[flat] - correction  # (tokens,)
        noise = h @ weight[samples].t() + bias[samples] - log_q[samples] - correction  # (tokens, S)
        noise = noise.masked_fill(samples.unsqueeze(0) == flat.unsqueeze(1), float("-inf"))
        logits = torch.cat([true.unsqueeze(1), noise], dim=1)  # (tokens, 1 + S)
        return nn.functional.cross_entropy(logits.float(), torch.zeros_like(flat))

    def full_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
        """Summed negative log-likelihood over the whole vocabulary, and the tokens scored."""
        h = outputs.reshape(-1, outputs.shape[-1])  # (tokens, embedding_dim)
        flat = targets.reshape(-1)
        total = 0.0
        for start in range(0, h.shape[0], 4096):  # (4096, vocab) logits at a time
            logits = h[start : start + 4096] @ self.embedding.weight.t() + self.decoder_bias
            total += float(
                nn.functional.cross_entropy(
                    logits.float(), flat[start : start + 4096], reduction="sum"
                )
            )
        return total, int(flat.numel())
