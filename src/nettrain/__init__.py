"""nettrain: load data, build a network, train, evaluate, save and predict, in one command or a few lines.

    import nettrain
    run = nettrain.fit(dataset="digits", epochs=5)
    model = nettrain.load(run.dir)
    print(model.predict(images).labels)
"""
__version__ = "0.1.0"

import os as _os
import sys as _sys

try:
    from ._omp import choose_wait_policy as _choose_wait_policy

    # Must run before torch is imported: libgomp reads OMP_WAIT_POLICY once, when it loads. See _omp.py.
    _choose_wait_policy(_os.environ)

    from .config import Config  # noqa: E402
    from .errors import NettrainError  # noqa: E402
except KeyboardInterrupt:
    # Ctrl-C in the first moments of the `nettrain` command, which imports this package before any code of the
    # command runs (`python -m nettrain` says "-m" in argv[0] until then): exit as the command does, without a
    # traceback. A program that imports nettrain gets its KeyboardInterrupt.
    if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0]) == "nettrain":
        print("nettrain: interrupted", file=_sys.stderr)
        raise SystemExit(130) from None
    raise

__all__ = ["fit", "load", "report", "Run", "Predictor", "Predictions", "Config", "NettrainError", "__version__"]
_API = {"fit", "load", "report", "Run", "Predictor", "Predictions"}


def __getattr__(name):
    """The API (and torch, seconds to import) loads on first use: `nettrain` the command imports this package
    first, and a Ctrl-C during that import could not be answered without a traceback (cli.main catches it)."""
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'nettrain' has no attribute {name!r}")
