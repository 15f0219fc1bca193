"""Texts: token ids held as one flat tensor with each text's length, padded per batch to its longest
(data/text.py), the vocabulary kept in the checkpoint and the run as a plain list. Predict takes raw strings,
tokenized by the run's rule (words.py); an exported graph takes token ids N x L (0 pads) and lengths N, both axes
dynamic, and its JSON holds the vocabulary so that a reader without torch tokenizes the same way."""
from __future__ import annotations

from typing import Optional

import torch

from .base import Kind, class_table, first_batch, split_targets
from .evidence import text_predictions

CLIP = 110   # characters of a sample text shown by `nettrain show`: one terminal line with its label
SUMMARY_TOKENS = 32   # the length of the one text `nettrain summary RUN` runs a text model on (its sizes scale with it)


class Text(Kind):
    name = "text"
    unit = "texts"
    model = "fasttext"   # seconds on the SMS file, and the better of the two on the 1,000-sentence sentiment files
    record_fields = ("vocab",)
    # fasttext: recipes/sentiment.yaml's setting, the best on held-out parts of the sentiment files' training
    # splits (6 hold-outs each, no test sentence; `python benchmarks/defaults.py --select`): 78.6% there against
    # 80.1% for TF-IDF + LR and 69.3% for the generic Adam 0.001, 10 epochs of 64, embed 64. bilstm:
    # benchmarks/text.py's tuned SMS setting (98.6%); min_freq 2 makes rare words (phone numbers, one-off
    # spellings) <unk>, a token the model learns, and bucketing by length cuts the padded positions from 72% to 14%
    # (benchmarks/results/text.txt). Both against scikit-learn: benchmarks/results/defaults.txt.
    training = {
        "fasttext": {"model.args": {"embed": 16, "dropout": 0.5}, "optim.name": "adam",
                     "optim.lr": 0.02, "sched.name": "cosine", "train.epochs": 10, "train.batch_size": 32},
        "bilstm": {"model.args": {"embed": 128}, "optim.name": "adam", "optim.lr": 0.005, "sched.name": "cosine",
                   "train.epochs": 6, "train.batch_size": 64, "data.args": {"min_freq": 2, "bucket": True}}}
    traceable = False   # a batch is (tokens, lengths): TensorBoard's graph cannot trace it
    input_names = ["tokens", "lengths"]
    reads = "texts"

    def load_for_model(self, cfg, info):   # with the model's own vocabulary
        from ..data.text import load_text
        return load_text(cfg, vocab=info.vocab)

    def describe(self, data, cfg, n: int) -> str:
        """The file's splits and classes, words a text, the padding of the config's batches with and without
        bucketing, the test split's unknown words, and the first texts of epoch 1's first batch in their tokens."""
        from ..data.text import text_args
        train, vocab, tc = data.train, data.info.vocab, cfg.train
        splits = split_targets(data)
        lengths = train.lengths.double()
        median, high = torch.quantile(lengths, torch.tensor([0.5, 0.9], dtype=torch.float64)).tolist()
        waste = {bucket: train.batches("cpu", tc.batch_size, train=True, shuffle=tc.shuffle, seed=tc.seed,
                                       bucket=bucket) for bucket in (False, True)}
        for b in waste.values():
            b.set_epoch(1)
        unknown = float((data.test.ids == 1).double().mean()) if len(data.test.ids) else 0.0
        lines = list(data.notes) + class_table(data.info.classes, splits) + [
            f"words a text (training split): min {int(lengths.min())}, median {median:g}, 90% at most {high:g}, "
            f"max {int(lengths.max())}; {unknown:.1%} of the test split's words are <unk> (not in the vocabulary)",
            f"padding at batch size {tc.batch_size}: {waste[False].padding_waste():.1%} of the positions, "
            f"{waste[True].padding_waste():.1%} with --data.args.bucket true"]
        (tokens, lens), y = first_batch(data, cfg)
        shown = min(n, len(y))
        lines.append(f"the first {shown} texts of epoch 1's first batch, as the model reads them (<unk>: a word not "
                     f"in the vocabulary):")
        width = max(len(str(c)[:16]) for c in data.info.classes)
        joiner = "" if text_args(cfg.data.args)["tokenizer"] == "chars" else " "
        for row, length, label in zip(tokens[:shown].tolist(), lens[:shown].tolist(), y[:shown].tolist()):
            words = joiner.join(vocab[i] for i in row[:length])
            lines.append(f"  {str(data.info.classes[label])[:16]:<{width}}  {words[:CLIP]}"
                         f"{'...' if len(words) > CLIP else ''}")
        return "\n".join(lines)

    def summary_inputs(self, info) -> tuple:   # one text of SUMMARY_TOKENS tokens: (tokens, lengths)
        return torch.full((1, SUMMARY_TOKENS), 1, dtype=torch.int64), torch.tensor([SUMMARY_TOKENS])

    def example(self, data):   # (tokens, lengths): a real batch, padded as training pads it
        return data.train.example()[0]

    def evidence(self, predictor, test) -> dict:
        return text_predictions(predictor, test)

    def predict(self, predictor, inputs, batch_size: int, collate_fn=None):
        from ..data.text import encode_texts
        return predictor.predict_encoded(encode_texts(inputs, predictor.info, predictor.config.data.args),
                                         batch_size)

    def evaluation_data_refusal(self, data) -> Optional[str]:
        return "a text model is evaluated on a file of labelled texts: give data_dir= the file (its test split, " \
               "as fit made it), not data="

    def input_spec(self, info) -> dict:
        return {"name": "tokens", "names": ["tokens", "lengths"], "dtype": "int64", "shape": [None, None],
                "what": "int64 token ids N x L (0 pads a text shorter than L) and int64 lengths N (each text's token "
                        "count), from the vocabulary in the preprocessing"}

    def preprocessing(self, info, cfg) -> dict:
        from ..data.text import text_args
        from ..words import RULES
        args = text_args(cfg.data.args)
        return {"kind": "text", "tokenizer": args["tokenizer"], "rule": RULES[args["tokenizer"]],
                "vocab": list(info.vocab), "unknown_id": 1, "padding_id": 0, "max_len": args["max_len"],
                "in_graph": "none: the ids and lengths as given"}

    def dynamic_axes(self) -> list:
        return [{0: "batch", 1: "length"}, {0: "batch"}]

    def held_out(self, test, info, n: int):
        from ..data.text import pad   # (token ids padded to the longest of them, lengths)
        return pad(test.ids, test.starts, test.lengths, torch.arange(min(n, len(test))))

    def reference(self, predictor, x):
        from ..data.text import TextData
        tokens, lengths = x
        inside = torch.arange(tokens.shape[1]) < lengths.unsqueeze(1)
        return predictor.predict_encoded(TextData(tokens[inside], lengths, torch.zeros_like(lengths)))
