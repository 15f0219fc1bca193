"""Kept for importers of the old module: nettrain's one reader and writer is files.py."""
from .files import WriteError, write_error, write_file, write_text  # noqa: F401
