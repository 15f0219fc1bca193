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

# Bounds on the sizes model.onnx.json gives, checked before anything of that size is allocated (a width of 200000
# made Pillow's resize ask for 40 GB): engine/checkfields.py's, copied (it imports torch); a test keeps them equal
MAX_INPUT_VALUES = 2 ** 25   # one input's values: 3x3344x3344 images
MAX_IMAGE_SIZE = 16384       # an image's height or width
MAX_OUTPUTS = 1_000_000      # classes
MAX_VOCAB = 2 ** 24          # a text model's tokens (its embedding's rows)
MAX_TEXT_LEN = 2 ** 24       # max_len: tokens kept of a text
# input.dtype -> the graph input's element type, as onnxruntime names it
DTYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)", "int64": "tensor(int64)"}


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
            what = f"it has no {e}" if isinstance(e, KeyError) else "it is not a JSON object" \
                if isinstance(e, TypeError) else type(e).__name__
            raise NettrainError(f"{printable(meta)}, the preprocessing record of {printable(self.path.name)}, cannot "
                                f"be read ({what}); export the run again: nettrain export RUN --format onnx") from None
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
        problem = sidecar_problem(self.meta, self.session)
        if problem:
            raise NettrainError(f"{printable(meta)}, the preprocessing record of {printable(self.path.name)}: "
                                f"{problem}; export the run again: nettrain export RUN --format onnx")

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
        return self.run({self.input["name"]: x})

    def run(self, feeds: dict) -> np.ndarray:
        """The graph's first output for `feeds`; onnxruntime's failure (a graph that cannot take them) in one line."""
        try:
            return self.session.run(None, feeds, _quiet())[0]
        except Exception as e:   # onnxruntime's own exception types: its words, one line
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise NettrainError(f"{printable(self.path.name)} failed on its inputs ({first}); export the run again: "
                                f"nettrain export RUN --format onnx") from None

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
            outs.append(self.run({"tokens": tokens, "lengths": lengths}))
        return np.concatenate(outs)

    def topk(self, probs: np.ndarray, k: int) -> list:
        if probs.ndim != 2 or probs.shape[1] != len(self.classes):   # a graph whose output width is not fixed
            raise NettrainError(f"{printable(self.path.name)} gives {probs.shape[-1]} outputs where its .json names "
                                f"{len(self.classes)} classes; export the run again: nettrain export RUN --format "
                                f"onnx")
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


# ---- model.onnx.json, checked against the graph before anything is read or allocated ------------------------------

def sidecar_problem(meta: dict, session) -> "str | None":
    """What is wrong with model.onnx.json's fields (export.py writes them) for the graph in `session`, in words,
    or None: every field the predictor reads, of its type, within its bounds and agreeing with the graph."""
    inp, prep = meta.get("input"), meta.get("preprocessing")
    if not isinstance(inp, dict):
        return f"input must be an object (name, dtype, shape), got {_json_kind(inp)}"
    if not isinstance(prep, dict) or not isinstance(prep.get("kind"), str):
        return "preprocessing must be an object with a kind (image, table, text...), got " + \
            (_json_kind(prep) if not isinstance(prep, dict) else f"kind {_json_kind(prep.get('kind'))}")
    graph = session.get_inputs()
    kind = prep["kind"]
    found = _input_problem(inp, graph[0], kind) or _classes_problem(meta, session.get_outputs()[0], kind)
    if found:
        return found
    if kind == "image":
        return _image_problem(prep, inp["shape"])
    if kind == "text":
        return _text_problem(prep, [g.name for g in graph], session)
    if kind == "table":
        return _table_problem(inp)
    return None


def _input_problem(inp: dict, graph, kind: str) -> "str | None":
    """input.name, dtype and shape: the graph's own (onnxruntime knows them); a shape's fixed sizes bounded."""
    name, dtype, shape = inp.get("name"), inp.get("dtype"), inp.get("shape")
    if name != graph.name:
        return f"input.name must be the graph's input {graph.name!r}, got {name!r:.40}"
    if not isinstance(inp.get("what"), str):
        return "input.what must be a string (the input in words)"
    if not isinstance(dtype, str) or DTYPES.get(dtype) != graph.type:
        want = [d for d, t in DTYPES.items() if t == graph.type]
        return f"input.dtype must be the graph's {want[0] if want else graph.type!r}, got {dtype!r:.40}"
    sizes = shape[1:] if isinstance(shape, list) and shape else None
    if sizes is None or len(shape) != len(graph.shape) or not all(
            (_count(n) and 1 <= n <= MAX_INPUT_VALUES) or (n is None and kind == "text") for n in sizes):
        return f"input.shape must be [null, ...] with {len(graph.shape) - 1} positive sizes, got {shape!r:.60}"
    fixed = [n for n in sizes if n is not None]
    if math.prod(fixed) > MAX_INPUT_VALUES:
        return f"input.shape {shape} makes inputs of {math.prod(fixed):,} values, more than the limit of " \
               f"{MAX_INPUT_VALUES:,}"
    if any(isinstance(g, int) and g != n for n, g in zip(sizes, graph.shape[1:])):
        return f"input.shape {shape} is not the graph's {graph.shape}"
    return None


def _classes_problem(meta: dict, output, kind: str) -> "str | None":
    """classes: one name per output of a classifier (what topk prints); null for a regression model's values."""
    classes, task = meta.get("classes"), meta.get("task")
    if task not in ("classification", "regression"):
        return f"task must be classification or regression, got {task!r:.40}"
    if task == "regression":
        if classes is not None:
            return "classes must be null for a regression model"
        return None if kind == "table" else f"nettrain predict model.onnx reads class probabilities for {kind} " \
                                            f"models, and this one is a regression model"
    width = output.shape[1] if len(output.shape) == 2 and isinstance(output.shape[1], int) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or \
            not 1 <= len(classes) <= MAX_OUTPUTS:
        return f"classes must be a list of class names (strings), got {_json_kind(classes)}"
    if width is not None and len(classes) != width:
        return f"classes names {len(classes)} classes, but the graph has {width} outputs"
    return None


def _image_problem(prep: dict, shape: list) -> "str | None":
    """channels, height, width: what the reader converts and resizes each image to, the graph's input shape."""
    c, h, w = prep.get("channels"), prep.get("height"), prep.get("width")
    for key, value in (("height", h), ("width", w)):
        if not _count(value) or not 1 <= value <= MAX_IMAGE_SIZE:
            return f"preprocessing.{key} must be an integer from 1 to {MAX_IMAGE_SIZE}, got {value!r:.40}"
    if c not in (1, 3) or not _count(c):
        return f"preprocessing.channels must be 1 (grayscale) or 3 (RGB), got {c!r:.40}"
    if shape[1:] != [h, w, c]:
        return f"preprocessing's height x width x channels {h}x{w}x{c} is not the input.shape {shape}"
    return None


def _text_problem(prep: dict, names: list, session) -> "str | None":
    """vocab (id = position), max_len, tokenizer: what predict_texts encodes with; the ids must fit the graph's
    embedding, tried with the largest."""
    vocab, max_len, tokenizer = prep.get("vocab"), prep.get("max_len"), prep.get("tokenizer")
    if names != ["tokens", "lengths"]:
        return f"a text model's graph takes tokens and lengths, this one takes {', '.join(names)}"
    if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab) or not 2 <= len(vocab) <= MAX_VOCAB:
        return f"preprocessing.vocab must be a list of 2 to {MAX_VOCAB:,} token strings (the padding and unknown " \
               f"tokens first), got {_json_kind(vocab)}"
    if "max_len" not in prep or max_len is not None and (not _count(max_len) or not 1 <= max_len <= MAX_TEXT_LEN):
        return f"preprocessing.max_len must be null or an integer from 1 to {MAX_TEXT_LEN:,}, got {max_len!r:.40}"
    if tokenizer is not None and not isinstance(tokenizer, str):
        return f"preprocessing.tokenizer must be a string (words or chars), got {_json_kind(tokenizer)}"
    try:
        session.run(None, {"tokens": np.array([[len(vocab) - 1]], dtype=np.int64),
                           "lengths": np.ones(1, dtype=np.int64)}, _quiet())
    except Exception:   # onnxruntime's Gather: "indices element out of data bounds"
        return f"preprocessing.vocab holds {len(vocab):,} tokens, more than the model's embedding takes"
    return None


def _table_problem(inp: dict) -> "str | None":
    """input.columns (the CSV columns read, in order) and input.levels (a text column's values, by index)."""
    columns, levels = inp.get("columns"), inp.get("levels", {})
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or \
            len(columns) != inp["shape"][1]:
        return f"input.columns must be a list of {inp['shape'][1]} column names, got {_json_kind(columns)}"
    if not isinstance(levels, dict) or not all(
            c in columns and isinstance(v, list) and all(isinstance(x, str) for x in v) for c, v in levels.items()):
        return "input.levels must map text columns among input.columns to lists of their values"
    return None


def _quiet():
    """onnxruntime's options for a run that logs nothing: a failure is said in one line, by nettrain."""
    import onnxruntime as ort
    options = ort.RunOptions()
    options.log_severity_level = 4   # fatal only: its error lines (colored, several per failure) are not printed
    return options


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_kind(v) -> str:
    """A JSON value's kind in words, for a message."""
    if isinstance(v, list):
        return f"a list of {len(v)}"
    return {dict: "an object", str: "a string", bool: "true/false", type(None): "null"}.get(type(v), type(v).__name__)
