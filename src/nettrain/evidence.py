"""What the report needs that only the trained model can tell, written at the end of a fit as plain data.

The report (nettrain.report) is built from the run directory alone, without the model or the data, so a fit
records here what its figures need:

    predictions.npz     numpy arrays, no pickled objects (np.load(..., allow_pickle=False)):
        task, kind                  "classification" / "regression", "image" / "vector" / "table" / "text"
        classes                     class names (classification)
        confidence, correct         every evaluated test example's top probability and whether it was right
        shown_*                     test examples spread evenly through the split (images as uint8 NHWC, true,
                                    predicted, probabilities): a split stored by class shows every class
        top_*                       the test examples of highest loss: the most confidently wrong (images, or for a
                                    text run top_texts: the raw strings, clipped, as a fixed-width unicode array)
        boundary_*, points*         2-D inputs: the model's class over a grid, and the test points
        curve_*, points*            1-D regression: the model's curve, and the test points
    model_summary.txt   torchinfo's table of the model (layers, output shapes, parameters, multiply-adds): the one
                        `nettrain summary RUN` prints (layertable.py)

The predictions are the plain model's (no test-time augmentation) on at most MAX_EXAMPLES test examples, in
evaluation batches: one more pass over (part of) the test split. Each input kind makes its part (Kind.evidence, with
the functions of kinds/evidence.py); this module writes the files.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from .errors import ConfigError, NettrainError
from .files import write_file, write_text
from .kinds import kind_of
from .layertable import layer_table
from .runs import RUN_FILES


def record(run, predictor, test, result: dict) -> None:
    """Write predictions.npz and model_summary.txt into `run` (a RunDir) for `predictor`'s model on the `test`
    split, with the fit's own test `result` (loss, accuracy or MSE/MAE: the report's key numbers)."""
    write_text(run.claim(run.path / RUN_FILES["model_summary"]), model_summary(predictor), root=run.path)
    if test is None or len(test) == 0:
        return
    arrays = kind_of(predictor.info).evidence(predictor, test)   # each kind's part: kinds/ (kinds/evidence.py)
    arrays.update({f"test_{k}": np.array(float(result[k])) for k in ("loss", "acc", "mse", "mae") if k in result})

    write_file(run.claim(run.path / RUN_FILES["predictions"]), lambda f: np.savez_compressed(f, **arrays),
               root=run.path)


def layer_summary(predictor, depth: int = 3, device=None) -> str:
    """The layer table of `predictor`'s model on one made-up input of its data's shape (a text model's: a text of a
    few tokens, kinds/text.py), on `device` (the model's own by default): what `nettrain summary RUN` prints."""
    info = predictor.info
    kind = kind_of(info)
    if not kind.fixed_shape:
        raise ConfigError("this run was trained through a collate function, whose inputs have no fixed shape to "
                          "summarize")
    device = device or predictor.device
    inputs = kind.summary_inputs(info)
    if inputs is not None:   # a text model's (tokens, lengths)
        return layer_table(predictor.module, depth, ", ".join(f"{name} {' x '.join(map(str, t.shape))}"
                                                              for name, t in zip(kind.input_names, inputs)),
                           "model of the run", device=device, input_data=[t.to(device) for t in inputs])
    dtype = getattr(torch, info.dtype) if info.dtype else torch.float32   # token ids stay integers
    return layer_table(predictor.module, depth, f"1 x {' x '.join(map(str, info.shape))}", "model of the run",
                       device=device, input_size=(1, *info.shape), dtypes=[dtype])


def model_summary(predictor) -> str:
    """model_summary.txt: the layer table `nettrain summary RUN` prints; a model it cannot trace is named in one
    line instead: the summary is a nicety, the run is whole without it."""
    if not kind_of(predictor.info).fixed_shape:
        return "(no summary: this model takes batches of the user's own making, with no fixed input shape)\n"
    try:
        return layer_summary(predictor) + "\n"
    except NettrainError as e:   # the model's own error on the made-up input
        print(f"warning: model summary skipped ({e})", file=sys.stderr)
        return f"(no summary: {e})\n"
