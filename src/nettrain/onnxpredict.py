"""`nettrain predict model.onnx FILES`: an exported model run in onnxruntime, with no torch in the process.

The preprocessing the graph does not hold (reading the files, their channels and size) comes from the JSON written
beside the file by `nettrain export` (export.py); everything else (normalization, layout) is inside the graph. This
module imports numpy, Pillow and onnxruntime only: a machine that serves the model needs no torch.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .errors import DataError, NettrainError, printable
from .files import LIMITS, open_read, read_bytes, read_text


# what `nettrain predict model.onnx ARGS` reads per kind: kinds/' Kind.reads, copied here because nettrain.kinds
# imports torch (its modules build the graphs' preprocessing) and this reader must not; a test keeps them equal
READS = {"image": "files", "table": "rows", "text": "texts"}

# cells read as missing: data/table.py's MISSING (which imports torch with its module); a test keeps them equal
MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}   # data/table.py's MISSING: not imported, nettrain.data loads torch


class OnnxModel:
    """An exported model and its record: `predict(uint8 NHWC images or float rows)` -> probabilities or values."""

    def __init__(self, path):
        self.path = Path(path)
        meta = self.path.with_name(self.path.name + ".json")
        model = read_bytes(self.path, LIMITS["onnx"], "ONNX model")   # a FIFO or a folder: one line, no hang
        try:
            self.meta = json.loads(read_text(meta, LIMITS["json"], "preprocessing record"))
            self.input, self.classes = self.meta["input"], self.meta.get("classes")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise NettrainError(f"{printable(meta)}, the preprocessing record of {printable(self.path.name)}, cannot "
                                f"be read ({type(e).__name__}); export the run again: nettrain export RUN --format "
                                f"onnx") from None
        try:
            import onnxruntime as ort
        except ImportError:
            raise NettrainError("running an ONNX model needs onnxruntime; pip install onnxruntime") from None
        try:
            self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        except Exception as e:   # not an ONNX file, or a damaged one: onnxruntime's own words, one line
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise NettrainError(f"{printable(self.path)} is not a readable ONNX model ({first}); export the run "
                                f"again") from None

    @property
    def kind(self) -> str:
        return self.meta["preprocessing"]["kind"]

    @property
    def reads(self):
        """What the command line holds for this model (READS): "files", "rows", "texts", or None."""
        return READS.get(self.kind)

    def read(self, path) -> np.ndarray:
        """One image file as the graph takes it: uint8 H x W x C, converted and resized as nettrain's reader does."""
        from PIL import Image, UnidentifiedImageError
        p = self.meta["preprocessing"]
        try:
            with open_read(path, LIMITS["image"], "image") as f, Image.open(f) as im:
                im = im.convert("L" if p["channels"] == 1 else "RGB")
                if im.size != (p["width"], p["height"]):
                    im = im.resize((p["width"], p["height"]), Image.BILINEAR)
                arr = np.array(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            reason = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else \
                (e.strerror if isinstance(e, OSError) and e.strerror else str(e))
            raise DataError(f"cannot read image {printable(path)}: {printable(reason)}") from None
        return arr[..., None] if arr.ndim == 2 else arr

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.input["dtype"])
        want = self.input["shape"][1:]
        if list(x.shape[1:]) != want:
            raise DataError(f"{printable(self.path.name)} takes {self.input['what']}, got shape {tuple(x.shape)}")
        return self.session.run(None, {self.input["name"]: x})[0]

    def predict_texts(self, texts: list, batch_size: int = 256) -> np.ndarray:
        """Class probabilities of raw strings: tokenized by the run's own rule and vocabulary (words.py, no torch),
        in batches of consecutive texts, each padded to its longest, as nettrain's predict batches them."""
        from .words import RULES, ids
        p = self.meta["preprocessing"]
        index = {w: i for i, w in enumerate(p["vocab"])}
        tokenizer = p["tokenizer"] if p.get("tokenizer") in RULES else "words"   # older exports: the rule in words
        encoded = [ids(t, index, p["max_len"], tokenizer) for t in texts]
        empty = [i for i, e in enumerate(encoded, 1) if not e]
        if empty:
            raise DataError(f"text {empty[0]} is empty; give texts with at least one word")
        outs = []
        for i in range(0, len(encoded), batch_size):
            part = encoded[i:i + batch_size]
            lengths = np.array([len(e) for e in part], dtype=np.int64)
            tokens = np.zeros((len(part), int(lengths.max())), dtype=np.int64)   # 0: the padding id
            for row, e in enumerate(part):
                tokens[row, :len(e)] = e
            outs.append(self.session.run(None, {"tokens": tokens, "lengths": lengths})[0])
        return np.concatenate(outs)

    def topk(self, probs: np.ndarray, k: int) -> list:
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[c], float(row[c])) for c in idx] for row, idx in zip(probs, order)]

    def read_rows(self, path) -> np.ndarray:
        """A CSV file's rows as the graph takes them: the exported columns by name, in their order, as float32; a
        text column's cell as its level's index (-1: a level training never saw), a missing cell as NaN (the graph
        fills it as training did). Other columns (the target) are ignored."""
        columns = self.input["columns"]
        coded = {c: {level: float(i) for i, level in enumerate(levels)}
                 for c, levels in self.input.get("levels", {}).items()}
        name = printable(path)
        try:
            with open_read(path, LIMITS["csv"], "CSV file", text=True, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                absent = [c for c in columns if c not in (reader.fieldnames or [])]
                if absent:
                    raise DataError(f"{name} lacks the column(s) {', '.join(map(repr, absent))}; the model takes the "
                                    f"columns {', '.join(columns)}")
                rows = [[_cell(row[c], c, name, reader.line_num, coded.get(c)) for c in columns] for row in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"cannot read {name} ({type(e).__name__}: {e}); give a UTF-8 CSV file with a header "
                            f"row") from None
        if not rows:
            raise DataError(f"{name} has no rows to predict")
        return np.array(rows, dtype=np.float32)


def _cell(value, column: str, name: str, line: int, levels=None) -> float:
    if value is None or value.strip().lower() in MISSING:
        return math.nan
    if levels is not None:   # a text column: its level's index, as data/table.py's features() looks it up
        return levels.get(value.strip(), -1.0)
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise DataError(f"{name} line {line}, column {column!r}: {value!r} is not a number; the model takes numbers "
                        f"(or an empty cell for a missing one)")
    return x
