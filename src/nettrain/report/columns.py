"""Plain-text tables for the terminal: `nettrain compare`'s runs, and `nettrain show`'s classes and rows."""
from __future__ import annotations


def text_table(header: list, rows: list, left: int = 1, left_last: bool = False, indent: str = "") -> str:
    """Columns padded to their widest cell, two spaces apart; the first `left` aligned left (names, config values,
    labels), the others right (numbers) except the last when `left_last`; each line after `indent`."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells):
        return indent + "  ".join(str(c).ljust(w) if i < left or left_last and i == len(widths) - 1
                                  else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(header)] + [line(r) for r in rows])
