"""Input kinds: what nettrain does differently for images, feature vectors, tables, texts and a user's own collated
batches, each in one module: how predict turns what a user has into a batch, what an exported graph takes and
holds of the preprocessing, and what the kind allows (sample grids, TTA, channels_last, graph tracing). Code
elsewhere asks `kind_of(info)`, never compares the kind's name. A new kind is one module and a line in KINDS.

The reading and batching of each kind's data live beside it in data/ (arrays.py, images.py, table.py, text.py,
custom.py); a kind module calls them, and data/ and engine/ never import kinds/ (docs/architecture.md). What those
need of a kind comes as an argument (checkpoint.load's `kinds`), or, for the kinds that hold images or token ids,
from data/arrays.py (IMAGE_KINDS, TOKEN_ID_KINDS), which names them as Kind.images and Kind.record_fields do.
"""
from __future__ import annotations

from .base import Kind
from .custom import Custom
from .image import Image
from .table import Table
from .text import Text
from .vector import Vector

KINDS = {k.name: k for k in (Image(), Vector(), Table(), Custom(), Text())}   # in the order messages name them


def kind_of(info) -> Kind:
    """The kind of a run's data (DataInfo.kind, checked when a checkpoint is read: engine/checkfields.py)."""
    return KINDS[info.kind]


__all__ = ["KINDS", "Kind", "kind_of"]
