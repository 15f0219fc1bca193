"""The user-error family.

Anything raised as a `NettrainError` is the user's to fix: the CLI prints its message as one line (exit
code 2) with no traceback. Any other exception is a bug in nettrain and keeps its traceback.
"""
import difflib


class NettrainError(Exception):
    """A problem with the user's input: the message names the problem and the fix."""


class ConfigError(NettrainError):
    """An unknown key, a wrong type or an invalid value in the configuration."""


class DataError(NettrainError):
    """Data that is missing, unreadable or malformed."""


class ModelError(NettrainError):
    """A model that cannot be built, or that does not fit the data or the checkpoint."""


class CheckpointError(NettrainError):
    """A checkpoint or run directory that cannot be read or does not match."""


class DivergedError(NettrainError):
    """Training whose loss became NaN or infinite: the learning rate (or clipping) is the user's to change."""


def closest(name: str, choices) -> str:
    """' (did you mean X?)' when a choice is close to `name`, else ''."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown(kind: str, name: str, choices) -> NettrainError:
    """The standard error for a name that is not among `choices`."""
    choices = sorted(choices)
    return NettrainError(f"unknown {kind} {name!r}{closest(name, choices)}; choose one of: {', '.join(choices)}")


def clean(text) -> str:
    """Text that came from a file (a class name, a config value, a message quoting either, a warning) as it may
    reach a terminal: every character that does not print escaped as Python writes it (ESC as \\x1b, a newline as
    \\n, a C1 control as \\x9b, an undecodable byte as \\xff), so that a file can neither send the terminal a
    command (retitle the window, clear the screen, move the cursor) nor break the line. Printable text is
    unchanged."""
    text = str(text)
    return text if text.isprintable() else "".join(map(_escape, text))


def clean_lines(text) -> str:
    """`clean` line by line: text of several lines (a table, a report) keeps its newlines and nothing else."""
    return "\n".join(map(clean, str(text).split("\n")))


def _escape(ch: str) -> str:
    if 0xDC80 <= ord(ch) <= 0xDCFF:   # a byte that was not UTF-8, carried by Python's surrogateescape
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch if ch.isprintable() else repr(ch)[1:-1]


def printable(name) -> str:
    """A file name as it can stand in one line of output: unchanged when every character prints, else quoted and
    `clean`ed (a newline as \\n, an undecodable byte as \\xff), so it can neither break the line nor fail to
    encode on the way to the terminal."""
    text = str(name)
    return text if text.isprintable() else "'" + clean(text) + "'"
