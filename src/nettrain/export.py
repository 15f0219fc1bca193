"""Shipping a trained run: `nettrain export RUN --format onnx|torchscript`.

The exported graph takes what a user has, with the run's preprocessing inside it: uint8 images N x H x W x C for an
image run (to float, NHWC -> NCHW, (x/255 - mean)/std, flattened when the model was trained so), float32 feature rows
for a vector run (token ids stay int64), numeric table rows with missing cells as NaN (filled and standardized as in
training), a text run's token ids N x L (0 pads) with each text's length N (the vocabulary and the tokenizer's rule go
to the JSON beside the file: words.py reads texts the same way without torch). It outputs class probabilities, or
values in the target's own units. The batch axis is dynamic, and a text model's sequence axis too.

Before the file is put in place it is checked on held-out real inputs (the run's test split) against nettrain's own
float32 predictions at three batch sizes (rtol 1e-3, atol 1e-5); the measured difference and the preprocessing go to
a JSON file beside it (`model.onnx.json`), which `nettrain predict model.onnx` reads without torch (onnxpredict.py).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from . import __version__
from .files import write_file, write_text
from .files import LIMITS, open_read, read_bytes
from .engine.metrics import class_probabilities
from .errors import NettrainError, printable
from .kinds import kind_of
from .runs import RUN_FILES

FORMATS = {"onnx": RUN_FILES["onnx"], "torchscript": RUN_FILES["torchscript"]}   # the default files, in the run
RTOL, ATOL = 1e-3, 1e-5
CHECK_EXAMPLES = 256   # held-out inputs the export is checked on (the test split's first ones)


class ExportError(NettrainError):
    """A run that cannot be exported as asked, or an export that does not compute what nettrain does."""


class Shipped(nn.Module):
    """The trained model with its preprocessing (its input kind's, kinds/) and its output's post-processing: the
    graph that is exported."""

    def __init__(self, model: nn.Module, info, cfg):
        super().__init__()
        self.kind, self.task = kind_of(info), info.task
        self.model, self.prep = model, self.kind.graph_prep(info, cfg)
        target = (info.table or {}).get("target") or {}
        self.unscale = (float(target["mean"]), float(target["std"])) if "std" in target else None

    def forward(self, x, lengths=None):   # lengths: a text model's second input
        out = self.model(self.prep(x), *(() if lengths is None else (lengths,))).to(torch.float32)
        if self.task == "classification":
            return class_probabilities(out)   # a binary head's one logit: [1 - sigmoid, sigmoid]
        if self.unscale is not None:
            out = out * self.unscale[1] + self.unscale[0]
        return out


def input_spec(info) -> dict:
    """What the exported model takes: its input's name, dtype and shape (None: the batch axis), in words too."""
    return kind_of(info).input_spec(info)


def preprocessing(info, cfg) -> dict:
    """The arithmetic the graph does before the model, as plain data (written beside the file)."""
    return kind_of(info).preprocessing(info, cfg)


def _destination(run_dir: Optional[Path], fmt: str, out) -> Path:
    if out is not None:
        return Path(out)
    if run_dir is None:
        raise ExportError("the checkpoint is not in a run directory; give where to write it: --out model.onnx")
    return run_dir / FORMATS[fmt]


def export(path, fmt: str = "onnx", out=None, overwrite: bool = False, model=None, trust_code: bool = False,
           _fixes: Optional[dict] = None, say=None) -> Path:
    """Export the run (or checkpoint) at `path`; returns the file written. `say`: where the one-line notes go."""
    from .api import checkpoint_run_dir, load
    from .runs import RunDir
    say = say or (lambda line: print(line, file=sys.stderr))
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    predictor = load(path, model=model, trust_code=trust_code, _fixes=_fixes)
    info, cfg = predictor.info, predictor.config
    refused = kind_of(info).export_refusal(info)
    if refused:
        raise ExportError(f"cannot export {printable(path)}: {refused}; use nettrain.load(run).predict in Python")
    run_dir = checkpoint_run_dir(path)
    dest = _destination(run_dir, fmt, out)
    meta = dest.with_name(dest.name + ".json")
    for f in (dest, meta):
        if f.exists() and not overwrite:
            raise ExportError(f"{printable(f)} already exists; add --overwrite to replace it, or give another --out")
    shipped = Shipped(predictor.module.float().to(memory_format=torch.contiguous_format), info, cfg).eval().cpu()
    x = _held_out(cfg, info)
    expected = _reference(predictor, x)
    run = RunDir(run_dir) if out is None else None
    if run is not None:   # the run directory's writers take its lock, and claim each file before writing it
        run.lock(command="nettrain export")
    try:
        if run is not None:
            run.claim(dest), run.claim(meta)
        note, check = {}, {}

        def write_and_check(f):   # checked before it replaces anything: a file that disagrees is not kept
            with tempfile.TemporaryDirectory(prefix="nettrain-export-") as private:   # the exporters write paths
                tmp = Path(private) / dest.name
                _write(fmt, shipped, x, tmp, note, say)
                check.update(_check(fmt, tmp, x, expected, dest.name))
                with open_read(tmp, LIMITS["onnx"], "export") as written:
                    shutil.copyfileobj(written, f)
        write_file(dest, write_and_check, root=dest.parent)
        record = {"format": fmt, "file": dest.name, "input": input_spec(info),
                  "output": {"name": "probabilities" if info.task == "classification" else "values",
                             "what": "class probabilities (softmax)" if info.task == "classification"
                             else "predicted values in the target's units"},
                  "task": info.task, "classes": info.classes, "preprocessing": preprocessing(info, cfg),
                  "check": check, "exporter": note.get("exporter", fmt), "model": cfg.model.name,
                  "source": str(Path(path).name), "nettrain_version": __version__}
        write_text(meta, json.dumps(record, indent=2), root=meta.parent)
    finally:
        if run is not None:
            run.unlock()
    say(f"nettrain: exported {printable(dest)} ({note.get('exporter', fmt)}); checked on {check['examples']} "
        f"held-out inputs at batch sizes {check['batch_sizes']}: max difference {check['max_abs_diff']:.2e} "
        f"(rtol {RTOL:g}, atol {ATOL:g}); preprocessing in {printable(meta.name)}")
    return dest


def _held_out(cfg, info):
    """Real inputs the run did not train on, as the exported model takes them: the test split's first ones."""
    if cfg.data.name == "arrays":
        raise ExportError("this run was trained on arrays given to nettrain.fit, which the run does not keep, so the "
                          "export cannot be checked on held-out inputs; train on a named dataset to export")
    test = kind_of(info).load_for_model(cfg.data, info).test
    if test is None or not len(test):
        raise ExportError("the run's dataset has no test split to check the export on")
    return kind_of(info).held_out(test, info, CHECK_EXAMPLES)


def _reference(predictor, x) -> np.ndarray:
    """nettrain's own predictions of `x` (Predictor.predict, its preprocessing), in float32 on the CPU: what the
    exported file must compute. (A run's bf16 autocast differs from any float32 graph by more than rtol.)"""
    from .engine.device import resolve_precision
    from .predictor import Predictor
    info, cpu = predictor.info, torch.device("cpu")
    plain = Predictor(predictor.module, info, predictor.config, cpu, resolve_precision("32", cpu, info.kind))
    preds = kind_of(info).reference(plain, x)
    return (preds.probs if preds.probs is not None else preds.values).float().numpy()


def _rows(x, lo: int, hi: int) -> tuple:
    """Inputs lo..hi of the held-out `x` as the graph takes them: a text batch is padded to its own longest text
    (so the check varies the sequence axis too)."""
    if isinstance(x, tuple):
        tokens, lengths = x[0][lo:hi], x[1][lo:hi]
        return tokens[:, :max(1, int(lengths.max()))], lengths
    return (x[lo:hi],)


def _count(x) -> int:
    return len(x[1]) if isinstance(x, tuple) else len(x)


def _write(fmt: str, shipped: nn.Module, x, tmp: Path, note: dict, say):
    # two examples, padded as wide as all of them: torch.export specializes an axis it sees at size 1
    example = (x[0][:2], x[1][:2]) if isinstance(x, tuple) else (x[:2],)
    if fmt == "torchscript":
        with torch.no_grad(), _quiet():
            traced = torch.jit.trace(shipped, example)
        traced.save(str(tmp))
        note["exporter"] = "torchscript (torch.jit.trace)"
        return
    names = shipped.kind.input_names
    output = "probabilities" if shipped.task == "classification" else "values"
    axes = dict(zip(names, shipped.kind.dynamic_axes()))
    dims = {}   # one torch.export.Dim per axis name: the inputs' batch axes are one and the same
    dynamic = tuple({i: dims.setdefault(d, torch.export.Dim(d)) for i, d in a.items()} for a in axes.values())
    try:
        with _quiet():
            torch.onnx.export(shipped, example, str(tmp), dynamo=True, external_data=False, input_names=names,
                              output_names=[output], dynamic_shapes=dynamic)
        fixed = _fixed_axes(tmp, axes)
        if fixed:   # torch 2.14 fixes an LSTM's sequence axis from the second dynamo export of a process on, silently
            raise RuntimeError(f"it fixed the axes {', '.join(fixed)} at the example's sizes")
        note["exporter"] = "onnx (dynamo exporter)"
    except Exception as e:   # a graph torch.export cannot capture: the TorchScript-based exporter traces it
        # its first sentence, without the terminal colours torch.onnx puts in it
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[0].split(". ")[0][:120] \
            if str(e).strip() else type(e).__name__
        say(f"nettrain: the dynamo ONNX exporter failed ({type(e).__name__}: {first}); using the TorchScript-based "
            f"exporter")
        with _quiet():
            torch.onnx.export(shipped, example, str(tmp), dynamo=False, input_names=names, output_names=[output],
                              dynamic_axes={**axes, output: {0: "batch"}})
        note["exporter"] = "onnx (TorchScript-based exporter, the dynamo exporter failed)"


def _fixed_axes(path: Path, axes: dict) -> list:
    """The axes asked to be dynamic ({input: {index: name}}) that the ONNX file at `path` gives a fixed size."""
    import onnx
    graph = onnx.load_from_string(read_bytes(path, LIMITS["onnx"], "export")).graph
    shapes = {i.name: i.type.tensor_type.shape.dim for i in graph.input}
    return [f"{name}[{index}] ({axis})" for name, dims in axes.items() for index, axis in dims.items()
            if name in shapes and index < len(shapes[name]) and not shapes[name][index].dim_param]


@contextlib.contextmanager
def _quiet():
    """The exporters print their progress and warn about tracing, in Python and from C++ straight to file descriptor
    2 (the TorchScript-based exporter's "shape inference of prim::PackPadded type is missing" for an LSTM, whose
    export the check then proves right); the command says one line of its own instead. An exception still comes
    out, as the exception it is."""
    import warnings
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 2)
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def batch_sizes(n: int) -> list:
    """Three batch sizes the export is checked at: one input, an odd size, and all of them."""
    return sorted({1, min(n, 7), n})


def _check(fmt: str, path: Path, x, expected: np.ndarray, name: str) -> dict:
    """Run the written file on `x` in batches of three sizes; the largest difference from `expected`, or an
    ExportError naming it when it is outside rtol/atol."""
    run = _runner(fmt, path)
    n = _count(x)
    worst, sizes = 0.0, batch_sizes(n)
    for size in sizes:
        try:
            got = np.concatenate([run(*_rows(x, i, i + size)) for i in range(0, n, size)])
        except Exception as e:   # onnxruntime refusing the inputs (a shape the graph fixed): one line, nothing kept
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ExportError(f"the exported {name} fails at batch size {size} ({first}); it was not kept: try "
                              f"--format {'torchscript' if fmt == 'onnx' else 'onnx'}, or report the model") from None
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=RTOL, atol=ATOL):
            diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
            raise ExportError(f"the exported {name} computes otherwise than nettrain at batch size {size} (max "
                              f"difference {diff:.3g}, allowed rtol {RTOL:g} atol {ATOL:g}); it was not kept: try "
                              f"--format {'torchscript' if fmt == 'onnx' else 'onnx'}, or report the model")
        worst = max(worst, float(np.abs(got - expected).max()))
    return {"split": "test", "examples": n, "batch_sizes": sizes, "max_abs_diff": worst, "rtol": RTOL,
            "atol": ATOL, "reference": "nettrain's float32 predictions of the same inputs"}


def _runner(fmt: str, path: Path):
    if fmt == "torchscript":
        with _quiet(), open_read(path, LIMITS["checkpoint"], "export") as f:   # torch.jit.load warns that
            module = torch.jit.load(f).eval()   # TorchScript is deprecated: the format asked for is checked

        def run(*inputs):
            with torch.no_grad():
                return module(*inputs).numpy()
        return run
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking an ONNX export needs onnxruntime; pip install 'nettrain[export]'") from None
    session = ort.InferenceSession(read_bytes(path, LIMITS["onnx"], "export"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda *inputs: session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
