"""Name -> builder registries for datasets, models, optimizers, losses, schedulers and metrics.

A registry is a dict filled by a decorator; the builder's registered name is its key, its one-line help the
catalog's (catalog.py, which `nettrain list` prints without importing torch). An unknown name gets an error that
lists what exists and the closest match.
"""
from .errors import NettrainError, unknown


class Registry:
    def __init__(self, kind: str, catalog: dict = None):
        self.kind = kind
        self._items: dict = {}
        self._catalog = catalog or {}   # name -> its line in `nettrain list` (catalog.py, read without torch)

    def register(self, name: str, help: str = ""):
        def add(fn):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")  # our bug, not the user's
            self._items[name] = (fn, help or self._catalog.get(name) or (fn.__doc__ or "").strip().splitlines()[0])
            return fn
        return add

    def get(self, name: str):
        if name not in self._items:
            raise unknown(self.kind, name, self._items)
        return self._items[name][0]

    def __contains__(self, name) -> bool:
        return name in self._items

    def names(self) -> list:
        return sorted(self._items)

    def describe(self) -> list:
        """(name, one-line help) pairs, sorted by name."""
        return [(n, self._items[n][1]) for n in self.names()]


__all__ = ["Registry", "NettrainError"]
