"""The `nettrain` command: parse arguments, call the API, print results and errors. No logic of its own.

    nettrain fit [--config FILE] [--dataset mnist --model cnn --epochs 3 ...] [--optim.momentum 0.9 ...]
    nettrain fit --resume RUN_DIR [--model SPEC] [--trust-code]
    nettrain fit --nproc N ...                 (N processes: torchrun + DDP; or torchrun -m nettrain fit ...)
    nettrain fit --nproc N --max-restarts K ... (a process that dies: all restarted, the run resumed)
    nettrain evaluate RUN_DIR_OR_CHECKPOINT [--data-dir DIR] [--model SPEC] [--trust-code]
    nettrain predict RUN_DIR_OR_CHECKPOINT FILE_OR_FOLDER... [--topk 3] [--json] [--model SPEC] [--trust-code]
    nettrain predict RUN_DIR_OR_CHECKPOINT --file rows.csv [--json]       (a model trained on a table)
    nettrain report RUN_DIR
    nettrain list
    nettrain summary RUN | --dataset NAME --model NAME [--shape 3,32,32 --classes 10]     (the layer table)
    nettrain lr-find [fit's flags] [--out lr_find.png]          (fit --lr auto runs it and trains with its suggestion)
    nettrain export RUN [--format onnx|torchscript] [--out PATH]
    nettrain compare RUN [RUN ...] [--out DIR]               (a table, compare.png and compare.html)
    nettrain sweep [--runs RUNS.yaml] --KEY a,b [--sweep-dir DIR] -- [fit's flags]  (a fit per run, per combination)
    nettrain tune --KEY loguniform:a:b [--KEY choice:x,y ...] [--trials N] -- [fit's flags]   (an Optuna search)
    nettrain show --dataset NAME [--augmented] [--n 64] [--out FILE.png] [--data.crop_padding 4 ...]   (samples)
    nettrain predict model.onnx FILE_OR_FOLDER...                 (onnxruntime, without torch)
    nettrain mlflow-sync RUN [--run.mlflow URI]              (a run directory uploaded to MLflow; fit: --run.mlflow)

A user error (`NettrainError`) prints one line and exits with code 2; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from .config import SHORTCUTS, parse_value
from . import signals
from .errors import NettrainError, clean, clean_lines


def say(text, file=None):
    """Print `text` with every line `clean`: what the commands print holds class names, config values and texts
    read from files (a run folder from elsewhere), which must not reach the terminal as escape sequences."""
    print(clean_lines(text), file=file or sys.stdout)


def error_line(e) -> str:
    """A user error as the one line the command prints: its message `clean`, a newline in it escaped too."""
    return f"nettrain: error: {clean(e)}"


@contextmanager
def warnings_as_lines():
    """Python's warnings (Pillow's DecompressionBombWarning, matplotlib's missing glyphs, torch's) as one line each,
    `nettrain: warning: <message>`, each said once: not the library's file and source line, and a message quoting
    a file's text (a glyph's character) `clean`."""
    import warnings
    said = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = clean(" ".join(str(message).split()))
        if text not in said:
            said.add(text)
            print(f"nettrain: warning: {text}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def learning_rate(text: str):
    """--lr: a number, or auto (the lr finder chooses, lrfind.py); argparse names this function in its refusal."""
    return text if text == "auto" else float(text)


# flag -> (config key, type, help)
FIT_FLAGS = {
    "--config": (None, str, "YAML config file (a recipe, or a run's config.yaml to repeat it)"),
    "--resume": (None, str, "continue the run in this directory from its last checkpoint"),
    "--dataset": ("dataset", str, "dataset name (nettrain list)"),
    "--data-dir": ("data_dir", str, "data directory (default: $NETTRAIN_DATA, else ./data); for csv, the file"),
    "--target": ("target", str, "csv: the column to predict (data.target)"),
    "--model": ("model", str, "model name, package.module:Class or path/file.py:Class (default auto: cnn for "
                              "images, mlp for vectors and tables, fasttext for texts)"),
    "--optimizer": ("optimizer", str, "sgd, adam, adamw, rmsprop, adagrad, adadelta, muon, or a torch.optim.Optimizer "
                                      "class: torch.optim.ASGD, package.module:Class, path/file.py:Class "
                                      "(--optim.args '{t0: 1000}')"),
    "--lr": ("lr", learning_rate, "learning rate, or auto: run the lr finder first (nettrain lr-find) and train "
                                  "with its suggestion"),
    "--momentum": ("momentum", float, "momentum (sgd, rmsprop)"),
    "--weight-decay": ("weight_decay", float, "weight decay"),
    "--scheduler": ("scheduler", str, "none, step, cosine, onecycle, or an LRScheduler class by import path "
                                      "(--sched.args '{step_size: 5}')"),
    "--epochs": ("epochs", int, "number of epochs"),
    "--patience": ("patience", int, "stop when the validation metric has not improved for N validated epochs "
                                    "(needs a validation split: --data.val_fraction 0.1)"),
    "--batch-size": ("batch_size", int, "batch size"),
    "--seed": ("seed", int, "random seed"),
    "--loss": ("loss", str, "cross-entropy, nll, bce, mse, l1 or package.module:function"),
    "--device": ("device", str, "auto, cpu, cuda, cuda:N, mps"),
    "--precision": ("precision", str, "auto, 32, bf16-mixed, 16-mixed"),
    "--image-size": ("image_size", int, "resize image folders to this size"),
    "--run-dir": ("run_dir", str, "run directory (default runs/<time>-<dataset>-<model>)"),
    "--save-every": ("save_every", int, "keep a checkpoint every N epochs: RUN/epoch_003.pt, ... (default 0: none)"),
    "--keep-best": ("keep_best", int, "of the per-epoch checkpoints (each epoch's without --save-every), keep the K "
                                      "best by the metric that chooses best.pt"),
}
SWITCHES = {"--download": ("download", "let torchvision download the dataset if missing"),
            "--overwrite": ("overwrite", "replace an existing run directory"),
            "--compile": ("compile", "torch.compile the model"),
            "--sync-batchnorm": ("sync_batchnorm", "under torchrun / --nproc: BatchNorm statistics of the global batch "
                                                   "(SyncBatchNorm; GPUs only)")}


DEBUG_HELP = "on an error, print the whole traceback instead of one line (also: NETTRAIN_DEBUG=1)"
TRUST_HELP = ("import the user code (model class, loss, optimizer) that the checkpoint or run directory names, "
              "as if you had written it: only for files whose source you trust")


def _model_flags(p):
    """A checkpoint is data (trust.py): its own user code runs only when the user says so."""
    p.add_argument("--model", help="your model class, path/file.py:Class or package.module:Class, to load the "
                                   "weights into (instead of the class the checkpoint names)")
    p.add_argument("--trust-code", action="store_true", help=TRUST_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The command line: each command's parser, as COMMANDS declares them (the registry at the end of this file)."""
    p = argparse.ArgumentParser(prog="nettrain", description="Train, evaluate and run PyTorch models in one command.")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for command in COMMANDS.values():
        command.parser(sub)
    for command in sub.choices.values():   # also after the command; SUPPRESS keeps a --debug given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return p


def _fit_parser(sub):
    fit = _fit_flags(sub.add_parser("fit", help="train a model", epilog="Any other config key: --section.key VALUE "
                                    "(e.g. --optim.nesterov true --model.args.hidden '[256, 64]'; --data.limit N "
                                    "trains on a seeded subset of N training examples, for a quick try); see "
                                    "`nettrain list`."))
    fit.add_argument("--nproc", type=int, help="train in N processes on this machine (torchrun + DDP; one per GPU); "
                                               "--batch-size is then the global batch")
    fit.add_argument("--max-restarts", type=int, help="with --nproc: when a process dies, restart them all up to K "
                                                      "times, resuming the run from its last checkpoint (torchrun's "
                                                      "--max-restarts)")


def _evaluate_parser(sub):
    ev = sub.add_parser("evaluate", help="evaluate a trained model on its test split")
    ev.add_argument("checkpoint", help="run directory or checkpoint file")
    _model_flags(ev)
    ev.add_argument("--data-dir", help="evaluate on the test split found in this directory instead")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--precision", choices=["auto", "32", "bf16-mixed", "16-mixed"],
                    help="compute in this precision (default: the run's own; 32 as an exported model does)")


def _predict_parser(sub):
    pr = sub.add_parser("predict", help="predict the classes of image files, a table's rows, or texts (a text run)",
                        description="Each input is read as training read it: images to the run's channels and size, "
                                    "then normalized with the per-channel mean and std in the checkpoint's data "
                                    "section (torch.load(best.pt, weights_only=True)['data']); "
                                    "nettrain.load(RUN).preprocess "
                                    "does the same in Python.")
    pr.add_argument("checkpoint", help="run directory or checkpoint file, or a model.onnx from nettrain export")
    pr.add_argument("inputs", nargs="*", help="image files or folders of images; CSV files of rows (tables); the "
                                              "texts themselves (a text run)")
    pr.add_argument("--file", action="append", default=[], help="tables: a CSV file of rows; text runs: a file of "
                                                                "texts, one per line (repeatable)")
    pr.add_argument("--topk", type=int, default=None, help="classes to show per input (default 3; tables 1)")
    pr.add_argument("--json", action="store_true", help="print JSON for machines")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--precision", choices=["auto", "32", "bf16-mixed", "16-mixed"],
                    help="compute in this precision (default: the run's own; 32 as an exported model does)")
    _model_flags(pr)


def _report_parser(sub):
    rp = sub.add_parser("report", help="draw a run's figures and write its report.html (a self-contained page)")
    rp.add_argument("run", help="run directory")


def _list_parser(sub):
    sub.add_parser("list", help="list datasets, models, optimizers, losses, schedulers and metrics")


def _fit_flags(p):
    for flag, (_, typ, help_) in FIT_FLAGS.items():
        p.add_argument(flag, type=typ, help=help_)
    for flag, (_, help_) in SWITCHES.items():
        p.add_argument(flag, action="store_true", default=None, help=help_)
    p.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    return p


def parse_extra(extra: list) -> dict:
    """['--optim.momentum', '0.9', '--train.tta=true', 'model.args.hidden=[10]'] -> {key: value}."""
    out, i = {}, 0
    while i < len(extra):
        arg = extra[i]
        key = arg[2:] if arg.startswith("--") else arg
        if "=" in key:
            key, value = key.split("=", 1)
        elif arg.startswith("--") and i + 1 < len(extra):
            i += 1
            value = extra[i]
        else:
            raise NettrainError(f"unrecognized argument {arg!r}; options are --flag VALUE or --section.key VALUE "
                                f"(see nettrain fit --help)")
        key = key.replace("-", "_") if "." not in key else key
        out[key] = parse_value(value)
        i += 1
    return out


def fit_options(args, extra) -> dict:
    options = {}
    for flag, (key, _, _) in FIT_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if key and value is not None:
            options[key] = value
    for flag, (key, _) in SWITCHES.items():
        if getattr(args, flag[2:].replace("-", "_")):
            options[key] = True
    options.update(parse_extra(extra))
    return options


def cmd_fit(args, extra) -> int:
    from . import api
    from .trust import RESUME_CLI_FIXES
    options = fit_options(args, extra)
    api.fit(args.config, resume=args.resume, trust_code=args.trust_code, _fixes=RESUME_CLI_FIXES, tune_process=True,
            **options)
    return 0


def _fit_in_processes(nproc: int, argv: list, max_restarts=None) -> int:
    """`fit --nproc N [--max-restarts K]`: the same command without them, in N processes started by torchrun's own
    entry point; in this one when N is 1 (and nothing is to be restarted) or this process is already one of
    torchrun's."""
    from .engine import distributed
    if nproc is None:
        raise NettrainError("--max-restarts restarts the processes of --nproc N; give --nproc too (under torchrun: "
                            "torchrun --max-restarts=K -m nettrain fit ...)")
    if nproc < 1:
        raise NettrainError(f"--nproc must be at least 1 (the number of processes to train in), got {nproc}")
    if max_restarts is not None and max_restarts < 0:
        raise NettrainError(f"--max-restarts must be 0 or more (how often to restart the processes), got "
                            f"{max_restarts}")
    if max_restarts is not None and distributed.is_launched():
        raise NettrainError("--max-restarts is torchrun's to give when torchrun starts nettrain: torchrun "
                            "--max-restarts=K -m nettrain fit ...")
    rest = _without(_without(argv, "--nproc", 4), "--max-restarts", 4)
    if (nproc == 1 and not max_restarts) or distributed.is_launched():
        args, extra = build_parser().parse_known_args(rest)
        return cmd_fit(args, extra)
    return distributed.launch(nproc, rest, max_restarts or 0)


def _without(argv: list, flag: str, shortest: int) -> list:
    """`argv` without `flag` and its value, as argparse accepts them: --flag N, --flag=N and unambiguous prefixes
    of at least `shortest` characters (--npr N)."""
    rest, i = [], 0
    while i < len(argv):
        if flag.startswith(argv[i]) and len(argv[i]) > shortest:
            i += 2
            continue
        if "=" in argv[i] and len(argv[i].split("=")[0]) > shortest and flag.startswith(argv[i].split("=")[0]):
            i += 1
            continue
        rest.append(argv[i])
        i += 1
    return rest


def cmd_evaluate(args) -> int:
    from . import api
    from .trust import CLI_FIXES
    model = api.load(args.checkpoint, model=args.model, device=args.device, trust_code=args.trust_code,
                     _fixes=CLI_FIXES, precision=args.precision)
    result = model.evaluate(data_dir=args.data_dir)
    # printed only: the run directory is fit's record (its confusion_matrix.csv is the test at the end of training)
    say(api.format_report(result, model.classes, "test"))
    return 0


def cmd_predict(args) -> int:
    if _onnx(args):
        return cmd_predict_onnx(args)
    from . import api, inputs
    from .data.images import read_image
    from .kinds import kind_of
    from .trust import CLI_FIXES
    inputs.check_topk(args.topk)
    model = api.load(args.checkpoint, model=args.model, device=args.device, trust_code=args.trust_code,
                     _fixes=CLI_FIXES, precision=args.precision)
    reads = kind_of(model.info).reads   # what the command line holds for this kind: files, CSV rows or texts
    if reads == "rows":
        return _predict_rows(model, args.inputs + args.file, args.topk or 1, args.json)
    if reads == "texts":
        texts = inputs.texts(args.inputs, args.file)
        return _print_texts(texts, model.predict(texts).topk(args.topk or 3), args.json)
    if args.file:
        raise NettrainError("--file gives CSV rows to a table model or texts to a text model; give image files and "
                            "folders as arguments")
    if not args.inputs:
        raise NettrainError("nothing to predict: give image files or folders after the run directory")
    if reads != "files":
        raise NettrainError("predict from files needs a model trained on images; use the Python API for vectors")
    c, h, _ = model.info.shape
    return _predict_images(args, lambda f: read_image(f, c, h), lambda x: model.predict(x).topk(args.topk or 3))


def _predict_images(args, read, topk) -> int:
    """Each image file (folders expanded) read by `read`, ranked by `topk(batch)`: one line a file, or JSON; a file
    that cannot be read is one error line, and the exit code 1."""
    from . import inputs
    files = inputs.image_files(args.inputs, lambda line: say(line, file=sys.stderr))
    if not files:
        raise NettrainError("nothing to predict: give image files or folders after the model")
    images, names, errors = inputs.read_each(files, read, lambda e: say(error_line(e), file=sys.stderr))
    import numpy as np
    results = inputs.ranked("file", names, topk(np.stack(images))) if images else []
    _print_ranked(results, "file", args.json, errors)
    return 1 if errors else 0


def _print_ranked(results: list, key: str, as_json: bool, errors: list = ()):
    """Each input's classes with their probabilities: one line each (its name or text escaped: a newline in it would
    break one-line-per-input, an undecodable byte the encoding), or JSON."""
    from .errors import printable
    if as_json:
        say(json.dumps({"predictions": results, "errors": list(errors)}, indent=2))
        return
    for r in results:
        shown = ", ".join(f"{p['class']} {p['probability']:.1%}" for p in r["predictions"])
        say(f"{printable(r[key] if key == 'file' else clip_words(r[key]))}: {shown}")


def _predict_rows(model, files: list, topk: int, as_json: bool) -> int:
    """One line per row of each CSV file: the class and its probability (or the top k), or the predicted value.
    Every file is read and checked before anything is printed: a bad cell stops the command with one line."""
    from .inputs import row_entry
    if not files:
        raise NettrainError("nothing to predict: give a CSV file of rows (nettrain predict RUN --file rows.csv)")
    done = [(f, model.predict(f)) for f in files]
    results = []
    for f, preds in done:
        rows = preds.topk(topk) if preds.probs is not None else preds.values.tolist()
        results += [row_entry(f, i, row, preds.probs is not None) for i, row in enumerate(rows, 1)]
    return _print_rows(results, as_json)


def _print_rows(results: list, as_json: bool) -> int:
    """Rows' predictions (a table model's, run in torch or in onnxruntime): JSON, or one line per row."""
    from .errors import printable
    if as_json:
        say(json.dumps({"predictions": results, "errors": []}, indent=2))
        return 0
    for r in results:
        shown = ", ".join(f"{p['class']} {p['probability']:.1%}" for p in r["predictions"]) \
            if "predictions" in r else (f"{r['value']:.6g}" if isinstance(r["value"], float) else str(r["value"]))
        say(f"{printable(r['file'])} row {r['row']}: {shown}")
    return 0


def _print_texts(texts: list, tops: list, as_json: bool) -> int:
    """One line per text (its start, cut between words, then its classes), or JSON (the whole text)."""
    from .inputs import ranked
    _print_ranked(ranked("text", texts, tops), "text", as_json)
    return 0


def clip_words(text: str, width: int = 60) -> str:
    """`text`, or its words that fit in `width` characters and an ellipsis: a line names its text without cutting a
    word (one longer than the line is cut)."""
    if len(text) <= width:
        return text
    cut = text[:width].rsplit(" ", 1)[0] if " " in text[:width + 1] else text[:width]
    return cut.rstrip(" ,;:.") + "\u2026"


def cmd_list() -> int:
    from .catalog import LISTED   # the names and their lines as text: no torch to import (catalog.py)
    for title, lines in LISTED:
        print(f"{title}:")
        width = max(len(n) for n in lines)
        for name in sorted(lines):
            print(f"  {name:<{width}}  {lines[name]}")
    print("models also: package.module:Class or path/to/file.py:Class (your own nn.Module, with --model.args.*)")
    print("losses also: package.module:function or path/to/file.py:function")
    print("optimizers' own options are flags: --optim.<keyword> (e.g. --optimizer rmsprop --optim.alpha 0.9)")
    print("optimizers and schedulers also: a torch.optim.Optimizer / LRScheduler class by import path "
          "(torch.optim.ASGD, package.module:Class, path/to/file.py:Class), with --optim.args / --sched.args")
    print(f"config shortcuts: {', '.join(sorted(SHORTCUTS))}")
    return 0


def _print_traceback(e: BaseException):
    """The whole story of a user error for --debug: the exception it was raised from (kept as its context even
    where the one-line message hid it with `from None`), then the error itself."""
    import traceback
    e.__suppress_context__ = False
    traceback.print_exception(e, file=sys.stderr)


def tune_own_process():
    """A training command owns its process, so it tunes it for training (a library call does not, see api.fit):
    OpenMP's wait policy, chosen before torch loads (_omp.py); main() also lets training keep freed memory
    (_malloc.py)."""
    from . import _omp
    _omp.choose_wait_policy(os.environ)


def main(argv=None) -> int:
    try:
        with signals.stop_signals(), warnings_as_lines():   # SIGTERM, SIGHUP: as Ctrl-C (signals.py)
            from ._malloc import tuning_allowed
            with tuning_allowed():   # for the command only: main() called from Python leaves the caller's allocator
                return _main(argv)
    except BaseException as e:   # also Ctrl-C during start-up (imports, data loading): no traceback
        if not isinstance(e, KeyboardInterrupt) and signals.received is None:
            raise
        if os.environ.get("RANK", "0") == "0":   # torchrun's other processes were stopped alike: said once
            print(f"nettrain: {signals.describe(e)}", file=sys.stderr)
        return signals.exit_code(e)


def _main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = COMMANDS.get(args.command)
    if command is not None and command.trains:
        tune_own_process()
    try:
        if command is None:
            parser.print_help()
            return 2
        if command.needs_torch(args):
            import_torch()
        return command.run(args, _rest(parser, command, args, extra), sys.argv[1:] if argv is None else list(argv))
    except NettrainError as e:
        if args.debug or os.environ.get("NETTRAIN_DEBUG", "") not in ("", "0"):
            _print_traceback(e)
        elif os.environ.get("RANK", "0") == "0":   # torchrun's other processes met the same error: said once
            say(error_line(e), file=sys.stderr)
        return 2
    except BrokenPipeError:   # the reader left (`nettrain list | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # Python's exit flush would raise again
        return 141


# ---- shipping: summary, lr-find, export, predict with onnxruntime (summary.py, lrfind.py, export.py, onnxpredict.py)

def _summary_parser(sub):
    sm = sub.add_parser("summary", help="the layer table: output shapes, parameters, multiply-adds (torchinfo)",
                        usage="nettrain summary [RUN | --dataset NAME --model NAME] [--shape C,H,W --classes N] "
                              "[--model.args.KEY VALUE]")
    # RUN (a run directory or checkpoint) comes first and is read from the rest: a positional would take the value
    # of a --model.args.* flag that argparse does not know
    sm.add_argument("--dataset", help="dataset name: its input shape and classes (read from the data unless "
                                      "--shape and --classes give them)")
    sm.add_argument("--data-dir", help="where the dataset's files are (for a dataset whose shape is read from them)")
    sm.add_argument("--model", help="model name or path/file.py:Class (--model.args.* for its arguments)")
    sm.add_argument("--shape", help="the input shape, C,H,W for images or N for vectors (e.g. 3,32,32)")
    sm.add_argument("--classes", type=int, help="the number of outputs (classes)")
    sm.add_argument("--depth", type=int, default=3, help="how deep into nested modules the table goes")
    sm.add_argument("--trust-code", action="store_true", help=TRUST_HELP)


def _lr_find_parser(sub):
    lr = _fit_flags(sub.add_parser("lr-find", help="the learning-rate finder: loss against an exponential lr ramp"))
    lr.add_argument("--out", default="lr_find.png", help="the loss-vs-lr plot (PNG)")
    lr.add_argument("--steps", type=int, default=300, help="steps of the lr ramp")
    lr.add_argument("--start-lr", type=float, default=1e-7, help="the ramp's first lr")
    lr.add_argument("--end-lr", type=float, default=10.0, help="the ramp's last lr")


def _export_parser(sub):
    ex = sub.add_parser("export", help="a run as ONNX or TorchScript, its preprocessing inside the graph")
    ex.add_argument("checkpoint", help="run directory or checkpoint file")
    ex.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    ex.add_argument("--out", help="the file to write (default: model.onnx / model.torchscript.pt in the run)")
    ex.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    _model_flags(ex)


def _show_parser(sub):
    sh = sub.add_parser("show", help="a labelled grid of training samples as a PNG (augmented as training would); "
                                     "for texts and tables, their splits, classes, statistics and first rows",
                        epilog="Any config key: --section.key VALUE (e.g. --data.crop_padding 4 --data.flip true)")
    for flag in ("--config", "--dataset", "--data-dir", "--image-size", "--seed"):
        sh.add_argument(flag, type=FIT_FLAGS[flag][1], help=FIT_FLAGS[flag][2])
    sh.add_argument("--download", action="store_true", default=None, help=SWITCHES["--download"][1])
    sh.add_argument("--augmented", action="store_true", help="after the training-time augmentation the config "
                                                              "gives (data.crop_padding, data.flip)")
    sh.add_argument("--n", type=int, default=None, help="how many samples (default 64 images, 10 texts or rows)")
    sh.add_argument("--out", help="the PNG to write (default: show-DATASET.png in the current folder)")
    sh.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _rest(parser, command, args, extra: list) -> list:
    """The arguments argparse left, as the command takes them (Command.rest)."""
    if command.rest == "inputs":   # inputs after an option (predict RUN --topk 2 a.png b.png): argparse gives a '*'
        args.inputs += [e for e in extra if not e.startswith("-")]   # positional only its first run
        extra = [e for e in extra if e.startswith("-")]
    if extra and command.rest in ("none", "inputs"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return extra


def import_torch():
    """nettrain's torch side (api.py and what it imports), loaded with Ctrl-C deferred: torch's import does not
    survive a KeyboardInterrupt inside it."""
    with signals.deferred():
        from . import api  # noqa: F401


def cmd_report(args) -> int:
    from .report import build
    from .report.read import check_run_dir
    from .runs import lacks_evidence
    path = check_run_dir(args.run)
    if not lacks_evidence(path):   # the page from the run's files alone: no torch
        say(f"report {build(path)}")
        return 0
    import_torch()
    from . import api
    say(f"report {api.report(path)}")
    return 0


def cmd_summary(args, extra) -> int:
    from .summary import summary
    from .trust import CLI_FIXES
    run = extra.pop(0) if extra and not extra[0].startswith("-") else None
    given = {**parse_extra(extra), **({"data.dir": args.data_dir} if args.data_dir else {})}
    say(summary(run, dataset=args.dataset, model=args.model, args=given,
                  shape=args.shape, classes=args.classes, depth=args.depth, trust_code=args.trust_code,
                  _fixes=CLI_FIXES))
    return 0


def cmd_lr_find(args, extra) -> int:
    from .lrfind import lr_find
    from .trust import RESUME_CLI_FIXES
    found = lr_find(args.config, plot=args.out, steps=args.steps, start_lr=args.start_lr, end_lr=args.end_lr,
                    trust_code=args.trust_code, _fixes=RESUME_CLI_FIXES,
                    **{k: v for k, v in fit_options(args, extra).items() if k != "lr"})
    say(found.describe())
    return 0


def cmd_export(args, extra) -> int:
    from .export import export
    from .trust import CLI_FIXES
    export(args.checkpoint, args.format, args.out, args.overwrite, args.model, args.trust_code, CLI_FIXES)
    return 0


def cmd_predict_onnx(args) -> int:
    from . import inputs
    from .onnxpredict import OnnxModel
    inputs.check_topk(args.topk)
    model = OnnxModel(args.checkpoint)
    if model.reads == "rows":
        return _predict_onnx_rows(model, args.inputs + args.file, args.topk or 1, args.json)
    if model.reads == "texts":
        texts = inputs.texts(args.inputs, args.file)
        return _print_texts(texts, model.topk(_finite(model.predict_texts(texts), model.path), args.topk or 3), args.json)
    if model.reads != "files" or args.file:
        raise NettrainError("nettrain predict model.onnx reads image files, a table's CSV rows or texts; run a "
                            "vector export in onnxruntime with rows shaped as its .onnx.json says")
    return _predict_images(args, model.read, lambda x: model.topk(_finite(model.predict(x), model.path),
                                                                  args.topk or 3))


def _predict_onnx_rows(model, files: list, topk: int, as_json: bool) -> int:
    """One line per CSV row, as for a run (_predict_rows): every file read before anything is printed."""
    from .inputs import row_entry
    if not files:
        raise NettrainError("nothing to predict: give a CSV file of rows (nettrain predict model.onnx --file rows.csv)")
    results = []
    for f, out in [(f, _finite(model.predict(model.read_rows(f)), model.path)) for f in files]:
        rows = model.topk(out, topk) if model.classes else out.tolist()
        results += [row_entry(f, i, row, bool(model.classes)) for i, row in enumerate(rows, 1)]
    return _print_rows(results, as_json)


def _finite(out, path):
    """onnxruntime's outputs, unless NaN or infinite (a checkpoint's are refused alike: Predictor._finite), which
    would print "nan%" as if it were an answer."""
    import numpy as np
    bad = ~np.isfinite(out.reshape(len(out), -1)).all(1)
    if bad.any():
        from .errors import printable
        raise NettrainError(f"the outputs of {printable(path)} are not finite (NaN or infinity) for {int(bad.sum())} "
                            f"of {len(out)} inputs: its weights hold NaN or infinity, or these inputs overflow it; "
                            f"export a run whose weights are finite, or check the inputs")
    return out


def cmd_show(args, extra) -> int:
    from .errors import printable
    from .show import show
    options = {FIT_FLAGS[f][0]: getattr(args, f[2:].replace("-", "_")) for f in
               ("--dataset", "--data-dir", "--image-size", "--seed")}
    options = {k: v for k, v in {**options, "download": args.download}.items() if v is not None}
    shown = show(args.config, n=args.n, augmented=args.augmented, out=args.out, overwrite=args.overwrite, **options,
                 **parse_extra(extra))
    say(shown if isinstance(shown, str) else printable(shown))   # a text or table summary, or the grid's path
    return 0


# ---- compare and sweep (report/compare.py, sweep.py)

def _compare_parser(sub):
    cp = sub.add_parser("compare", help="runs side by side: the config keys that differ, best and final metrics, "
                                        "time; compare.png and compare.html")
    cp.add_argument("runs", nargs="*", metavar="RUN", help="run directories")
    cp.add_argument("--out", help="the folder for compare.png and compare.html (default: the folder that holds the "
                                  "runs)")


def _sweep_parser(sub):
    sw = sub.add_parser("sweep", help="one fit per combination of the values given, then compare them",
                        usage="nettrain sweep [--runs RUNS.yaml] --KEY a,b [--KEY c,d ...] [--sweep-dir DIR] -- "
                              "[fit's flags]",
                        epilog="KEY: a fit flag (--optimizer, --lr, --batch-size) or any config key "
                               "(--optim.momentum 0.9,0.99); values holding commas in brackets: "
                               "--model.args.hidden [16],[32,16]. Example: nettrain sweep --optimizer sgd,adam "
                               "--lr 0.01,0.001 -- --dataset quadratic --model mlp --epochs 5")
    sw.add_argument("--sweep-dir", help="the sweep's folder, new or empty (default runs/sweep-<dataset>-N); each run "
                                        "goes into a folder named after its values")
    sw.add_argument("--runs", help="named runs, each with its own settings (a YAML file, or the YAML itself): "
                                   "'{SGD: {optimizer: sgd}, Adam: {optimizer: adam, lr: 0.001}}'; each run, times "
                                   "the product of any --KEY lists")


def cmd_compare(args, extra, argv) -> int:
    from .report.compare import compare
    if extra:
        raise NettrainError(f"unrecognized arguments: {' '.join(extra)}; nettrain compare takes run directories "
                            f"and --out DIR")
    comparison = compare(args.runs, args.out)
    say(comparison.table())
    _print_outputs(comparison)
    return 0


def _print_outputs(comparison):
    if comparison.png is not None:
        say(f"figure {comparison.png}")
    say(f"page {comparison.html}")


def cmd_sweep(args, extra, argv) -> int:
    from .sweep import parse_axes, sweep
    tail = argv[argv.index("sweep") + 1:]
    before, after = (tail[:tail.index("--")], tail[tail.index("--") + 1:]) if "--" in tail else (tail, [])
    own, keys, i = {"--sweep-dir": None, "--runs": None}, [], 0
    while i < len(before):   # --sweep-dir and --runs are the sweep's own; the rest are the keys to sweep
        flag = before[i].split("=", 1)[0]
        if flag in own and "=" in before[i]:
            own[flag], i = before[i].split("=", 1)[1], i + 1
        elif flag in own and i + 1 < len(before):
            own[flag], i = before[i + 1], i + 2
        elif before[i] == "--debug":   # read by the parser already
            i += 1
        else:
            keys.append(before[i])
            i += 1
    fit_args, fit_extra = build_parser().parse_known_args(["fit", *after])
    if fit_args.resume or fit_args.nproc:
        raise NettrainError(f"--{'resume' if fit_args.resume else 'nproc'} is not for a sweep, which starts new runs "
                            f"one after the other in this process")
    result = sweep(parse_axes(keys), fit_options(fit_args, fit_extra), fit_args.config, own["--sweep-dir"],
                   trust_code=fit_args.trust_code, tune_process=True, runs=own["--runs"])
    say(result.comparison.table())
    _print_outputs(result.comparison)
    if result.failed:
        print(f"nettrain: {len(result.failed)} of {len(result.outcomes)} sweep runs failed (see the status column)",
              file=sys.stderr)
    return 1 if result.failed else 0


# ---- MLflow (mlflowlog.py)

def _mlflow_sync_parser(sub):
    ms = sub.add_parser("mlflow-sync", help="upload a run directory to MLflow: its config, epochs, test metrics and "
                                            "files (the MLflow run it logged to, when it has one)")
    ms.add_argument("run", help="run directory")
    ms.add_argument("--run.mlflow", dest="mlflow", metavar="URI",
                    help="the tracking URI (default: NETTRAIN_MLFLOW_URI, else MLFLOW_TRACKING_URI)")


def cmd_mlflow_sync(args) -> int:
    from .mlflowlog import sync
    synced = sync(args.run, args.mlflow)
    for line in synced.skipped:
        print(f"nettrain: skipped {line}", file=sys.stderr)
    say(f"mlflow run {synced.run_id} at {synced.uri}: {synced.params} params; epochs added: {synced.rows}; files: "
        f"{synced.artifacts}")
    return 0


# ---- tune (tune.py)

def _tune_parser(sub):
    tu = sub.add_parser("tune", help="search hyperparameters with Optuna: TPE, pruned fits, a study in a database",
                        usage="nettrain tune --KEY RANGE [--KEY RANGE ...] [--trials N] [--study NAME] -- [fit's flags]",
                        allow_abbrev=False,
                        epilog="RANGE: loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH[:STEP], choice:A,B,...; KEY "
                               "a fit flag or any config key. Example: nettrain tune --lr loguniform:1e-4:1e-1 "
                               "--optimizer choice:sgd,adam --trials 30 -- --dataset digits --data.val_fraction 0.1")
    for flag, typ, help_ in TUNE_FLAGS:
        tu.add_argument(flag, type=typ, help=help_)


TUNE_FLAGS = [
    ("--trials", int, "the study's trials in all, counting those done before and by other processes (default 20)"),
    ("--timeout", float, "start no trial after this many seconds"),
    ("--study", str, "the study's name (default: the dataset's); the same name again goes on with it"),
    ("--study-dir", str, "the study's folder (default tunes/<study>): a run directory per trial, the summary"),
    ("--storage", str, "the study's database URL (default sqlite:///<study-dir>/study.db); processes given the "
                       "same share the study"),
    ("--space", str, "a YAML file of ranges (lr: loguniform:1e-4:1e-1), beside or instead of --KEY RANGE"),
    ("--objective", str, "the held-out metric to optimize: val_acc, val_loss or val_mae (default: the one that "
                         "chooses best.pt)"),
    ("--direction", str, "max or min (default: the objective's own)"),
    ("--pruner", str, "median (default), halving (successive halving) or none"),
    ("--prune-from-epoch", int, "prune no trial before this epoch (default 1)"),
    ("--prune-after-trials", int, "median: prune once this many trials completed (default 5)"),
    ("--sampler-seed", int, "TPE's seed (default 0; the k-th process to join a study uses seed + k)"),
    ("--compare", int, "nettrain compare this many best trials at the end (default 5; 0: none)"),
]


def cmd_tune(args, extra, argv) -> int:
    from .tune import Settings, parse_space, tune
    tail = argv[argv.index("tune") + 1:]
    before, after = (tail[:tail.index("--")], tail[tail.index("--") + 1:]) if "--" in tail else (tail, [])
    own, keys = build_parser().parse_known_args(["tune", *[b for b in before if b != "--debug"]])
    fit_args, fit_extra = build_parser().parse_known_args(["fit", *after])
    if fit_args.resume or fit_args.nproc:
        raise NettrainError(f"--{'resume' if fit_args.resume else 'nproc'} is not for a tune, which starts new runs "
                            f"one after the other in this process")
    given = {flag[2:].replace("-", "_"): getattr(own, flag[2:].replace("-", "_")) for flag, _, _ in TUNE_FLAGS}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    result = tune(parse_space(keys), fit_options(fit_args, fit_extra), fit_args.config, settings,
                  trust_code=fit_args.trust_code, tune_process=True)
    say(result.table())
    for note in result.notes:
        print(clean(f"nettrain: {note}"), file=sys.stderr)
    if result.best is not None:
        say(f"best trial-{result.best.number:04d}: {result.metric} {result.best.value:.6g}; recipe {result.recipe} "
            f"(nettrain fit --config {result.recipe})")
    for path in result.figures:
        say(f"figure {path}")
    if result.comparison is not None:
        _print_outputs(result.comparison)
    say(f"page {result.html}")
    return 0 if result.best is not None else 1



# ---- the commands' registry

def _fit_run(args, extra, argv) -> int:
    if args.nproc is not None or args.max_restarts is not None:
        return _fit_in_processes(args.nproc, argv, args.max_restarts)
    return cmd_fit(args, extra)


def _onnx(args) -> bool:
    """`predict model.onnx` runs in onnxruntime alone: a server needs no torch."""
    return str(args.checkpoint).lower().endswith(".onnx")


def _always(args) -> bool:
    return True


def _never(args) -> bool:
    return False


@dataclass(frozen=True)
class Command:
    """A subcommand, as `nettrain` knows it: `parser(subparsers)` declares its arguments, `run(args, rest, argv)`
    does it and returns the exit code. `rest`: what the arguments argparse does not know are: "none" (an error),
    "options" (config keys, --section.key VALUE), "inputs" (predict's files after an option), "own" (the command
    reads the whole command line itself: compare, sweep, tune). `needs_torch(args)`: False for the commands that
    need no tensor, which start without torch's import (1.7 s of a 2-core machine's start-up; report imports it
    itself when it must make predictions.npz from best.pt). `trains`: the command chooses OpenMP's wait policy, a
    0.15 s watch of the CPU (_omp.py) that `nettrain list` (0.2 s in all) or a prediction would pay for nothing."""
    parser: Callable
    run: Callable
    rest: str = "none"
    needs_torch: Callable = _always
    trains: bool = False


# A new command is a parser function, a run function and its line here (docs/architecture.md, "Adding a piece").
COMMANDS = {
    "fit": Command(_fit_parser, _fit_run, "options", trains=True),
    "evaluate": Command(_evaluate_parser, lambda args, rest, argv: cmd_evaluate(args)),
    "predict": Command(_predict_parser, lambda args, rest, argv: cmd_predict(args), "inputs",
                       needs_torch=lambda args: not _onnx(args)),
    "report": Command(_report_parser, lambda args, rest, argv: cmd_report(args), needs_torch=_never),
    "list": Command(_list_parser, lambda args, rest, argv: cmd_list(), needs_torch=_never),
    "summary": Command(_summary_parser, lambda args, rest, argv: cmd_summary(args, rest), "options"),
    "lr-find": Command(_lr_find_parser, lambda args, rest, argv: cmd_lr_find(args, rest), "options", trains=True),
    "export": Command(_export_parser, lambda args, rest, argv: cmd_export(args, rest)),
    "show": Command(_show_parser, lambda args, rest, argv: cmd_show(args, rest), "options"),
    "compare": Command(_compare_parser, cmd_compare, "own", needs_torch=_never),
    "sweep": Command(_sweep_parser, cmd_sweep, "own", trains=True),
    "tune": Command(_tune_parser, cmd_tune, "own", trains=True),
    "mlflow-sync": Command(_mlflow_sync_parser, lambda args, rest, argv: cmd_mlflow_sync(args)),
}
