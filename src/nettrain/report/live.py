"""The live report: report.html rewritten at epoch ends while a fit trains, for a cost kept within a budget.

A live update draws only the cheap figures (from metrics.csv) and the page, and is made only when the time spent
on live updates so far, plus the last update's cost, stays within BUDGET of the time trained so far. Short epochs
are thus updated less often (a digits epoch of 0.3 s is not slowed by a 0.2 s update), long ones every epoch.
The first update's cost is taken as FIRST_ESTIMATE. matplotlib's import (about a second) is not counted: the full
report at the end needs it anyway, so it is moved, not added. The full report is written when the fit ends; a fit
that stops (an error, Ctrl-C) leaves a page without the reload, saying where it stopped.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..runs import RunDir
from . import write
from .html import REFRESH_SECONDS

BUDGET = 0.02          # of the training time: what live updates may add
FIRST_ESTIMATE = 0.3   # seconds: the first update's cost before it is measured (0.13-0.23 s measured on 2 cores)


class LiveReport:
    def __init__(self, run: RunDir, epochs: int, enabled: bool = True, clock=time.perf_counter):
        self.run, self.epochs, self.enabled, self.clock = run, epochs, enabled, clock
        self.start = clock()
        self.spent, self.estimate = 0.0, FIRST_ESTIMATE
        self.updates = 0
        self.done = False

    def epoch_end(self, epoch: int) -> bool:
        """Rewrite the live page after `epoch` if the budget allows (not after the last: the full one follows)."""
        if not self.enabled or epoch >= self.epochs:
            return False
        from . import figures  # noqa: F401  (matplotlib, imported here or at the end: not the update's cost)
        now = self.clock()
        if self.spent + self.estimate > BUDGET * (now - self.start):
            return False
        write(self.run, live=True, cheap=True,
              status=f"training: epoch {epoch} of {self.epochs} done at {time.strftime('%H:%M:%S')}; "
                     f"this page reloads every {REFRESH_SECONDS} s until the run ends")
        cost = self.clock() - now
        self.spent += cost
        self.estimate = cost
        self.updates += 1
        return True

    def finish(self) -> Path:
        """The full report, when the fit has ended."""
        self.done = True
        return write(self.run)

    def close(self):
        """On any exit of the fit: a live page left by a fit that stopped stops reloading."""
        if not self.enabled or self.done or not self.updates:
            return
        self.done = True
        try:
            write(self.run, cheap=True)
        except Exception as e:   # the error that stopped the fit is the one to report, not this page's
            print(f"warning: report.html not updated ({type(e).__name__}: {e})", file=sys.stderr)
