"""The live report: report.html written as a fit starts and rewritten at epoch ends while it trains, for a cost kept
within a budget.

The first page is written as the fit starts, before epoch 1: the configuration, environment and model, no figures
(a page costs 0.02-0.035 s, measured on 2 busy cores). At each epoch end, the update is made only when the time spent
on live updates so far, plus its expected cost, stays within BUDGET of the time trained so far: the cheap figures
(from metrics.csv) redrawn with the page when that fits, else the page alone with the figures drawn last (its cards
and epochs table new). Short epochs are thus updated less often (a digits epoch of 0.3 s is not slowed by a 0.2 s
drawing), long ones every epoch, and from epoch 1 on the page at least. A drawing's first cost is taken as
FIRST_ESTIMATE, a page's as PAGE_ESTIMATE, until measured. matplotlib's import (about a second) is not counted: the
full report at the end needs it anyway, so it is moved, not added. The full report is written when the fit ends; a
fit that stops (an error, Ctrl-C) leaves a page without the reload, saying where it stopped.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from ..runs import RunDir
from . import draw, write
from .html import REFRESH_SECONDS
from .read import read

BUDGET = 0.02          # of the training time: what live updates may add
FIRST_ESTIMATE = 0.3   # seconds: a drawing's cost before it is measured (0.13-0.23 s measured on 2 idle cores)
PAGE_ESTIMATE = 0.035  # seconds: a page's cost without drawing, before it is measured (0.02-0.035 s on 2 busy cores)


class LiveReport:
    def __init__(self, run: RunDir, epochs: int, enabled: bool = True, clock=time.perf_counter):
        self.run, self.epochs, self.enabled, self.clock = run, epochs, enabled, clock
        self.start = clock()
        self.spent, self.estimate, self.page_estimate = 0.0, FIRST_ESTIMATE, PAGE_ESTIMATE
        self.drawn, self.drawn_epoch = [], None   # the figures drawn last, and after which epoch
        self.updates = 0
        self.done = False

    def begin(self, start_epoch: int = 0) -> bool:
        """The first page, as the fit starts (before epoch `start_epoch` + 1): no figures, nothing drawn."""
        if not self.enabled or start_epoch >= self.epochs:
            return False
        self._page(f"training: epoch {start_epoch + 1} of {self.epochs} started at {time.strftime('%H:%M:%S')}")
        return True

    def epoch_end(self, epoch: int) -> Optional[str]:
        """Rewrite the live page after `epoch` if the budget allows (not after the last: the full one follows):
        "figures" when they were redrawn with it, "page" when the page alone was, None when nothing was."""
        if not self.enabled or epoch >= self.epochs:
            return None
        allowed = BUDGET * (self.clock() - self.start)
        done = f"training: epoch {epoch} of {self.epochs} done at {time.strftime('%H:%M:%S')}"
        if self.spent + self.estimate <= allowed:
            from . import figures  # noqa: F401  (matplotlib, imported here or at the end: not the update's cost)
            now = self.clock()
            self.drawn, self.drawn_epoch = draw(self.run, read(self.run.path), cheap=True), epoch
            self._page(done, since=now)
            self.estimate = self.clock() - now
            return "figures"
        if self.spent + self.page_estimate <= allowed:
            self._page(done + (f" (figures as of epoch {self.drawn_epoch})" if self.drawn_epoch else ""))
            return "page"
        return None

    def _page(self, status: str, since: Optional[float] = None):
        """The live page with the figures drawn last, its cost (from `since` when a drawing came first) counted."""
        now = self.clock()
        write(self.run, live=True, drawn=self.drawn,
              status=f"{status}; this page reloads every {REFRESH_SECONDS} s until the run ends")
        cost = self.clock() - now
        self.page_estimate = cost
        self.spent += cost if since is None else self.clock() - since
        self.updates += 1

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
