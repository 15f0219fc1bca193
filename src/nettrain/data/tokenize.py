"""Words and the vocabulary of a text dataset: a lowercase regex tokenizer (no dependency, ~1 us a word) and a
vocabulary learned from the training split only, stored as the plain list of its tokens.

    tokens("Free entry, 2 wkly!")     # ['free', 'entry', ',', '2', 'wkly', '!']
    vocab = build_vocab(train_texts, size=20000, min_freq=1)   # ['<pad>', '<unk>', 'the', ...]
    ids, lengths = encode(texts, vocab, max_len=None)          # one flat int64 tensor, one length per text
"""
from __future__ import annotations

from collections import Counter

import torch

from ..words import PAD, SPECIALS, UNK, ids, tokens  # noqa: F401  (the tokenizer itself needs no torch: words.py)


def build_vocab(texts, size: int, min_freq: int, tokenizer: str = "words") -> list:
    """The specials, then the words seen at least `min_freq` times, most frequent first (ties by the word, so the
    vocabulary does not depend on the order of the texts), `size` entries in all."""
    counts = Counter(w for t in texts for w in tokens(t, tokenizer))
    words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIALS), key=lambda w: (-counts[w], w))
    return SPECIALS + words[:max(0, size - len(SPECIALS))]


def encode(texts, vocab: list, max_len=None, tokenizer: str = "words") -> tuple:
    """(ids, lengths): every text's token ids concatenated into one int64 tensor (unknown words -> 1), and each
    text's token count, cut to `max_len` tokens when given."""
    index = {w: i for i, w in enumerate(vocab)}
    flat, lengths = [], []
    for t in texts:
        text_ids = ids(t, index, max_len, tokenizer)
        flat.extend(text_ids)
        lengths.append(len(text_ids))
    return torch.tensor(flat, dtype=torch.int64), torch.tensor(lengths, dtype=torch.int64)
