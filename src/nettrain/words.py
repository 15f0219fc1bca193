"""A text's tokens and their ids in a vocabulary, without torch: the tokenizers that training (data/tokenize.py) and
`nettrain predict model.onnx` (onnxpredict.py, which must not import torch) share, so an exported text model reads
texts exactly as the run did. `data.args.tokenizer` names one: words (the default) or chars (one token a character:
names, codes and misspellings, as the character-level RNN tutorial classifies names by language).
"""
from __future__ import annotations

import re

PAD, UNK = "<pad>", "<unk>"   # ids 0 and 1: the padding the batches add, and any token not in the vocabulary
SPECIALS = [PAD, UNK]
# runs of letters/digits, or one other non-space character: punctuation ("!", "£") carries signal in short texts
_WORD = re.compile(r"\w+|[^\w\s]")
RULES = {"words": r"lowercased; a word is a run of letters/digits or one other non-space character "
                  r"(regex \w+|[^\w\s])",
         "chars": "each character as it is (case and spaces kept)"}


def tokens(text: str, tokenizer: str = "words") -> list:
    return _WORD.findall(text.lower()) if tokenizer == "words" else list(text)


def ids(text: str, index: dict, max_len=None, tokenizer: str = "words") -> list:
    """The ids of `text`'s tokens in `index` (token -> id; unknown ones -> 1), the first `max_len` when given."""
    return [index.get(w, 1) for w in tokens(text, tokenizer)][:max_len]
