"""nettrain: load data, build a network, train, evaluate, save and predict, in one command or a few lines.

    import nettrain
    run = nettrain.fit(dataset="digits", epochs=5)
    model = nettrain.load(run.dir)
    print(model.predict(images).labels)

Importing nettrain changes nothing in the process: torch is loaded when the API is first used (so that
`nettrain.cli` can choose how its own process's OpenMP threads wait before torch loads, see _omp.py), and no
environment variable, RNG or allocator setting is touched by the import.
"""
__version__ = "0.1.0"

__all__ = ["fit", "load", "Run", "Predictor", "Predictions", "Config", "NettrainError", "Callback", "EarlyStopping",
           "__version__"]

# nettrain.report is the report package (nettrain.report.build(run) writes RUN/report.html)
_WHERE = {"fit": "api", "load": "api", "Run": "api", "Predictor": "api", "Predictions": "api", "Config": "config",
          "NettrainError": "errors", "Callback": "callbacks", "EarlyStopping": "callbacks"}


def __getattr__(name):   # PEP 562: the public names and the submodules (nettrain.training), imported on first use
    import importlib
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":   # the submodule exists but something it imports does not
            raise
    raise AttributeError(f"module 'nettrain' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
