"""What the user sees while training: a tqdm bar on a terminal, one plain line per epoch otherwise."""
from __future__ import annotations

import sys

from ..errors import clean_lines


def fmt_row(row, epochs: int, unit: str = "ex") -> str:
    """An epoch's line: its MetricsRow (metrics_row.py), the speed in the data kind's `unit` ("img", "texts")."""
    parts = [f"epoch {row.epoch}/{epochs}", f"train loss {row.train_loss:.4f}"]
    if row.train_acc is not None:
        parts.append(f"acc {row.train_acc:.2%}")
    if row.val_loss is not None:   # "test" when there is no validation split: shown, never chosen on
        parts.append(f"| {row.val_split or 'val'} loss {row.val_loss:.4f}")
    if row.val_acc is not None:
        parts.append(f"acc {row.val_acc:.2%}")
    if row.val_mae is not None:
        parts.append(f"mae {row.val_mae:.4f}")
    parts += [f"| lr {row.lr:.2e}", f"{row.seconds:.1f}s", f"{row.examples_per_s:,.0f} {unit}/s",
              f"data wait {row.data_wait:.1%}"]
    if row.padding_waste is not None:   # text: the share of the batches' positions that are padding
        parts.append(f"padding {row.padding_waste:.1%}")
    return "  ".join(parts)


class Progress:
    """mode: auto (bar on a terminal), bar, lines, none."""

    def __init__(self, mode: str, epochs: int):
        self.epochs = epochs
        self.unit = "ex"   # the data's kind says what an example is ("img", "texts", "rows"), once it is built
        self.bar_enabled = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.quiet = mode == "none"
        self.bar = None

    def say(self, text: str):
        """A line (or lines) of the fit's log; what it quotes of the data and the run (class names, a resumed run's
        config) reaches the terminal without control characters (errors.clean)."""
        if not self.quiet:
            print(clean_lines(text), flush=True)

    def start_epoch(self, epoch: int, steps: int, done: int = 0):
        """`done`: the batches a resumed stop had already trained (engine/stop.py): the bar starts there."""
        if self.bar_enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch}/{self.epochs}", unit="step", leave=False,
                            file=sys.stderr, dynamic_ncols=True)

    def step(self, at: int, loss: float, examples_per_s: float):
        """The epoch's batches done so far (`at`, counted from its start, a resumed part included)."""
        if self.bar is not None:
            self.bar.update(at - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", **{f"{self.unit}_s": f"{examples_per_s:,.0f}"}, refresh=False)

    def end_epoch(self, row):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.say(fmt_row(row, self.epochs, self.unit))
