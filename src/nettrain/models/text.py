"""Text classifiers. Each takes a batch as `model(tokens, lengths)`: token ids (N, L) padded with 0 to the batch's
longest text, and each text's length (data/text.py). The builders take shape [vocabulary size] and the class count.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from .zoo import MODELS

POOLS = ("max", "mean", "both")
TEXT_MODELS = ("bilstm", "fasttext")   # registered below; they take (tokens, lengths), not images


def _vocab(name, shape) -> int:
    if len(shape) != 1:
        raise ModelError(f"model {name!r} reads texts (token ids), but this dataset's inputs have shape {shape}; "
                         f"use it with --dataset text")
    return int(shape[0])


def _mask(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, L) True where a position holds a token, False on padding."""
    return torch.arange(tokens.shape[1], device=tokens.device) < lengths.unsqueeze(1)


class BiLSTM(nn.Module):
    """Embedding, a bidirectional LSTM in which padding never reaches a text's outputs (the backward direction
    starts at each text's own last word, as over packed sequences), max and/or mean pooling over the real positions,
    a linear classifier.

    The two directions run as two plain passes over the padded batch (`directions`): the forward one as it is
    (padding comes after every word, so it cannot change a word's output), the backward one over each text reversed
    within its own length. That is packing's result (to float rounding, 2e-7) at half its cost on the CPU: one epoch
    of the SMS recipe's bucketed batches took 1.05 s against 2.08 s through pack_padded_sequence, whose packed
    LSTM steps over shrinking batches one time step at a time. The weights are nn.LSTM's own (`lstm`), so a
    checkpoint's keys are those of a bidirectional nn.LSTM."""

    def __init__(self, vocab: int, outputs: int, embed=64, hidden=64, layers=1, pool="max", dropout=0.0):
        super().__init__()
        if pool not in POOLS:
            raise ModelError(f"model 'bilstm': argument pool must be one of {', '.join(POOLS)}, got {pool!r}; fix "
                             f"--model.args.pool")
        if not 0 <= dropout < 1:
            raise ModelError(f"model 'bilstm': argument dropout must be in [0, 1), got {dropout!r}; fix "
                             f"--model.args.dropout")
        self.pool = pool
        self.embedding = nn.Embedding(vocab, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden * (2 if pool == "both" else 1), outputs)

    def forward(self, tokens, lengths):
        inside = _mask(tokens, lengths).unsqueeze(2)
        out = self.directions(self.dropout(self.embedding(tokens)), lengths).masked_fill(~inside, 0.0)
        pooled = []
        if self.pool in ("max", "both"):
            pooled.append(out.masked_fill(~inside, float("-inf")).amax(1))
        if self.pool in ("mean", "both"):
            pooled.append(out.sum(1) / lengths.unsqueeze(1).to(out.dtype))   # padded outputs are zeros
        return self.classifier(self.dropout(torch.cat(pooled, 1)))

    def directions(self, x, lengths):
        """The bidirectional LSTM's outputs (N, L, 2 * hidden) at every real position; padded positions hold
        anything (forward masks them)."""
        lstm, n, width = self.lstm, x.shape[0], x.shape[1]
        pos = torch.arange(width, device=x.device)
        # each text's positions reversed within its length; padding stays where it is, after the words
        back = torch.where(pos < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - pos, pos).unsqueeze(2)
        start = x.new_zeros(1, n, lstm.hidden_size)
        for layer in range(lstm.num_layers):
            if layer and lstm.dropout and self.training:   # between layers, as nn.LSTM does
                x = nn.functional.dropout(x, lstm.dropout, True)
            ahead = torch.lstm(x, (start, start), self._weights(layer, ""), True, 1, 0.0, self.training, False,
                               True)[0]
            reversed_ = x.gather(1, back.expand(-1, -1, x.shape[2]))
            behind = torch.lstm(reversed_, (start, start), self._weights(layer, "_reverse"), True, 1, 0.0,
                                self.training, False, True)[0]
            x = torch.cat([ahead, behind.gather(1, back.expand(-1, -1, lstm.hidden_size))], 2)
        return x

    def _weights(self, layer: int, direction: str) -> list:
        return [getattr(self.lstm, f"{name}_l{layer}{direction}")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


class FastText(nn.Module):
    """fastText's classifier: the mean of the word embeddings and of hashed bigram embeddings, one linear layer
    (`dropout` on the mean, for small data: recipes/sentiment.yaml)."""

    def __init__(self, vocab: int, outputs: int, embed=64, buckets=32768, dropout=0.0):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ModelError(f"model 'fasttext': argument dropout must be in [0, 1), got {dropout!r}; fix "
                             f"--model.args.dropout")
        self.buckets = buckets
        self.dropout = nn.Dropout(dropout)
        self.words = nn.Embedding(vocab, embed, padding_idx=0)   # the padding's row stays zero
        self.bigrams = nn.Embedding(buckets, embed)
        self.classifier = nn.Linear(embed, outputs)
        # fastText's initialization: input vectors uniform in +-1/embed, the output layer zero. torch's N(0, 1)
        # embeddings made each text's mean a sum of random vectors of norm ~8 (embed 64) that the few hundred steps
        # of a small dataset never outweighed.
        for table in (self.words, self.bigrams):
            nn.init.uniform_(table.weight, -1 / embed, 1 / embed)
        with torch.no_grad():
            self.words.weight[0].zero_()   # <pad>
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, tokens, lengths):
        inside = _mask(tokens, lengths)
        words = self.words(tokens).sum(1)
        pairs = (tokens[:, :-1] * 1_000_003 + tokens[:, 1:]) % self.buckets   # a bigram's bucket: a fixed hash
        bigrams = (self.bigrams(pairs) * inside[:, 1:].unsqueeze(2).to(words.dtype)).sum(1)
        count = (2 * lengths - 1).clamp_min(1).unsqueeze(1).to(words.dtype)   # words + bigrams of each text
        return self.classifier(self.dropout((words + bigrams) / count))


@MODELS.register("bilstm")
def bilstm(shape, outputs, embed=64, hidden=64, layers=1, pool="max", dropout=0.0):
    return BiLSTM(_vocab("bilstm", shape), outputs, embed, hidden, layers, pool, dropout)


@MODELS.register("fasttext")
def fasttext(shape, outputs, embed=64, buckets=32768, dropout=0.0):
    return FastText(_vocab("fasttext", shape), outputs, embed, buckets, dropout)
