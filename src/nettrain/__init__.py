"""nettrain: load data, build a network, train, evaluate, save and predict, in one command or a few lines.

    import nettrain
    run = nettrain.fit(dataset="digits", epochs=5)
    model = nettrain.load(run.dir)
    print(model.predict(images).labels)
"""
__version__ = "0.1.0"

import os as _os

# OpenMP threads that wait for work sleep instead of spinning, unless the user chose otherwise. torch's default
# (libgomp spins ~300k times before sleeping) burns the cores that the other threads need whenever the machine
# runs anything else: measured on a shared 2-core CPU, the MNIST recipe took 284 s with spinning, 73 s without.
# Set before torch is imported (libgomp reads it once, when it loads).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from .api import Predictions, Predictor, Run, fit, load  # noqa: E402
from .config import Config  # noqa: E402
from .errors import NettrainError  # noqa: E402

__all__ = ["fit", "load", "Run", "Predictor", "Predictions", "Config", "NettrainError", "__version__"]
