"""A text's words and their ids in a vocabulary, without torch: the tokenizer that training (data/tokenize.py)
and `nettrain predict model.onnx` (onnxpredict.py, which must not import torch) share, so an exported text model
reads texts exactly as the run did.
"""
from __future__ import annotations

import re

PAD, UNK = "<pad>", "<unk>"   # ids 0 and 1: the padding the batches add, and any word not in the vocabulary
SPECIALS = [PAD, UNK]
# runs of letters/digits, or one other non-space character: punctuation ("!", "£") carries signal in short texts
_WORD = re.compile(r"\w+|[^\w\s]")
RULE = r"lowercased; a word is a run of letters/digits or one other non-space character (regex \w+|[^\w\s])"


def tokens(text: str) -> list:
    return _WORD.findall(text.lower())


def ids(text: str, index: dict, max_len=None) -> list:
    """The ids of `text`'s words in `index` (word -> id; unknown words -> 1), the first `max_len` when given."""
    return [index.get(w, 1) for w in tokens(text)][:max_len]
