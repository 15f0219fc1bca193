"""Text classifiers. Each takes a batch as `model(tokens, lengths)`: token ids (N, L) padded with 0 to the batch's
longest text, and each text's length (data/text.py). The builders take shape [vocabulary size] and the class count.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

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
    """Embedding, a bidirectional LSTM over packed sequences (padding never enters it: the backward direction
    starts at each text's own last word), max and/or mean pooling over the real positions, a linear classifier."""

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
        x = self.dropout(self.embedding(tokens))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=tokens.shape[1])
        inside = _mask(tokens, lengths).unsqueeze(2)
        pooled = []
        if self.pool in ("max", "both"):
            pooled.append(out.masked_fill(~inside, float("-inf")).amax(1))
        if self.pool in ("mean", "both"):
            pooled.append(out.sum(1) / lengths.unsqueeze(1).to(out.dtype))   # padded outputs are zeros
        return self.classifier(self.dropout(torch.cat(pooled, 1)))


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


@MODELS.register("bilstm", "text: embedding, bidirectional LSTM (packed), max pooling; args: embed, hidden, "
                           "layers, pool (max|mean|both), dropout")
def bilstm(shape, outputs, embed=64, hidden=64, layers=1, pool="max", dropout=0.0):
    return BiLSTM(_vocab("bilstm", shape), outputs, embed, hidden, layers, pool, dropout)


@MODELS.register("fasttext", "text: mean of word and hashed bigram embeddings, linear; args: embed, buckets, "
                             "dropout")
def fasttext(shape, outputs, embed=64, buckets=32768, dropout=0.0):
    return FastText(_vocab("fasttext", shape), outputs, embed, buckets, dropout)
