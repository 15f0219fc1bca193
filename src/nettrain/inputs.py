"""What `nettrain predict` is given, gathered without torch: image files (folders expanded), texts (arguments and
--file lines), each input's result as the command prints it. Shared by predict on a run (api.load) and on an
exported model.onnx (onnxpredict.py, which needs no torch); cli.py only prints what these return."""
from __future__ import annotations

from pathlib import Path

from .errors import NettrainError, printable
from .files import LIMITS, open_read

# the image files a folder given to predict holds (data/images.py reads them; this list needs no torch)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def image_files(items: list, warn) -> list:
    """The files among `items`, each folder replaced by the image files below it (sorted); `warn(line)` for a
    folder that holds none."""
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                warn(f"nettrain: warning: no image files in folder {printable(p)}")
            files += found
        else:
            files.append(p)
    return files


def read_each(files: list, read, warn) -> tuple:
    """(the arrays `read(file)` made, their files' names, the errors as {"file", "error"}): a file that cannot be
    read is one error (said with `warn(error)`), and the others are still predicted."""
    arrays, names, errors = [], [], []
    for f in files:
        try:
            arrays.append(read(f))
            names.append(str(f))
        except NettrainError as e:
            errors.append({"file": str(f), "error": str(e)})
            warn(e)
    return arrays, names, errors


def texts(inputs: list, files: list) -> list:
    """The texts to predict: the arguments, then each --file's lines (one text a line, blank lines skipped)."""
    found = list(inputs)
    for file in files:
        try:
            with open_read(file, LIMITS["csv"], "--file", text=True, encoding="utf-8") as f:
                found += [line.rstrip("\r\n") for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise NettrainError(f"cannot read --file {printable(file)} "
                                f"({getattr(e, 'strerror', None) or type(e).__name__}); give a UTF-8 text file, "
                                f"one text per line") from None
    if not found:
        raise NettrainError("nothing to predict: give texts as arguments, or --file FILE with one text per line")
    return found


def ranked(key: str, names: list, tops: list) -> list:
    """One result per input: {key: its name or text, "predictions": its classes with their probabilities}."""
    return [{key: name, "predictions": [{"class": c, "probability": round(p, 6)} for c, p in top]}
            for name, top in zip(names, tops)]


def row_entry(file, i: int, row, classified: bool) -> dict:
    """One table row's prediction as printed: its top classes with probabilities, or its value."""
    entry = {"file": str(file), "row": i}
    if classified:
        entry["predictions"] = [{"class": c, "probability": round(p, 6)} for c, p in row]
    else:
        entry["value"] = row[0] if len(row) == 1 else row
    return entry


def check_topk(topk):
    if topk is not None and topk < 1:
        raise NettrainError(f"--topk must be at least 1 (the classes shown per file), got {topk}")
