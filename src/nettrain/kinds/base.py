"""What every input kind answers (kinds/__init__.py): the defaults are a tensor kind's, one fixed-shape input per
example, predicted in memory and exported as it is; and the Predictions a kind's predict returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import NettrainError
from .evidence import examples, predictions


@dataclass
class Predictions:
    """Model outputs for a batch of inputs: class probabilities (classification) or values (regression)."""
    probs: Optional[torch.Tensor]
    values: Optional[torch.Tensor]
    classes: Optional[list]
    multilabel: bool = False   # probs: each label's own probability (sigmoid), several may apply

    @property
    def indices(self) -> list:
        """Per input its class, or (multi-label) the list of its labels above probability 0.5."""
        if self.multilabel:
            return [[j for j, p in enumerate(row) if p > 0.5] for row in self.probs.tolist()]
        return self.probs.argmax(1).tolist()

    @property
    def labels(self) -> list:
        if self.multilabel:
            return [[self.classes[j] for j in row] for row in self.indices]
        return [self.classes[i] for i in self.indices]

    def topk(self, k: int = 3) -> list:
        """Per input, [(class name, probability), ...] best first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise NettrainError(f"topk takes the number of classes to list per input, at least 1, got {k!r}")
        p, i = self.probs.topk(min(k, self.probs.shape[1]), dim=1)
        return [[(self.classes[c], float(q)) for q, c in zip(ps, cs)] for ps, cs in zip(p.tolist(), i.tolist())]

    def __len__(self):
        return len(self.probs if self.probs is not None else self.values)


class Kind:
    name = ""
    unit = "ex"         # what the speed counts: "img/s" on an image run, "texts/s" on a text one
    model = "mlp"       # the built-in model of `--model auto` (the default); None: the user must give one
    # the training settings a built-in model (by name) takes on this kind's data where the user set none
    # ({"section.field": value}; training.py's _with_kind_defaults); each kind's module says how they were chosen
    training: dict = {}
    images = False      # uint8 images: sample grids, TTA, channels_last, flattening, bf16 under precision auto
    traceable = True    # a batch is one tensor of a fixed shape per example: TensorBoard's graph, export
    input_names = ["inputs"]   # the exported graph's inputs
    fixed_shape = True  # every input has the recorded shape: built-in models, summaries (not a collate function's)
    record_fields = ()  # DataInfo's optional fields this kind's record holds (engine/checkfields.py): dtype (token
                        # ids), collate, vocab, table; the others must be null
    reads = None        # what `nettrain predict RUN ARGS` reads (cli.py): "files" (image files and folders),
                        # "rows" (--file CSV rows) or "texts" (arguments or --file lines); None: the Python API only

    # ---- predict ---------------------------------------------------------------------------------------
    def batch(self, info, inputs) -> torch.Tensor:
        """What a user has (arrays, files, rows...) as one batch tensor, preprocessed as in training."""
        raise NotImplementedError

    def predict(self, predictor, inputs, batch_size: int, collate_fn=None):
        """Predictions of `inputs` (predictor.py runs them): by default one tensor, run in memory in batches."""
        return predictor.predict_tensor(self.batch(predictor.info, inputs), batch_size)

    def describe(self, data, cfg, n: int) -> Optional[str]:
        """`nettrain show` of data that is not drawn as images: its splits, classes and statistics in words, and
        its first `n` training examples as the model reads them; None: nothing to show (show.py says what does)."""
        return None

    def summary_inputs(self, info) -> Optional[tuple]:
        """One made-up batch for `nettrain summary RUN` when the model takes more than one tensor of the recorded
        shape; None: a batch of one input of that shape."""
        return None

    def evaluation_data_refusal(self, data) -> Optional[str]:
        """Why `model.evaluate(data=...)` cannot take `data` for this kind, or None."""
        return None

    def evaluate_given(self, predictor, data, batch_size: Optional[int], collate_fn) -> Optional[dict]:
        """`model.evaluate(data=...)` done this kind's own way, or None for predictor.py's (arrays in memory)."""
        return None

    def load_for_model(self, cfg, info):
        """The dataset of `cfg` (data section) read as the trained model `info` reads it: a text file with the
        model's own vocabulary, a table with its encodings (not learned again from the data)."""
        from ..data import load_data
        return load_data(cfg, info.table)   # a table's encodings, not learned again (None for other kinds)

    # ---- training --------------------------------------------------------------------------------------
    def example(self, data):
        """A real first batch input for the model check (wiring.py) when zeros of the recorded shape would not do:
        token ids (integers); None otherwise."""
        return data.train.x[:2] if data.info.dtype is not None else None

    # ---- the report (evidence.py) ----------------------------------------------------------------------
    def evidence(self, predictor, test) -> dict:
        """What predictions.npz holds of the `test` split: task, kind, and the predictions' arrays."""
        x, y = examples(test)
        return predictions(predictor, x, y)

    # ---- export ----------------------------------------------------------------------------------------
    def export_refusal(self, info) -> Optional[str]:
        return None

    def input_spec(self, info) -> dict:
        dtype = "int64" if info.dtype is not None else "float32"
        return {"name": "inputs", "dtype": dtype, "shape": [None, *info.shape],
                "what": f"{dtype} {'token ids' if info.dtype else 'feature rows'} N x {' x '.join(map(str, info.shape))}"}

    def preprocessing(self, info, cfg) -> dict:
        return {"kind": self.name, "in_graph": "none (the rows as given)"}

    def graph_prep(self, info, cfg) -> nn.Module:
        """The preprocessing inside an exported graph: what a user has -> the model's input."""
        return nn.Identity()

    def dynamic_axes(self) -> list:
        """Per graph input, its axes that vary (index -> name): the batch axis."""
        return [{0: "batch"}]

    def held_out(self, test, info, n: int):
        """The test split's first `n` inputs as the exported graph takes them: a tensor, or a tuple of them."""
        x = test.x[:n]
        return x if info.dtype is not None else x.float()

    def reference(self, predictor, x):
        """nettrain's own Predictions of held-out `x` (export checks the written file against them)."""
        return predictor.predict(x)


SHOWN_COLUMNS = 8   # features or columns in `nettrain show`'s rows: about one terminal width


def split_targets(data) -> dict:
    """{"train": targets, "val": ... (only when it is a split of its own), "test": ...} of a Data."""
    held = {"val": data.val.y} if data.val is not None and data.val is not data.test else {}
    return {"train": data.train.y, **held, "test": data.test.y}


def class_table(classes: list, splits: dict) -> list:
    """Lines of a table of each class's examples per split ({"train": class indices tensor, ...}): count and share."""
    from ..report.columns import text_table   # imported when shown: nothing of the report at start-up
    counts = {name: torch.bincount(y.long(), minlength=len(classes)).tolist() for name, y in splits.items()}
    rows = [[str(c)[:24]] + [f"{counts[s][k]:,} ({counts[s][k] / max(1, len(splits[s])):.1%})" for s in splits]
            for k, c in enumerate(classes)]
    return text_table(["class", *splits], rows, left=1 + len(splits), indent="  ").splitlines()


def first_batch(data, cfg):
    """Epoch 1's first training batch as training makes it (the config's batch size, seed, shuffle and data
    options), unnormalized and not augmented, on the CPU: what `nettrain show` shows."""
    from ..data import make_batches
    plain = cfg.override({"data.normalize": False, "data.crop_padding": 0, "data.flip": False})
    batches = make_batches(data.train, data.info, plain.data, "cpu", cfg.train.batch_size, train=True,
                           shuffle=cfg.train.shuffle, seed=cfg.train.seed, channels_last=False)
    batches.set_epoch(1)
    return next(iter(batches))
